package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Close and Drain return on a connection that is closed for good, whether
// the application closed it or nats.go gave up reconnecting (issue 13:
// they hung forever with core-mode inbound).
func TestShutdownOnClosedConnection(t *testing.T) {
	for _, tt := range []struct {
		name   string
		drain  bool
		js     bool
		giveUp bool // nats.go gives up reconnecting, instead of nc.Close
	}{
		{name: "core/Close", drain: false},
		{name: "core/Drain", drain: true},
		{name: "core/Drain/gave up reconnecting", drain: true, giveUp: true},
		{name: "core/Close/gave up reconnecting", giveUp: true},
		{name: "jetstream/Drain", drain: true, js: true},
		{name: "jetstream/Close/gave up reconnecting", js: true, giveUp: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, withJetStream(t.TempDir()))
			closed := make(chan struct{})
			opts := []nats.Option{nats.ClosedHandler(func(*nats.Conn) { close(closed) })}
			if tt.giveUp {
				opts = append(opts, nats.MaxReconnects(1))
			}
			nc := connect(t, ts, opts...)
			m := newManager(t)
			bopts := []natsbus.Option{natsbus.Outbound("out.>"), natsbus.Inbound("in.>"), natsbus.WithErrorHandler(func(error) {})}
			if tt.js {
				createStream(t, nc, "S", "out.>", "in.>")
				bopts = append(bopts, natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S", Durable: "d"}))
			}
			b, err := natsbus.New(ctxTimeout(t, 10*time.Second), m, nc, bopts...)
			require.NoError(t, err)
			require.NoError(t, m.EmitSync(ctxTimeout(t, 10*time.Second), "out.1", order{ID: 1}))

			if tt.giveUp {
				ts.stop()
			} else {
				nc.Close()
			}
			receive(t, closed)

			done := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if tt.drain {
					done <- b.Drain(ctx)
				} else {
					done <- b.Close(ctx)
				}
			}()
			err = receive(t, done)
			assert.NotErrorIs(t, err, context.DeadlineExceeded, "returns without waiting for its deadline")
		})
	}
}

// Drain publishes every outbound event the EventManager accepted before
// it, even those still queued there when Drain is called (issue 13: they
// were skipped silently).
func TestDrainPublishesEventsQueuedInTheEventManager(t *testing.T) {
	for _, js := range []bool{false, true} {
		t.Run(map[bool]string{false: "core", true: "jetstream"}[js], func(t *testing.T) {
			const total = 2000
			ts := startServer(t, withJetStream(t.TempDir()))
			ncA, ncB := connect(t, ts), connect(t, ts)
			mA, mB := newManager(t), newManager(t)
			optsA := []natsbus.Option{natsbus.Outbound("q.>")}
			optsB := []natsbus.Option{natsbus.Inbound("q.>")}
			if js {
				createStream(t, ncA, "Q", "q.>")
				optsA = append(optsA, natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "Q"}))
				optsB = append(optsB, natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "Q", Durable: "d"}))
			}
			bA := newBridge(t, mA, ncA, optsA...)
			newBridge(t, mB, ncB, optsB...)
			var mu sync.Mutex
			got := map[int]bool{}
			all := make(chan struct{})
			_, err := mB.RegisterListener("q.>", func(_ context.Context, e eventbus.Event[order]) error {
				mu.Lock()
				defer mu.Unlock()
				got[e.Data.ID] = true
				if len(got) == total {
					close(all)
				}
				return nil
			})
			require.NoError(t, err)

			ctx := ctxTimeout(t, 30*time.Second)
			for i := range total {
				require.NoError(t, mA.Emit(ctx, fmt.Sprintf("q.%d", i%7), order{ID: i}))
			}
			require.NoError(t, bA.Drain(ctx))
			st := bA.Stats()
			require.Equal(t, uint64(total), st.Published, "every event accepted before Drain is published: %+v", st)
			assert.Zero(t, st.PublishErrors)
			assert.Zero(t, mA.Stats().Skipped, "nothing skipped by the EventManager")
			receive(t, all)
		})
	}
}

// Close publishes nothing new, but every outbound event the EventManager
// had queued is reported with ErrClosed and counted, never skipped
// silently.
func TestCloseReportsEventsQueuedInTheEventManager(t *testing.T) {
	const total = 2000
	ts := startServer(t)
	nc := connect(t, ts)
	var mu sync.Mutex
	var closedErrs int
	m := newManager(t, eventbus.WithErrorHandler(func(err error) {
		var pe *natsbus.PublishError
		if errors.As(err, &pe) && errors.Is(err, natsbus.ErrClosed) {
			mu.Lock()
			closedErrs++
			mu.Unlock()
		}
	}))
	b := newBridge(t, m, nc, natsbus.Outbound("q.>"))
	ctx := ctxTimeout(t, 30*time.Second)
	for i := range total {
		require.NoError(t, m.Emit(ctx, "q.x", order{ID: i}))
	}
	require.NoError(t, b.Close(ctx))
	require.NoError(t, m.Flush(ctx))
	st := b.Stats()
	assert.Equal(t, uint64(total), st.Published+st.PublishErrors, "each event published or failed: %+v", st)
	mu.Lock()
	assert.Equal(t, int(st.PublishErrors), closedErrs, "each failure reported with ErrClosed")
	mu.Unlock()
	assert.Zero(t, m.Stats().Skipped, "nothing skipped silently")
}

// An event emitted while Drain waits for the acks of the publishes in
// flight (a stream leader election can make that seconds) is published
// too: Drain goes on until a Flush and the ack wait after it pass with no
// new event. And one emitted while Close waits for them reaches the
// bridge's listener and fails with ErrClosed, reported and counted. (The
// outbound listeners were unregistered before that wait: such an event
// matched no listener, and was neither published nor reported.)
func TestShutdownAccountsForEventsEmittedWhileAcksAreAwaited(t *testing.T) {
	for _, drain := range []bool{true, false} {
		t.Run(map[bool]string{true: "Drain publishes it", false: "Close reports it"}[drain], func(t *testing.T) {
			s := newJSSender(t, natsbus.JetStreamConfig{RetryWait: 10 * time.Millisecond})
			natsbus.FreezeClock(s.b) // the publish budget never runs out
			ctx := ctxTimeout(t, 30*time.Second)
			require.NoError(t, s.direct.DeleteStream(ctx, "S")) // "no responders", as while no leader is elected
			s.emit(t, 1)                                        // s.0: in flight, sent again and again

			stopped := make(chan error, 1)
			go func() {
				if drain {
					stopped <- s.b.Drain(ctx)
				} else {
					stopped <- s.b.Close(ctx)
				}
			}()
			require.Eventually(t, func() bool { return natsbus.FlushWaiters(s.b) == 1 }, 10*time.Second, time.Millisecond,
				"Drain or Close waits for s.0's ack")
			lateErr := s.m.EmitSync(ctx, "s.late", order{ID: 99})
			require.NoError(t, s.m.Emit(ctx, "s.later", order{ID: 100})) // on a worker, maybe still queued when the acks come

			_, err := s.direct.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
			require.NoError(t, err) // a leader again
			natsbus.SkewClock(s.b, time.Second)
			require.NoError(t, <-stopped)

			st := s.b.Stats()
			if drain {
				require.NoError(t, lateErr)
				s.stored(t, 3)
				assert.Equal(t, uint64(3), st.Published)
				assert.Empty(t, s.errs.all())
				return
			}
			// EmitSync returns the listener's error to its caller (Emit
			// would pass it to the EventManager's error handler).
			assert.ErrorIs(t, lateErr, natsbus.ErrClosed)
			var pe *natsbus.PublishError
			require.ErrorAs(t, lateErr, &pe)
			assert.Equal(t, "s.late", pe.Event)
			s.stored(t, 1)
			assert.Equal(t, uint64(1), st.Published)
			assert.Equal(t, uint64(2), st.PublishErrors, "s.late, and s.later (Emit: reported to the EventManager's error handler)")
		})
	}
}

// A Drain whose ctx ends while the server is down says which stage it was
// in: here the inbound consumer's drain, which nats.go gives 10 s to flush.
// The error used to name only a later stage ("waiting for the acks of the
// events published"), although no publish was waiting.
func TestDrainSaysWhichStageItsContextEndedIn(t *testing.T) {
	ts := startServer(t, withJetStream(t.TempDir()))
	nc := connect(t, ts)
	createStream(t, nc, "IN", "in.>", "out.>")
	m := newManager(t)
	b := newBridge(t, m, nc, natsbus.Inbound("in.>"), natsbus.Outbound("out.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "IN", Durable: "d"}))
	ts.stop()
	require.Eventually(t, func() bool { return !nc.IsConnected() }, 10*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := b.Drain(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "natsbus: draining the inbound consumer: context deadline exceeded")
}
