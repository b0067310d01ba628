package eventbus_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// panickyObserver panics in Start, in the done function Start returns, or in
// Lost, as its fields say.
type panickyObserver struct {
	inStart, inDone, inLost bool
	started, finished       atomic.Int32
}

func (o *panickyObserver) Emit(ctx context.Context, _ string) (context.Context, func(error)) {
	return ctx, func(error) {}
}

func (o *panickyObserver) Start(ctx context.Context, _ eventbus.Delivery) (context.Context, func(eventbus.Outcome, error)) {
	o.started.Add(1)
	if o.inStart {
		panic("observer start")
	}
	return ctx, func(eventbus.Outcome, error) {
		o.finished.Add(1)
		if o.inDone {
			panic("observer done")
		}
	}
}

func (o *panickyObserver) Lost(context.Context, eventbus.Delivery, eventbus.Outcome) {
	if o.inLost {
		panic("observer lost")
	}
}

// requireObserverPanic checks that err is the listener's *ListenerError
// carrying the observer's panic.
func requireObserverPanic(t *testing.T, err error, value string) {
	t.Helper()
	var lerr *eventbus.ListenerError
	require.ErrorAs(t, err, &lerr)
	assert.Equal(t, "observed", lerr.Listener)
	var perr *eventbus.PanicError
	require.ErrorAs(t, err, &perr)
	assert.Equal(t, value, perr.Value)
}

// An Observer's panic in Start or done is the listener's: on the pool it is
// recovered and reported as a *ListenerError, under EmitSync it is returned.
// On 0a1e6ca it crashed the process (a worker) or reached EmitSync's caller.
func TestObserverPanicsAreTheListeners(t *testing.T) {
	for _, tc := range []struct {
		name  string
		obs   *panickyObserver
		value string
		runs  int32 // handler runs per delivery
	}{
		{"start", &panickyObserver{inStart: true}, "observer start", 0},
		{"done", &panickyObserver{inDone: true}, "observer done", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := make(chan error, 10)
			m := newManager[int](t, eventbus.WithObserver(tc.obs), eventbus.WithErrorHandler(func(err error) { errs <- err }))
			var runs atomic.Int32
			_, err := m.RegisterListener("ev", func(context.Context, eventbus.Event[int]) error {
				runs.Add(1)
				return nil
			}, eventbus.Name("observed"))
			require.NoError(t, err)

			// EmitSync returns the panic as the listener's failure.
			err = m.EmitSync(context.Background(), "ev", 1)
			requireObserverPanic(t, err, tc.value)

			// On the pool it goes to the error handler; the process lives on.
			require.NoError(t, m.Emit(context.Background(), "ev", 2))
			require.NoError(t, m.Flush(context.Background()))
			requireObserverPanic(t, <-errs, tc.value)

			assert.Equal(t, 2*tc.runs, runs.Load(), "handler runs")
			s := m.Stats()
			assert.Equal(t, uint64(2), s.Panicked, "both attempts count as panicked")
			checkAccounting(t, s)
		})
	}
}

// A panic in Observer.Lost on a worker (a skipped delivery) is the
// listener's too, and never ends the process.
func TestObserverLostPanicOnAWorkerIsRecovered(t *testing.T) {
	obs := &panickyObserver{inLost: true}
	errs := make(chan error, 10)
	m := newManager[int](t, eventbus.WithObserver(obs), eventbus.WithErrorHandler(func(err error) { errs <- err }))
	g := newGate()
	l, err := m.RegisterListener("ev", func(ctx context.Context, e eventbus.Event[int]) error {
		if e.Data == 1 {
			g.wait(ctx)
		}
		return nil
	}, eventbus.Name("observed"), eventbus.Ordered())
	require.NoError(t, err)

	require.NoError(t, m.Emit(context.Background(), "ev", 1))
	g.waitEntered(t, 1)
	require.NoError(t, m.Emit(context.Background(), "ev", 2)) // queued behind the first
	l.Unregister()
	g.open()
	require.NoError(t, m.Flush(context.Background()))
	requireObserverPanic(t, <-errs, "observer lost")
	s := m.Stats()
	assert.Equal(t, uint64(1), s.Delivered)
	assert.Equal(t, uint64(1), s.Panicked, "the skipped delivery's Lost panicked")
	checkAccounting(t, s)
}
