package watermillbus_test

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/watermillbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestEverySubscriptionGetsEveryMessageInOrder(t *testing.T) {
	ps := newPubSub(t)
	a := subscribe(t, ps, "orders")
	b := subscribe(t, ps, "orders")
	other := subscribe(t, ps, "payments")
	want := []string{"1", "2", "3", "4", "5"}
	publish(t, ps, "orders", want...)
	publish(t, ps, "payments", "p")

	assert.Equal(t, want, receiveAcked(t, a, len(want)), "first subscription, in publish order")
	assert.Equal(t, want, receiveAcked(t, b, len(want)), "second subscription, in publish order")
	assert.Equal(t, []string{"p"}, receiveAcked(t, other, 1), "other topic gets only its message")
}

func TestSubscriptionsGetTheirOwnCopy(t *testing.T) {
	ps := newPubSub(t)
	a := subscribe(t, ps, "t")
	b := subscribe(t, ps, "t")
	sent := message.NewMessage("id", []byte("payload"))
	sent.Metadata.Set("k", "v")
	require.NoError(t, ps.Publish("t", sent))

	ma, mb := receive(t, a), receive(t, b)
	assert.NotSame(t, sent, ma, "a copy, not the published message")
	assert.NotSame(t, ma, mb, "each subscription has its own copy")
	assert.True(t, ma.Equals(sent), "same UUID, metadata and payload")
	require.True(t, ma.Nack(), "Nack on one copy")
	assert.True(t, mb.Ack(), "does not affect the other")
	select {
	case <-sent.Acked():
		t.Fatal("the published message must not be acked by a subscriber")
	case <-sent.Nacked():
		t.Fatal("the published message must not be nacked by a subscriber")
	default:
	}
	assert.Equal(t, "id", receive(t, a).UUID, "the nacked copy comes again")
}

// Nack redelivers the same message; the next one waits until it is acked.
func TestNextMessageOnlyAfterAck(t *testing.T) {
	ps := newPubSub(t)
	ch := subscribe(t, ps, "t")
	publish(t, ps, "t", "first", "second")

	for range 5 {
		m := receive(t, ch)
		require.Equal(t, "first", m.UUID, "the unacked message comes again before the next")
		require.True(t, m.Nack(), "Nack")
	}
	m := receive(t, ch)
	require.Equal(t, "first", m.UUID)
	require.True(t, m.Ack(), "Ack")
	assert.Equal(t, []string{"second"}, receiveAcked(t, ch, 1), "the next one after the ack")

	assert.Equal(t, 1, ps.Stats().Subscriptions, "subscriptions")
	require.NoError(t, ps.Close()) // waits for the listener that saw the last ack
	s := ps.Stats()
	assert.Equal(t, uint64(2), s.Published, "published")
	assert.Equal(t, uint64(2), s.Acked, "acked")
	assert.Equal(t, uint64(5), s.Nacked, "nacked")
	assert.Zero(t, s.Subscriptions, "subscriptions after Close")
}

func TestNackDelay(t *testing.T) {
	const delay = 50 * time.Millisecond
	ps := newPubSub(t, watermillbus.WithNackDelay(delay))
	ch := subscribe(t, ps, "t")
	publish(t, ps, "t", "m")

	m := receive(t, ch)
	nacked := time.Now()
	require.True(t, m.Nack())
	again := receive(t, ch)
	assert.Equal(t, "m", again.UUID, "redelivered")
	// A timer never fires early, so this lower bound is not a race.
	assert.GreaterOrEqual(t, time.Since(nacked), delay, "redelivered no earlier than the delay")
	require.True(t, again.Ack())
}

// Close does not wait for a nack delay: the retry is dropped, and the
// EventManager counts it skipped, as the README says (it said abandoned).
func TestCloseCutsNackDelayShort(t *testing.T) {
	obs := &lostCounter{}
	ps, err := watermillbus.New(watermillbus.WithNackDelay(time.Hour), watermillbus.WithBusOptions(eventbus.WithObserver(obs)))
	require.NoError(t, err)
	ch, err := ps.Subscribe(context.Background(), "t")
	require.NoError(t, err)
	publish(t, ps, "t", "m")
	require.True(t, receive(t, ch).Nack())
	require.NoError(t, ps.Close(), "Close returns while the redelivery waits out its delay")
	requireClosed(t, ch)
	assert.Equal(t, map[eventbus.Outcome]int{eventbus.OutcomeSkipped: 1}, obs.counts(), "the dropped retry")
}

// lostCounter is an eventbus.Observer that counts the deliveries lost, by
// outcome.
type lostCounter struct {
	mu   sync.Mutex
	lost map[eventbus.Outcome]int
}

func (o *lostCounter) Emit(ctx context.Context, _ string) (context.Context, func(error)) {
	return ctx, func(error) {}
}

func (o *lostCounter) Start(ctx context.Context, _ eventbus.Delivery) (context.Context, func(eventbus.Outcome, error)) {
	return ctx, func(eventbus.Outcome, error) {}
}

func (o *lostCounter) Lost(_ context.Context, _ eventbus.Delivery, oc eventbus.Outcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lost == nil {
		o.lost = map[eventbus.Outcome]int{}
	}
	o.lost[oc]++
}

func (o *lostCounter) counts() map[eventbus.Outcome]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.lost)
}

// A reader that has seen its subscription's channel close finds it gone
// from Stats.Subscriptions. (The channel was closed before the PubSub
// forgot the subscription: most such readers still counted it.)
func TestClosedSubscriptionIsNotCounted(t *testing.T) {
	ps := newPubSub(t)
	for i := range 200 {
		ctx, cancel := context.WithCancel(context.Background())
		ch, err := ps.Subscribe(ctx, "t")
		require.NoError(t, err)
		cancel()
		for range ch {
		}
		require.Zero(t, ps.Stats().Subscriptions, "round %d", i)
	}
}

// Ending a subscription unregisters its listener, so the retry waiting out
// the nack delay is skipped, and Close does not wait for its timer.
func TestSubscriptionEndCutsNackDelayShort(t *testing.T) {
	ps, err := watermillbus.New(watermillbus.WithNackDelay(time.Hour))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := ps.Subscribe(ctx, "t")
	require.NoError(t, err)
	other := subscribe(t, ps, "t")
	publish(t, ps, "t", "m")
	require.True(t, receive(t, ch).Nack())
	cancel()
	requireClosed(t, ch)
	assert.Equal(t, []string{"m"}, receiveAcked(t, other, 1), "the other subscription is not held up")
	require.NoError(t, ps.Close(), "Close returns while the skipped retry's timer is pending")
	assert.Equal(t, uint64(1), ps.Stats().Acked, "acked")
}

func TestPreserveContext(t *testing.T) {
	type key struct{}
	ps := newPubSub(t, watermillbus.WithPreserveContext())
	ch := subscribe(t, ps, "t")
	pubCtx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "from publisher"))
	defer cancel()
	require.NoError(t, ps.Publish("t", message.NewMessageWithContext(pubCtx, "m", nil)))

	m := receive(t, ch)
	assert.Equal(t, "from publisher", m.Context().Value(key{}), "publisher's values")
	require.True(t, m.Ack())
	assert.NoError(t, m.Context().Err(), "the PubSub never cancels a preserved context")
	cancel()
	assert.ErrorIs(t, m.Context().Err(), context.Canceled, "it is the publisher's context")
}

func TestMessageContextWithoutPreserveContext(t *testing.T) {
	type key struct{}
	ps := newPubSub(t)
	subCtx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "from subscriber"))
	defer cancel()
	ch, err := ps.Subscribe(subCtx, "t")
	require.NoError(t, err)
	pubCtx := context.WithValue(context.Background(), key{}, "from publisher")
	require.NoError(t, ps.Publish("t", message.NewMessageWithContext(pubCtx, "a", nil), message.NewMessage("b", nil)))

	a := receive(t, ch)
	assert.Equal(t, "from subscriber", a.Context().Value(key{}), "values of the Subscribe context")
	require.NoError(t, a.Context().Err(), "live until acked")
	require.True(t, a.Ack())
	<-a.Context().Done() // cancelled by the ack

	b := receive(t, ch)
	require.NoError(t, b.Context().Err(), "live until nacked")
	require.True(t, b.Nack())
	<-b.Context().Done() // cancelled by the nack

	b = receive(t, ch)
	cancel() // ends the subscription
	<-b.Context().Done()
	requireClosed(t, ch)
}

func TestSubscribeContextEndsOnlyThatSubscription(t *testing.T) {
	ps := newPubSub(t)
	ctx, cancel := context.WithCancel(context.Background())
	ended, err := ps.Subscribe(ctx, "t")
	require.NoError(t, err)
	kept := subscribe(t, ps, "t")
	publish(t, ps, "t", "1")
	receive(t, ended) // never acked: dropped when the subscription ends

	cancel()
	requireClosed(t, ended)
	publish(t, ps, "t", "2")
	assert.Equal(t, []string{"1", "2"}, receiveAcked(t, kept, 2), "the other subscription goes on")
	assert.Equal(t, 1, ps.Stats().Subscriptions, "one subscription left")
}

func TestCloseIsIdempotentAndLeavesNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	ps, err := watermillbus.New(watermillbus.WithPersistence(10))
	require.NoError(t, err)
	held, err := ps.Subscribe(context.Background(), "t")
	require.NoError(t, err)
	idle, err := ps.Subscribe(context.Background(), "u")
	require.NoError(t, err)
	publish(t, ps, "t", "1", "2")
	receive(t, held) // held without an ack

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { assert.NoError(t, ps.Close(), "concurrent Close") })
	}
	wg.Wait()
	assert.NoError(t, ps.Close(), "Close again")
	requireClosed(t, held)
	requireClosed(t, idle)
	assert.Zero(t, ps.Stats().Subscriptions, "no subscription left")

	err = ps.Publish("t", message.NewMessage("x", nil))
	assert.ErrorIs(t, err, watermillbus.ErrClosed, "Publish after Close")
	_, err = ps.Subscribe(context.Background(), "t")
	assert.ErrorIs(t, err, watermillbus.ErrClosed, "Subscribe after Close")
}

func TestCloseReleasesBlockedPublish(t *testing.T) {
	ps, err := watermillbus.New(watermillbus.WithBusOptions(eventbus.WithQueueSize(1)))
	require.NoError(t, err)
	_, err = ps.Subscribe(context.Background(), "t") // never read
	require.NoError(t, err)

	published := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if err := ps.Publish("t", message.NewMessage("m", nil)); err != nil {
				published <- err
				return
			}
		}
	}()
	// Publish waits once the subscription's backlog is full; Close ends it.
	require.NoError(t, ps.Close())
	select {
	case err := <-published:
		assert.ErrorIs(t, err, watermillbus.ErrClosed, "the waiting Publish fails with ErrClosed")
	case <-time.After(hangGuard):
		t.Fatal("Publish still blocked after Close")
	}
}

func TestPublishWaitEndsWithMessageContext(t *testing.T) {
	ps := newPubSub(t, watermillbus.WithBusOptions(eventbus.WithQueueSize(1)))
	subscribe(t, ps, "t") // never read
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var err error
	for i := 0; err == nil && i < 10_000; i++ {
		err = ps.Publish("t", message.NewMessageWithContext(ctx, "m", nil))
	}
	assert.ErrorIs(t, err, eventbus.ErrQueueFull, "a full queue fails the Publish whose message context is done")
	assert.ErrorIs(t, err, context.Canceled, "and says why")
}

func TestBadInput(t *testing.T) {
	for name, opt := range map[string]watermillbus.Option{
		"persistence": watermillbus.WithPersistence(0),
		"nack delay":  watermillbus.WithNackDelay(-time.Second),
	} {
		_, err := watermillbus.New(opt)
		assert.ErrorIs(t, err, watermillbus.ErrInvalidOption, name)
	}

	ps := newPubSub(t)
	ch := subscribe(t, ps, "t")
	err := ps.Publish("t", message.NewMessage("before", nil), nil, message.NewMessage("after", nil))
	assert.ErrorIs(t, err, watermillbus.ErrNilMessage, "nil message")
	assert.Equal(t, []string{"before"}, receiveAcked(t, ch, 1), "the messages before the nil one are published")
	assert.Equal(t, uint64(1), ps.Stats().Published, "the ones after it are not")

	//lint:ignore SA1012 a nil context is the bad input under test
	_, err = ps.Subscribe(nil, "t")
	assert.ErrorIs(t, err, watermillbus.ErrNilContext, "nil context")
}

// Topics are arbitrary strings, and distinct topics never share messages,
// even when one looks like the escaped form of another.
func TestArbitraryTopics(t *testing.T) {
	ps := newPubSub(t)
	topics := []string{"", ".", "..", "a b", "a%20b", "x.*", "x.>", "x.%2A", "100%", "%", "%25", "é"}
	subs := make([]<-chan *message.Message, len(topics))
	for i, topic := range topics {
		subs[i] = subscribe(t, ps, topic)
	}
	for _, topic := range topics {
		publish(t, ps, topic, topic)
	}
	for i, topic := range topics {
		assert.Equal(t, []string{topic}, receiveAcked(t, subs[i], 1), "topic %q gets its own message", topic)
	}
	publish(t, ps, "last", "end")
	for i, topic := range topics {
		select {
		case m := <-subs[i]:
			t.Errorf("topic %q got a message of another topic: %q", topic, m.UUID)
		default:
		}
	}
}
