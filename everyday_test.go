package eventbus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of issue 21: dead letters replayed from the error alone, error paths
// that keep their context, the listener enumeration, CancelWithEmitter and
// Unregister behind middleware.

// deadLetters is an error handler of the context-taking form that parks
// every failure with the context it came with.
type deadLetters struct {
	mu    sync.Mutex
	errs  []*eventbus.ListenerError
	ctxs  []context.Context
	added chan struct{}
}

func newDeadLetters() *deadLetters { return &deadLetters{added: make(chan struct{}, 64)} }

func (d *deadLetters) park(ctx context.Context, lerr *eventbus.ListenerError) {
	d.mu.Lock()
	d.errs = append(d.errs, lerr)
	d.ctxs = append(d.ctxs, ctx)
	d.mu.Unlock()
	d.added <- struct{}{}
}

func (d *deadLetters) wait(t *testing.T, n int) ([]*eventbus.ListenerError, []context.Context) {
	t.Helper()
	for range n {
		select {
		case <-d.added:
		case <-time.After(20 * time.Second):
			t.Fatalf("no dead letter")
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*eventbus.ListenerError(nil), d.errs...), append([]context.Context(nil), d.ctxs...)
}

func TestDeadLetterReplaysToItsListenerAlone(t *testing.T) {
	dl := newDeadLetters()
	m := newManager[any](t, eventbus.WithErrorHandler(dl.park))
	type order struct{ ID int }
	orders, err := eventbus.NewTopic[*order](m, "order.placed")
	require.NoError(t, err)
	var inventory, email, audit atomic.Int32
	var failOnce atomic.Bool
	failOnce.Store(true)
	_, err = orders.Listen(func(context.Context, eventbus.Event[*order]) error {
		inventory.Add(1)
		if failOnce.Swap(false) {
			return errors.New("stock service down")
		}
		return nil
	}, eventbus.Name("inventory"))
	require.NoError(t, err)
	_, err = orders.Listen(func(context.Context, eventbus.Event[*order]) error { email.Add(1); return nil }, eventbus.Name("email"))
	require.NoError(t, err)
	_, err = m.RegisterListener("order.>", func(context.Context, eventbus.Event[any]) error { audit.Add(1); return nil }, eventbus.Name("audit"))
	require.NoError(t, err)

	ctx := context.Background()
	require.NoError(t, orders.Emit(ctx, &order{ID: 7}))
	errs, _ := dl.wait(t, 1)
	lerr := errs[0]
	assert.Equal(t, "inventory", lerr.Listener)
	require.NotNil(t, lerr.Handle)
	assert.Equal(t, "inventory", lerr.Handle.Name())

	// The replay: one line, no name→listener map.
	require.NoError(t, m.EmitTo(ctx, lerr.Handle, lerr.Event, lerr.Data))
	require.NoError(t, m.Flush(ctx))
	assert.Equal(t, int32(2), inventory.Load(), "the failed listener got it again")
	assert.Equal(t, int32(1), email.Load(), "the others did not")
	assert.Equal(t, int32(1), audit.Load())

	// Topic.EmitTo, to a topic listener and to a wildcard one.
	require.NoError(t, orders.EmitTo(ctx, lerr.Handle, &order{ID: 8}))
	auditL := m.Listeners()[2]
	require.Equal(t, "audit", auditL.Name())
	require.NoError(t, orders.EmitTo(ctx, auditL, &order{ID: 8}))
	require.NoError(t, m.Flush(ctx))
	assert.Equal(t, int32(3), inventory.Load())
	assert.Equal(t, int32(2), audit.Load())
	assert.Equal(t, int32(1), email.Load())

	// Bad input fails with sentinels, never a panic.
	assert.ErrorIs(t, m.EmitTo(ctx, nil, "order.placed", &order{}), eventbus.ErrInvalidOption)
	assert.ErrorIs(t, m.EmitTo(ctx, lerr.Handle, "order.placed", "not an order"), eventbus.ErrTypeMismatch)
	other := eventbus.New[any]()
	defer other.Close(ctx)
	assert.ErrorIs(t, other.EmitTo(ctx, lerr.Handle, "order.placed", &order{}), eventbus.ErrInvalidOption)
}

func TestErrorHandlerGetsTheDeliveryContext(t *testing.T) {
	dl := newDeadLetters()
	m := newManager[int](t, eventbus.WithErrorHandler(dl.park), eventbus.WithWorkers(1))
	_, err := m.RegisterListener("pay", func(context.Context, eventbus.Event[int]) error {
		return errors.New("card declined")
	}, eventbus.Name("billing"), eventbus.Retry(1, 0, 0))
	require.NoError(t, err)
	_, err = m.RegisterListener("pay", func(context.Context, eventbus.Event[int]) error { panic("boom") }, eventbus.Name("fraud"))
	require.NoError(t, err)
	g := newGate()
	_, err = m.RegisterListener("full", g.handler, eventbus.Name("full"), eventbus.QueueSize(1), eventbus.OnOverflow(eventbus.OverflowDropNewest))
	require.NoError(t, err)

	ctx := context.WithValue(context.Background(), traceKey{}, "trace-1")
	require.NoError(t, m.Emit(ctx, "pay", 1))
	errs, ctxs := dl.wait(t, 2)
	for i, lerr := range errs {
		assert.Equal(t, "trace-1", ctxs[i].Value(traceKey{}), "%s: the emitter's values", lerr.Listener)
		assert.Equal(t, lerr.Listener, eventbus.ListenerName(ctxs[i]), "and the listener's name")
	}

	// A drop is reported with the context of the emit that dropped it.
	require.NoError(t, m.Emit(context.Background(), "full", 0))
	g.waitEntered(t, 1)
	require.NoError(t, m.Emit(context.Background(), "full", 1))
	require.NoError(t, m.Emit(context.WithValue(ctx, traceKey{}, "trace-2"), "full", 2))
	errs, ctxs = dl.wait(t, 1)
	assert.ErrorIs(t, errs[2], eventbus.ErrDropped)
	assert.Equal(t, "trace-2", ctxs[2].Value(traceKey{}))
	g.open()
}

func TestErrorHandlerOlderFormStillWorks(t *testing.T) {
	var sink errorSink
	m := newManager[int](t, eventbus.WithErrorHandler(sink.handle))
	_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { return errors.New("no") })
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	require.NoError(t, m.Flush(context.Background()))
	errs := sink.all()
	require.Len(t, errs, 1)
	var lerr *eventbus.ListenerError
	require.ErrorAs(t, errs[0], &lerr)
	assert.NotNil(t, lerr.Handle)
}

// traceHandler is a slog.Handler that, like otelbus.LogHandler, adds a
// trace ID found in the record's context.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if id, ok := ctx.Value(traceKey{}).(string); ok {
		r.AddAttrs(slog.String("trace_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func TestWithLoggerLogsWithTheDeliveryContext(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(traceHandler{slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil)})
	m := newManager[int](t, eventbus.WithLogger(logger))
	_, err := m.RegisterListener("pay", func(context.Context, eventbus.Event[int]) error {
		return errors.New("card declined")
	}, eventbus.Name("billing"))
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.WithValue(context.Background(), traceKey{}, "abc123"), "pay", 1))
	require.NoError(t, m.Flush(context.Background()))
	mu.Lock()
	defer mu.Unlock()
	assert.Contains(t, buf.String(), "listener=billing")
	assert.Contains(t, buf.String(), "trace_id=abc123")
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func TestListenersEnumeratesInRegistrationOrder(t *testing.T) {
	m := newManager[int](t)
	nop := func(context.Context, eventbus.Event[int]) error { return nil }
	a, err := m.RegisterListener("a", nop)
	require.NoError(t, err)
	b, err := m.RegisterListener("b.*", nop, eventbus.Name("bee"))
	require.NoError(t, err)
	once, err := m.RegisterListener("c", nop, eventbus.Once())
	require.NoError(t, err)
	d, err := m.RegisterListener("d", nop)
	require.NoError(t, err)
	assert.Equal(t, []*eventbus.Listener{a, b, once, d}, m.Listeners())

	b.Unregister()
	assert.Equal(t, []*eventbus.Listener{a, once, d}, m.Listeners())
	require.NoError(t, m.EmitSync(context.Background(), "c", 0)) // the Once fires and leaves
	assert.Equal(t, []*eventbus.Listener{a, d}, m.Listeners())
	a.Unregister()
	d.Unregister()
	assert.Empty(t, m.Listeners())
	e, err := m.RegisterListener("e", nop)
	require.NoError(t, err)
	assert.Equal(t, []*eventbus.Listener{e}, m.Listeners(), "the list starts again from empty")
	assert.Equal(t, m.Stats().Listeners, len(m.Listeners()))
}

func TestCancelWithEmitter(t *testing.T) {
	var sink errorSink
	m := newManager[int](t, eventbus.WithErrorHandler(sink.handle))
	type seen struct {
		cause   error
		handler context.Context
	}
	tiedDone := make(chan seen, 1)
	started := make(chan struct{}, 2)
	_, err := m.RegisterListener("job", func(ctx context.Context, _ eventbus.Event[int]) error {
		started <- struct{}{}
		<-ctx.Done()
		tiedDone <- seen{context.Cause(ctx), ctx}
		return ctx.Err()
	}, eventbus.CancelWithEmitter(), eventbus.Name("tied"))
	require.NoError(t, err)
	plainCtx := make(chan context.Context, 1)
	release := make(chan struct{})
	_, err = m.RegisterListener("job", func(ctx context.Context, _ eventbus.Event[int]) error {
		started <- struct{}{}
		<-release
		plainCtx <- ctx
		return nil
	}, eventbus.Name("plain"))
	require.NoError(t, err)

	ctx, cancel := context.WithCancelCause(context.Background())
	stopped := errors.New("bridge closed")
	require.NoError(t, m.Emit(ctx, "job", 1))
	<-started
	<-started
	cancel(stopped)
	got := <-tiedDone
	assert.ErrorIs(t, got.cause, stopped, "the tied listener's context ends with the emitter's cause")
	assert.ErrorIs(t, got.handler.Err(), context.Canceled)
	assert.Equal(t, "tied", eventbus.ListenerName(got.handler))
	close(release)
	assert.NoError(t, (<-plainCtx).Err(), "a listener without the option keeps running")
	require.NoError(t, m.Flush(context.Background()))
	errs := sink.all()
	require.Len(t, errs, 1, "the tied listener returned ctx.Err()")
	assert.ErrorIs(t, errs[0], context.Canceled)
}

func TestCancelWithEmitterUndoesTheTieAfterEachDelivery(t *testing.T) {
	var sink errorSink
	m := newManager[int](t, eventbus.WithErrorHandler(sink.handle))
	ctxs := make(chan context.Context, 2)
	_, err := m.RegisterListener("job", func(ctx context.Context, e eventbus.Event[int]) error {
		ctxs <- ctx
		return nil
	}, eventbus.CancelWithEmitter())
	require.NoError(t, err)
	emitter, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, m.Emit(emitter, "job", 1))
	require.NoError(t, m.Flush(context.Background()))
	first := <-ctxs
	assert.ErrorIs(t, first.Err(), context.Canceled, "the delivery's context ends with its delivery")
	assert.NotErrorIs(t, context.Cause(first), context.DeadlineExceeded)
	assert.NoError(t, emitter.Err(), "the emitter's context is untouched")

	// An emitter's context already done: the handler runs, its context done.
	cancel()
	require.NoError(t, m.Emit(emitter, "job", 2))
	require.NoError(t, m.Flush(context.Background()))
	assert.ErrorIs(t, (<-ctxs).Err(), context.Canceled)
	assert.Empty(t, sink.all())

	// Without a cancellable emitter's context there is nothing to tie.
	require.NoError(t, m.TryEmit("job", 3))
	require.NoError(t, m.Flush(context.Background()))
	assert.NoError(t, (<-ctxs).Err(), "TryEmit's listeners keep the pool's context")
}

func TestCancelWithEmitterCostsNothingWhenUnused(t *testing.T) {
	allocs := func(tied bool, ctx context.Context) float64 {
		m := newManager[int](t, eventbus.WithWorkers(1))
		opts := []eventbus.ListenerOption{eventbus.Name("job")}
		if tied {
			opts = append(opts, eventbus.CancelWithEmitter())
		}
		_, err := m.RegisterListener("job", func(context.Context, eventbus.Event[int]) error { return nil }, opts...)
		require.NoError(t, err)
		return testing.AllocsPerRun(200, func() {
			_ = m.Emit(ctx, "job", 1)
			_ = m.Flush(context.Background())
		})
	}
	cancellable, cancel := context.WithCancel(context.Background())
	defer cancel()
	assert.Equal(t, allocs(false, context.Background()), allocs(true, context.Background()),
		"a tied listener allocates nothing more when the emitter's context cannot be cancelled")
	assert.Less(t, allocs(false, cancellable), allocs(true, cancellable),
		"the tie allocates, for tied listeners only (the other side of this comparison)")
}

// A registered listener whose handler fails with an error that matches
// ErrUnregistered of its own (it relays with EmitSyncTo to a listener that
// has gone) fails, with middleware as without: EmitSync and EmitSyncTo
// return its *ListenerError, the pool reports it, and it counts as Failed.
// Only the guard's own error, returned to middleware that calls next after
// Unregister, is a skip. (With middleware, every such failure counted as
// skipped: not returned, not reported, not retried.)
func TestHandlerFailingWithErrUnregisteredFails(t *testing.T) {
	for _, mw := range []bool{false, true} {
		t.Run(map[bool]string{false: "no middleware", true: "middleware"}[mw], func(t *testing.T) {
			ctx := context.Background()
			reported := make(chan error, 4)
			m := newManager[int](t, eventbus.WithErrorHandler(func(err error) { reported <- err }))
			gone, err := m.RegisterListener("other", func(context.Context, eventbus.Event[int]) error { return nil })
			require.NoError(t, err)
			gone.Unregister()
			var opts []eventbus.ListenerOption
			if mw {
				opts = append(opts, eventbus.Use(func(next eventbus.Handler[int]) eventbus.Handler[int] { return next }))
			}
			l, err := m.RegisterListener("relay", func(ctx context.Context, e eventbus.Event[int]) error {
				if err := m.EmitSyncTo(ctx, gone, "other", e.Data); err != nil {
					return fmt.Errorf("relay: %w", err)
				}
				return nil
			}, opts...)
			require.NoError(t, err)

			var lerr *eventbus.ListenerError
			err = m.EmitSync(ctx, "relay", 1)
			require.ErrorAs(t, err, &lerr)
			assert.ErrorIs(t, err, eventbus.ErrUnregistered, "the handler's own error, kept")
			err = m.EmitSyncTo(ctx, l, "relay", 2)
			require.ErrorAs(t, err, &lerr)
			require.NoError(t, m.Emit(ctx, "relay", 3))
			require.NoError(t, m.Flush(ctx))
			select {
			case err := <-reported:
				assert.ErrorAs(t, err, &lerr)
			default:
				t.Fatal("the pool's failure was not reported")
			}
			s := l.Stats()
			assert.Equal(t, uint64(3), s.Failed)
			assert.Zero(t, s.Skipped)
			checkAccounting(t, m.Stats())
		})
	}
}

func TestUnregisterStopsTheHandlerBehindMiddleware(t *testing.T) {
	for _, mode := range []string{"Emit", "EmitSync"} {
		t.Run(mode, func(t *testing.T) {
			m := newManager[int](t)
			entered := make(chan struct{})
			proceed := make(chan struct{})
			nextErr := make(chan error, 1)
			var called atomic.Bool
			mw := func(next eventbus.Handler[int]) eventbus.Handler[int] {
				return func(ctx context.Context, e eventbus.Event[int]) error {
					close(entered)
					<-proceed
					err := next(ctx, e)
					nextErr <- err
					return err
				}
			}
			l, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
				called.Store(true)
				return nil
			}, eventbus.Use(mw))
			require.NoError(t, err)
			syncErr := make(chan error, 1)
			if mode == "Emit" {
				require.NoError(t, m.Emit(context.Background(), "e", 1))
			} else {
				go func() { syncErr <- m.EmitSync(context.Background(), "e", 1) }()
			}
			<-entered
			l.Unregister()
			close(proceed)
			assert.ErrorIs(t, <-nextErr, eventbus.ErrUnregistered)
			if mode == "Emit" {
				require.NoError(t, m.Flush(context.Background()))
			} else {
				assert.NoError(t, <-syncErr, "a skipped delivery is not a failure")
			}
			assert.False(t, called.Load(), "the handler must not start once Unregister returned")
			assert.Equal(t, uint64(1), l.Stats().Skipped)
			assert.Equal(t, uint64(0), l.Stats().Failed)
			checkAccounting(t, m.Stats())
		})
	}
}

// What each emit does with a context that is already cancelled, as the
// README states it: Emit, Topic.Emit and EmitTo accept the event (the
// context bounds only a wait for room; listeners get its values, not its
// cancellation), EmitSync and Topic.EmitSync refuse it without calling any
// listener.
func TestCancelledContextPerEmit(t *testing.T) {
	var sink errorSink
	m := newManager[any](t, eventbus.WithErrorHandler(sink.handle))
	type order struct{ ID int }
	orders, err := eventbus.NewTopic[*order](m, "order.placed")
	require.NoError(t, err)
	var got atomic.Int32
	l, err := orders.Listen(func(ctx context.Context, _ eventbus.Event[*order]) error {
		got.Add(1)
		return ctx.Err() // nil: the emitter's cancellation is not passed on
	})
	require.NoError(t, err)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	require.NoError(t, m.Emit(cancelled, "order.placed", &order{1}))
	require.NoError(t, orders.Emit(cancelled, &order{2}))
	require.NoError(t, m.EmitTo(cancelled, l, "order.placed", &order{3}))
	require.NoError(t, orders.EmitTo(cancelled, l, &order{4}))
	assert.ErrorIs(t, m.EmitSync(cancelled, "order.placed", &order{5}), context.Canceled)
	assert.ErrorIs(t, orders.EmitSync(cancelled, &order{6}), context.Canceled)
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, int32(4), got.Load(), "the four pool emits delivered, the two sync ones not")
	assert.Empty(t, sink.all())

	// A wait for room is what the context bounds.
	full := newGate()
	_, err = m.RegisterListener("full", func(ctx context.Context, _ eventbus.Event[any]) error { full.wait(ctx); return nil },
		eventbus.QueueSize(1), eventbus.Ordered())
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "full", 1))
	full.waitEntered(t, 1)
	require.NoError(t, m.Emit(context.Background(), "full", 2)) // fills the backlog
	err = m.Emit(cancelled, "full", 3)
	assert.ErrorIs(t, err, eventbus.ErrQueueFull)
	assert.ErrorIs(t, err, context.Canceled)
	full.open()
}
