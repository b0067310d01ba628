package watermillbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/watermillbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of what waits for what: a Publish waiting for room holds up no
// other call, Subscribe never waits, and every call honours its context.

// emitWatcher is an eventbus.Observer that reports each emit as it starts
// (before the EventManager looks for room), so a test knows that a Publish
// has reached its wait.
type emitWatcher struct{ started chan string }

func newEmitWatcher() *emitWatcher { return &emitWatcher{started: make(chan string, 1024)} }

func (w *emitWatcher) Emit(ctx context.Context, name string) (context.Context, func(error)) {
	w.started <- name
	return ctx, func(error) {}
}

func (w *emitWatcher) Start(ctx context.Context, _ eventbus.Delivery) (context.Context, func(eventbus.Outcome, error)) {
	return ctx, func(eventbus.Outcome, error) {}
}

func (w *emitWatcher) Lost(context.Context, eventbus.Delivery, eventbus.Outcome) {}

// await waits for n more emits to start.
func (w *emitWatcher) await(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-w.started:
		case <-time.After(hangGuard):
			require.FailNow(t, "no emit")
		}
	}
}

// blockedTopic returns a PubSub with persistence and a backlog of one, a
// subscription of "t" that holds "1" unacked with "2" filling its backlog,
// and the watcher of its emits.
func blockedTopic(t *testing.T) (*watermillbus.PubSub, <-chan *message.Message, *emitWatcher) {
	t.Helper()
	w := newEmitWatcher()
	ps := newPubSub(t, watermillbus.WithPersistence(10),
		watermillbus.WithBusOptions(eventbus.WithQueueSize(1), eventbus.WithObserver(w)))
	slow := subscribe(t, ps, "t")
	publish(t, ps, "t", "1", "2")
	w.await(t, 2)
	return ps, slow, w
}

// publishAsync publishes m in a goroutine and returns its result channel,
// once its emit has started: from then on it waits for room.
func publishAsync(t *testing.T, ps *watermillbus.PubSub, w *emitWatcher, m *message.Message) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- ps.Publish("t", m) }()
	w.await(t, 1)
	return done
}

// returnsWithin waits for a result on ch, failing the test if none comes
// before the guard: the call it stands for was held up.
func returnsWithin[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangGuard):
		require.FailNow(t, what+" did not return")
		var zero T
		return zero
	}
}

type subscribed struct {
	ch  <-chan *message.Message
	err error
}

func subscribeAsync(ps *watermillbus.PubSub, ctx context.Context, topic string) <-chan subscribed {
	done := make(chan subscribed, 1)
	go func() {
		ch, err := ps.Subscribe(ctx, topic)
		done <- subscribed{ch, err}
	}()
	return done
}

// While a Publish waits for room, Subscribe returns, and the new
// subscription's replay sends that message in its place once its Publish
// returns: the log first, in order, then live messages, with no gap and
// no duplicate at the seam.
func TestSubscribeWhilePublishWaitsForRoom(t *testing.T) {
	ps, slow, w := blockedTopic(t)
	third := publishAsync(t, ps, w, message.NewMessage("3", nil))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := returnsWithin(t, subscribeAsync(ps, ctx, "t"), "Subscribe while a Publish waits for room")
	require.NoError(t, sub.err)
	assert.Equal(t, []string{"1", "2"}, receiveAcked(t, sub.ch, 2), "the log, while the third Publish still waits")
	select {
	case err := <-third:
		require.FailNow(t, "the third Publish returned while the backlog was full", "error: %v", err)
	default:
	}

	assert.Equal(t, []string{"1"}, receiveAcked(t, slow, 1), "room for the third")
	require.NoError(t, returnsWithin(t, third, "the third Publish"))
	assert.Equal(t, []string{"2", "3"}, receiveAcked(t, slow, 2), "the live subscription")
	publish(t, ps, "t", "4")
	assert.Equal(t, []string{"3", "4"}, receiveAcked(t, sub.ch, 2), "the waiting message in its place, then live")
	assert.Equal(t, []string{"4"}, receiveAcked(t, slow, 1), "the live subscription")
	assert.Equal(t, []string{"1", "2", "3", "4"}, receiveAcked(t, subscribe(t, ps, "t"), 4), "a later replay")
	require.NoError(t, ps.Close())
	s := ps.Stats()
	assert.Equal(t, uint64(4), s.Published, "published")
	assert.Equal(t, uint64(3+4), s.Replayed, "replayed")
}

// A message whose Publish gives up waiting is delivered to nobody: not to
// the subscriptions made while it waited, nor from the log later.
func TestReplaySkipsAPublishThatFails(t *testing.T) {
	ps, slow, w := blockedTopic(t)
	mctx, give := context.WithCancel(context.Background())
	third := publishAsync(t, ps, w, message.NewMessageWithContext(mctx, "3", nil))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := returnsWithin(t, subscribeAsync(ps, ctx, "t"), "Subscribe while a Publish waits for room")
	require.NoError(t, sub.err)
	assert.Equal(t, []string{"1", "2"}, receiveAcked(t, sub.ch, 2), "the log")

	give()
	err := returnsWithin(t, third, "the third Publish, its context cancelled")
	require.ErrorIs(t, err, eventbus.ErrQueueFull)
	require.ErrorIs(t, err, context.Canceled)

	assert.Equal(t, []string{"1", "2"}, receiveAcked(t, slow, 2))
	publish(t, ps, "t", "4")
	assert.Equal(t, []string{"4"}, receiveAcked(t, sub.ch, 1), "the failed message skipped, then live")
	assert.Equal(t, []string{"4"}, receiveAcked(t, slow, 1))
	assert.Equal(t, []string{"1", "2", "4"}, receiveAcked(t, subscribe(t, ps, "t"), 3), "the failed message is not in the log")
	require.NoError(t, ps.Close())
	assert.Equal(t, uint64(3), ps.Stats().Published, "published")
}

// A Publish waiting for room (with no deadline) holds up no other Publish
// of the topic: one whose message context ends returns, with an error that
// says so.
func TestPublishWaitsOnlyForItsOwnContext(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []watermillbus.Option
	}{
		{"persistence", []watermillbus.Option{watermillbus.WithPersistence(10)}},
		{"no persistence", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newEmitWatcher()
			ps := newPubSub(t, append(tc.opts, watermillbus.WithBusOptions(eventbus.WithQueueSize(1), eventbus.WithObserver(w)))...)
			slow := subscribe(t, ps, "t")
			publish(t, ps, "t", "1", "2")
			w.await(t, 2)
			third := publishAsync(t, ps, w, message.NewMessage("3", nil))

			ctx, cancel := context.WithCancel(context.Background())
			fourth := make(chan error, 1)
			go func() { fourth <- ps.Publish("t", message.NewMessageWithContext(ctx, "4", nil)) }()
			cancel()
			err := returnsWithin(t, fourth, "a Publish whose context ended, behind another that waits")
			require.ErrorIs(t, err, context.Canceled, "the context's error")
			require.ErrorIs(t, err, eventbus.ErrQueueFull)

			var dl context.Context
			dl, cancel = context.WithTimeout(context.Background(), time.Millisecond)
			defer cancel()
			err = ps.Publish("t", message.NewMessageWithContext(dl, "5", nil))
			require.ErrorIs(t, err, context.DeadlineExceeded, "a Publish whose deadline passes")

			assert.Equal(t, []string{"1", "2"}, receiveAcked(t, slow, 2))
			require.NoError(t, returnsWithin(t, third, "the third Publish"))
			assert.Equal(t, []string{"3"}, receiveAcked(t, slow, 1), "neither the fourth nor the fifth")
			publish(t, ps, "t", "6")
			assert.Equal(t, []string{"6"}, receiveAcked(t, slow, 1))
		})
	}
}

// A Subscribe whose context is done fails with the context's error and
// returns no channel, with or without a replay to start, while a Publish
// waits for room or not.
func TestSubscribeWithDoneContextFails(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"canceled", canceled, context.Canceled},
		{"deadline exceeded", expired, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("no persistence", func(t *testing.T) {
				ps := newPubSub(t)
				ch, err := ps.Subscribe(tc.ctx, "t")
				require.ErrorIs(t, err, tc.want)
				assert.Nil(t, ch)
				assert.Zero(t, ps.Stats().Subscriptions)
			})
			t.Run("replay", func(t *testing.T) {
				ps := newPubSub(t, watermillbus.WithPersistence(10))
				publish(t, ps, "t", "1")
				ch, err := ps.Subscribe(tc.ctx, "t")
				require.ErrorIs(t, err, tc.want)
				assert.Nil(t, ch)
				assert.Zero(t, ps.Stats().Subscriptions)
			})
			t.Run("a Publish waits", func(t *testing.T) {
				ps, slow, w := blockedTopic(t)
				third := publishAsync(t, ps, w, message.NewMessage("3", nil))
				sub := returnsWithin(t, subscribeAsync(ps, tc.ctx, "t"), "Subscribe")
				require.ErrorIs(t, sub.err, tc.want)
				assert.Nil(t, sub.ch)
				assert.Equal(t, []string{"1", "2"}, receiveAcked(t, slow, 2))
				require.NoError(t, returnsWithin(t, third, "the third Publish"))
				assert.Equal(t, []string{"3"}, receiveAcked(t, slow, 1))
			})
		})
	}
}
