package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

type order struct {
	ID   int
	Item string
}

func TestSeedScenario(t *testing.T) {
	m := newManager[order](t)
	var got []string
	_, err := m.RegisterListener("new_order", func(_ context.Context, e eventbus.Event[order]) error {
		got = append(got, fmt.Sprintf("Processing order #%d for %s", e.Data.ID, e.Data.Item))
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(context.Background(), "new_order", order{ID: 123, Item: "Coffee"}))
	assert.Equal(t, []string{"Processing order #123 for Coffee"}, got)
}

func TestRoutingMatchesPatterns(t *testing.T) {
	m := newManager[int](t)
	var mu sync.Mutex
	got := map[string][]string{}
	for _, p := range []string{"order.created", "order.*", "order.>", ">", "*.created", "order.*.eu", "payment.>"} {
		_, err := m.RegisterListener(p, func(_ context.Context, e eventbus.Event[int]) error {
			mu.Lock()
			defer mu.Unlock()
			got[e.Name] = append(got[e.Name], p)
			return nil
		})
		require.NoError(t, err)
	}
	for _, name := range []string{"order.created", "order.shipped.eu", "payment", "user.created", "order"} {
		require.NoError(t, m.EmitSync(context.Background(), name, 1))
	}
	for k := range got {
		sort.Strings(got[k])
	}
	assert.Equal(t, map[string][]string{
		"order.created":    {"*.created", ">", "order.*", "order.>", "order.created"},
		"order.shipped.eu": {">", "order.*.eu", "order.>"},
		"payment":          {">"},
		"user.created":     {"*.created", ">"},
		"order":            {">"},
	}, got)
}

func TestRoutingSeesRegistryChanges(t *testing.T) {
	// The wildcard route cache must be invalidated by every change.
	m := newManager[int](t)
	var a, b, c atomic.Int32
	count := func(n *atomic.Int32) eventbus.Handler[int] {
		return func(context.Context, eventbus.Event[int]) error { n.Add(1); return nil }
	}
	la, err := m.RegisterListener("x.*", count(&a))
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(context.Background(), "x.y", 0)) // cached: a
	_, err = m.RegisterListener("x.y", count(&b))
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(context.Background(), "x.y", 0)) // a, b
	lc, err := m.RegisterListener("x.>", count(&c))
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(context.Background(), "x.y", 0)) // a, b, c
	la.Unregister()
	lc.Unregister()
	require.NoError(t, m.EmitSync(context.Background(), "x.y", 0)) // b
	assert.Equal(t, []int32{3, 3, 1}, []int32{a.Load(), b.Load(), c.Load()})
}

func TestRoutingBeyondTheRouteCache(t *testing.T) {
	// More distinct names than the route cache holds (8192), each emitted
	// several times from two goroutines: names promoted to the cache's fast
	// map, names still in its locked map and names past its bound must all
	// route exactly like the first time.
	m := newManager[int](t)
	const names, rounds = 10_000, 3
	var star, tail atomic.Int64
	_, err := m.RegisterListener("n.*", func(context.Context, eventbus.Event[int]) error { star.Add(1); return nil })
	require.NoError(t, err)
	_, err = m.RegisterListener("n.>", func(context.Context, eventbus.Event[int]) error { tail.Add(1); return nil })
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				for i := range names {
					name := fmt.Sprintf("n.%d", i)
					if (i+r+g)%3 == 0 {
						name += ".deeper" // matches n.> only
					}
					assert.NoError(t, m.EmitSync(context.Background(), name, i))
				}
			}
		}()
	}
	wg.Wait()
	total := int64(2 * rounds * names)
	assert.Equal(t, total, tail.Load(), "n.> matches every name")
	var deeper int64
	for g := range 2 {
		for r := range rounds {
			for i := range names {
				if (i+r+g)%3 == 0 {
					deeper++
				}
			}
		}
	}
	assert.Equal(t, total-deeper, star.Load(), "n.* matches the two-token names only")
}

func TestEmitSyncPriorityOrder(t *testing.T) {
	m := newManager[int](t)
	var got []string
	reg := func(name string, opts ...eventbus.ListenerOption) {
		_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
			got = append(got, name)
			return nil
		}, opts...)
		require.NoError(t, err)
	}
	reg("low", eventbus.Priority(-1))
	reg("first-default")
	reg("high", eventbus.Priority(10))
	reg("second-default")
	reg("mid", eventbus.Priority(5))
	require.NoError(t, m.EmitSync(context.Background(), "e", 0))
	assert.Equal(t, []string{"high", "mid", "first-default", "second-default", "low"}, got)
}

func TestEmitSyncReturnsJoinedListenerErrors(t *testing.T) {
	m := newManager[int](t)
	errBoom := errors.New("boom")
	var ran atomic.Int32
	_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { return errBoom }, eventbus.Priority(2))
	require.NoError(t, err)
	_, err = m.RegisterListener("e.>", func(context.Context, eventbus.Event[int]) error { panic("kaput") })
	require.NoError(t, err)
	_, err = m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { ran.Add(1); return nil }, eventbus.Priority(1))
	require.NoError(t, err)
	_, err = m.RegisterListener("e.sub", func(context.Context, eventbus.Event[int]) error { ran.Add(1); return nil })
	require.NoError(t, err)

	err = m.EmitSync(context.Background(), "e", 0)
	require.Error(t, err)
	assert.ErrorIs(t, err, errBoom)
	var le *eventbus.ListenerError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "e", le.Event)
	assert.Equal(t, "e", le.Pattern)
	assert.Equal(t, int32(1), ran.Load(), "a failing listener does not stop the others")

	err = m.EmitSync(context.Background(), "e.sub", 0)
	var pe *eventbus.PanicError
	require.ErrorAs(t, err, &pe, "a panic becomes an error")
	assert.Equal(t, "kaput", pe.Value)
	assert.Contains(t, string(pe.Stack), "bus_test.go", "the panic carries its stack")
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "e.>", le.Pattern)
	assert.Equal(t, int32(2), ran.Load(), "a panicking listener does not stop the others")

	s := m.Stats()
	assert.Equal(t, uint64(2), s.Emitted)
	assert.Equal(t, uint64(1), s.Failed)
	assert.Equal(t, uint64(1), s.Panicked)
	assert.Equal(t, uint64(2), s.Delivered)
	checkAccounting(t, s)
}

func TestEmitSyncJoinsSeveralErrors(t *testing.T) {
	m := newManager[int](t)
	e1, e2 := errors.New("one"), errors.New("two")
	for _, e := range []error{e1, e2} {
		_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { return e })
		require.NoError(t, err)
	}
	err := m.EmitSync(context.Background(), "e", 0)
	assert.ErrorIs(t, err, e1)
	assert.ErrorIs(t, err, e2)
}

func TestEmitSyncGivesCallerContext(t *testing.T) {
	m := newManager[int](t)
	type key struct{}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	defer cancel()
	_, err := m.RegisterListener("e", func(lctx context.Context, _ eventbus.Event[int]) error {
		assert.Equal(t, "v", lctx.Value(key{}))
		cancel()
		assert.Error(t, lctx.Err(), "EmitSync listeners see the caller's cancellation")
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(ctx, "e", 0))
	err = m.EmitSync(ctx, "e", 0)
	assert.ErrorIs(t, err, context.Canceled, "a done context is refused before any listener runs")
}

func TestEmitDeliversEveryEventToEveryListener(t *testing.T) {
	const events, listeners = 5000, 7
	m := newManager[int](t, eventbus.WithWorkers(4), eventbus.WithQueueSize(64))
	var sums [listeners]atomic.Int64
	var counts [listeners]atomic.Int64
	for i := range listeners {
		_, err := m.RegisterListener("tick", func(_ context.Context, e eventbus.Event[int]) error {
			sums[i].Add(int64(e.Data))
			counts[i].Add(1)
			return nil
		})
		require.NoError(t, err)
	}
	for i := range events {
		require.NoError(t, m.Emit(context.Background(), "tick", i))
	}
	require.NoError(t, m.Flush(context.Background()))
	for i := range listeners {
		assert.Equal(t, int64(events), counts[i].Load(), "listener %d count", i)
		assert.Equal(t, int64(events*(events-1)/2), sums[i].Load(), "listener %d got each event once", i)
	}
	s := m.Stats()
	assert.Equal(t, uint64(events), s.Emitted)
	assert.Equal(t, uint64(events*listeners), s.Delivered)
	assert.Zero(t, s.Queued)
	assert.Zero(t, s.Running)
	checkAccounting(t, s)
}

func TestEmitWithoutListenersIsCounted(t *testing.T) {
	m := newManager[int](t)
	require.NoError(t, m.Emit(context.Background(), "nobody.home", 1))
	require.NoError(t, m.EmitSync(context.Background(), "nobody.home", 1))
	s := m.Stats()
	assert.Equal(t, uint64(2), s.Emitted)
	assert.Zero(t, s.Matched)
}

func TestEmitListenerContextKeepsValuesNotCancellation(t *testing.T) {
	m := newManager[int](t)
	type key struct{}
	got := make(chan context.Context, 1)
	_, err := m.RegisterListener("e", func(ctx context.Context, _ eventbus.Event[int]) error {
		got <- ctx
		return nil
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "trace-1"))
	require.NoError(t, m.Emit(ctx, "e", 1))
	cancel()
	lctx := <-got
	assert.Equal(t, "trace-1", lctx.Value(key{}))
	assert.NoError(t, lctx.Err(), "the emitter's cancellation does not reach the listener")
	_, hasDeadline := lctx.Deadline()
	assert.False(t, hasDeadline)
}

func TestOnceRunsOnceUnderConcurrentEmits(t *testing.T) {
	m := newManager[int](t, eventbus.WithWorkers(4))
	var runs atomic.Int32
	l, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
		runs.Add(1)
		return nil
	}, eventbus.Once())
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if (g+i)%2 == 0 {
					assert.NoError(t, m.Emit(context.Background(), "e", i))
				} else {
					assert.NoError(t, m.EmitSync(context.Background(), "e", i))
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, int32(1), runs.Load())
	assert.Equal(t, uint64(1), l.Stats().Delivered)
	assert.Zero(t, m.Stats().Listeners, "a Once listener unregisters itself")
	checkAccounting(t, m.Stats())
}

func TestUnregisterSkipsQueuedDeliveries(t *testing.T) {
	m := newManager[int](t, eventbus.WithWorkers(1))
	g := newGate()
	_, err := m.RegisterListener("block", g.handler)
	require.NoError(t, err)
	var runs atomic.Int32
	l, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
		runs.Add(1)
		return nil
	})
	require.NoError(t, err)

	require.NoError(t, m.Emit(context.Background(), "block", 0))
	g.waitEntered(t, 1) // the only worker is busy
	for i := range 10 {
		require.NoError(t, m.Emit(context.Background(), "e", i))
	}
	l.Unregister()
	l.Unregister() // idempotent
	g.open()
	require.NoError(t, m.Flush(context.Background()))
	assert.Zero(t, runs.Load(), "no invocation starts after Unregister returns")
	assert.Equal(t, uint64(10), l.Stats().Skipped)
	s := m.Stats()
	assert.Equal(t, uint64(10), s.Skipped)
	assert.Equal(t, 1, s.Listeners)
	checkAccounting(t, s)
}

func TestUnregisterFromInsideOwnHandler(t *testing.T) {
	m := newManager[int](t)
	var runs atomic.Int32
	var l *eventbus.Listener
	var err error
	l, err = m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
		runs.Add(1)
		l.Unregister()
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(context.Background(), "e", 0))
	require.NoError(t, m.EmitSync(context.Background(), "e", 0))
	require.NoError(t, m.Emit(context.Background(), "e", 0))
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, int32(1), runs.Load())
}

func TestAsyncFailuresReachErrorHandler(t *testing.T) {
	sink := &errorSink{}
	m := newManager[int](t, eventbus.WithErrorHandler(sink.handle), eventbus.WithWorkers(2))
	errBad := errors.New("bad order")
	var ok atomic.Int32
	_, err := m.RegisterListener("order.*", func(_ context.Context, e eventbus.Event[int]) error {
		if e.Data%2 == 0 {
			panic(fmt.Sprintf("panic on %d", e.Data))
		}
		return errBad
	})
	require.NoError(t, err)
	_, err = m.RegisterListener("order.created", func(context.Context, eventbus.Event[int]) error {
		ok.Add(1)
		return nil
	})
	require.NoError(t, err)
	for i := range 100 {
		require.NoError(t, m.Emit(context.Background(), "order.created", i))
	}
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, int32(100), ok.Load(), "a failing or panicking listener never affects another")
	errs := sink.all()
	require.Len(t, errs, 100)
	var panics, fails int
	for _, err := range errs {
		var le *eventbus.ListenerError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, "order.*", le.Pattern)
		assert.Equal(t, "order.created", le.Event)
		var pe *eventbus.PanicError
		switch {
		case errors.As(err, &pe):
			panics++
		case errors.Is(err, errBad):
			fails++
		}
	}
	assert.Equal(t, 50, panics)
	assert.Equal(t, 50, fails)
	s := m.Stats()
	assert.Equal(t, uint64(50), s.Panicked)
	assert.Equal(t, uint64(50), s.Failed)
	checkAccounting(t, s)
}

func TestPanickingErrorHandlerDoesNotKillPool(t *testing.T) {
	m := newManager[int](t, eventbus.WithErrorHandler(func(error) { panic("handler bug") }))
	var ok atomic.Int32
	_, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
		if e.Data == 0 {
			return errors.New("fail")
		}
		ok.Add(1)
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 0))
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, int32(1), ok.Load())
}

func TestTryEmitReportsQueueFull(t *testing.T) {
	m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithQueueSize(4))
	g := newGate()
	_, err := m.RegisterListener("e", g.handler)
	require.NoError(t, err)
	require.NoError(t, m.TryEmit("e", 0))
	g.waitEntered(t, 1)
	for i := range 4 {
		require.NoError(t, m.TryEmit("e", i+1), "room for the queue size")
	}
	err = m.TryEmit("e", 5)
	assert.ErrorIs(t, err, eventbus.ErrQueueFull)
	assert.Contains(t, err.Error(), `"e"`)
	g.open()
	require.NoError(t, m.Flush(context.Background()))
	s := m.Stats()
	assert.Equal(t, uint64(1), s.Rejected)
	assert.Equal(t, uint64(5), s.Delivered)
	checkAccounting(t, s)
}

func TestEmitWaitsForRoomUntilContextEnds(t *testing.T) {
	m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithQueueSize(1))
	g := newGate()
	_, err := m.RegisterListener("e", g.handler)
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 0))
	g.waitEntered(t, 1)
	require.NoError(t, m.Emit(context.Background(), "e", 1)) // fills the queue

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = m.Emit(ctx, "e", 2)
	assert.ErrorIs(t, err, eventbus.ErrQueueFull)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	// An Emit waiting for room gets in once room frees up.
	done := make(chan error, 1)
	go func() { done <- m.Emit(context.Background(), "e", 3) }()
	g.open()
	require.NoError(t, <-done)
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, uint64(3), m.Stats().Delivered)
}

func TestListenerMayEmitRegisterUnregisterWhenPoolIsFull(t *testing.T) {
	// Every worker is busy in a listener that emits (async and sync),
	// registers and unregisters while the queue is full: nothing deadlocks.
	const workers = 2
	m := newManager[int](t, eventbus.WithWorkers(workers), eventbus.WithQueueSize(2))
	var leaves atomic.Int32
	_, err := m.RegisterListener("leaf", func(context.Context, eventbus.Event[int]) error {
		leaves.Add(1)
		return nil
	})
	require.NoError(t, err)
	start := make(chan struct{})
	entered := make(chan struct{}, workers)
	_, err = m.RegisterListener("fan", func(ctx context.Context, e eventbus.Event[int]) error {
		if e.Data < workers {
			entered <- struct{}{}
			<-start // hold every worker until the queue is full
		}
		if err := m.Emit(ctx, "leaf", 0); err != nil {
			return err
		}
		if err := m.EmitSync(ctx, "leaf", 0); err != nil {
			return err
		}
		l, err := m.RegisterListener("tmp", func(context.Context, eventbus.Event[int]) error { return nil })
		if err != nil {
			return err
		}
		l.Unregister()
		return nil
	})
	require.NoError(t, err)
	for i := range workers {
		// One at a time: a worker takes everything queued as one batch.
		require.NoError(t, m.Emit(context.Background(), "fan", i))
		<-entered
	}
	for i := range 2 {
		require.NoError(t, m.TryEmit("fan", workers+i), "fill the queue")
	}
	require.ErrorIs(t, m.TryEmit("fan", 99), eventbus.ErrQueueFull)
	close(start)
	require.NoError(t, m.Flush(context.Background()))
	require.NoError(t, m.Flush(context.Background())) // the leaves emitted meanwhile
	assert.Equal(t, int32(4*2), leaves.Load(), "each of 4 fan events made 1 async + 1 sync leaf")
	s := m.Stats()
	assert.Zero(t, s.Failed)
	checkAccounting(t, s)
}

func TestFloodKeepsMemoryBoundedAndLosesNothing(t *testing.T) {
	const (
		queue   = 128
		workers = 2
		events  = 20000
		payload = 4 << 10
	)
	m := newManager[[]byte](t, eventbus.WithWorkers(workers), eventbus.WithQueueSize(queue))
	var handled atomic.Int64
	var maxQueued atomic.Int64
	_, err := m.RegisterListener("flood", func(context.Context, eventbus.Event[[]byte]) error {
		if q := int64(m.Stats().Queued); q > maxQueued.Load() {
			maxQueued.Store(q)
		}
		runtime.Gosched() // slower than the emitter
		handled.Add(1)
		return nil
	})
	require.NoError(t, err)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peakHeap uint64
	for i := range events {
		require.NoError(t, m.Emit(context.Background(), "flood", make([]byte, payload)))
		if i%1000 == 0 {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peakHeap = max(peakHeap, ms.HeapInuse)
			assert.LessOrEqual(t, runtime.NumGoroutine(), workers+10, "goroutines stay bounded")
		}
	}
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, int64(events), handled.Load(), "every accepted event is delivered")
	assert.LessOrEqual(t, maxQueued.Load(), int64(queue), "the queue never exceeds its bound")
	// Unbounded buffering would hold events×payload = 80 MB; the bound holds
	// queue + workers×batch payloads (about 1 MB) plus garbage not yet
	// collected.
	grown := int64(peakHeap) - int64(before.HeapInuse)
	assert.Less(t, grown, int64(32<<20), "heap grew by %d bytes", grown)
	checkAccounting(t, m.Stats())
}

func TestCloseWhileEmittingLosesNothing(t *testing.T) {
	m := eventbus.New[int](eventbus.WithWorkers(2), eventbus.WithQueueSize(16))
	var handled atomic.Int64
	_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
		handled.Add(1)
		return nil
	})
	require.NoError(t, err)
	var accepted, closed atomic.Int64
	var wg sync.WaitGroup
	started := make(chan struct{}, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started <- struct{}{}
			for i := 0; ; i++ {
				var err error
				if g%2 == 0 {
					err = m.Emit(context.Background(), "e", i)
				} else {
					err = m.TryEmit("e", i)
				}
				switch {
				case err == nil:
					accepted.Add(1)
				case errors.Is(err, eventbus.ErrClosed):
					closed.Add(1)
					return
				case errors.Is(err, eventbus.ErrQueueFull):
					runtime.Gosched()
				default:
					t.Errorf("unexpected error: %v", err)
					return
				}
			}
		}()
	}
	for range 4 {
		<-started
	}
	for handled.Load() < 1000 {
		runtime.Gosched()
	}
	require.NoError(t, m.Close(context.Background()))
	wg.Wait()
	assert.Equal(t, int64(4), closed.Load(), "every emitter saw ErrClosed")
	assert.Equal(t, accepted.Load(), handled.Load(), "every accepted event was delivered")
	require.ErrorIs(t, m.Emit(context.Background(), "e", 0), eventbus.ErrClosed)
	require.ErrorIs(t, m.EmitSync(context.Background(), "e", 0), eventbus.ErrClosed)
	_, err = m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { return nil })
	require.ErrorIs(t, err, eventbus.ErrClosed)
	require.NoError(t, m.Close(context.Background()), "Close is idempotent")
	checkAccounting(t, m.Stats())
}

func TestCloseReleasesWaitingEmitter(t *testing.T) {
	m := eventbus.New[int](eventbus.WithWorkers(1), eventbus.WithQueueSize(1))
	g := newGate()
	_, err := m.RegisterListener("e", g.handler)
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 0))
	g.waitEntered(t, 1)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	waiting := make(chan error, 1)
	go func() { waiting <- m.Emit(context.Background(), "e", 2) }()
	closed := make(chan error, 1)
	go func() { closed <- m.Close(context.Background()) }()
	assert.ErrorIs(t, <-waiting, eventbus.ErrClosed, "a waiting Emit is released by Close")
	g.open()
	require.NoError(t, <-closed)
	assert.Equal(t, uint64(2), m.Stats().Delivered, "what was accepted is delivered")
}

func TestCloseTimeoutCancelsListenersAndAbandons(t *testing.T) {
	defer goleak.VerifyNone(t)
	m := eventbus.New[int](eventbus.WithWorkers(1))
	g := newGate()
	var cancelled atomic.Bool
	_, err := m.RegisterListener("e", func(ctx context.Context, _ eventbus.Event[int]) error {
		g.wait(ctx) // returns when Close cancels ctx
		cancelled.Store(ctx.Err() != nil)
		return nil
	})
	require.NoError(t, err)
	for i := range 5 {
		require.NoError(t, m.Emit(context.Background(), "e", i))
	}
	g.waitEntered(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err = m.Close(ctx)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "abandoned")
	require.NoError(t, m.Close(context.Background()), "a second Close waits for the workers")
	assert.True(t, cancelled.Load(), "the running listener's context was cancelled")
	s := m.Stats()
	assert.Equal(t, uint64(1), s.Delivered)
	assert.Equal(t, uint64(4), s.Abandoned)
	checkAccounting(t, s)
}

func TestFlushWaitsForPriorEventsOnly(t *testing.T) {
	m := newManager[int](t, eventbus.WithWorkers(2))
	g := newGate()
	var done atomic.Int32
	_, err := m.RegisterListener("slow", func(ctx context.Context, _ eventbus.Event[int]) error {
		g.wait(ctx)
		done.Add(1)
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "slow", 0))
	g.waitEntered(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, m.Flush(ctx), context.DeadlineExceeded, "the event is still running")
	flushed := make(chan error, 1)
	go func() { flushed <- m.Flush(context.Background()) }()
	g.open()
	require.NoError(t, <-flushed)
	assert.Equal(t, int32(1), done.Load(), "Flush returned after the event was handled")
	require.NoError(t, m.Flush(context.Background()), "nothing pending: returns at once")
}

func TestFlushIsNotStarvedByLaterEmits(t *testing.T) {
	m := newManager[int](t, eventbus.WithWorkers(2), eventbus.WithQueueSize(8))
	_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { return nil })
	require.NoError(t, err)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				_ = m.Emit(context.Background(), "e", 0)
			}
		}
	}()
	for range 50 {
		require.NoError(t, m.Flush(context.Background()))
	}
	close(stop)
	wg.Wait()
}

func TestInvalidInputGetsClearErrors(t *testing.T) {
	m := newManager[int](t)
	h := func(context.Context, eventbus.Event[int]) error { return nil }
	patterns := []struct {
		give    string
		wantErr error
	}{
		{"", eventbus.ErrInvalidPattern},
		{"a..b", eventbus.ErrInvalidPattern},
		{".a", eventbus.ErrInvalidPattern},
		{"a.", eventbus.ErrInvalidPattern},
		{"a.>.b", eventbus.ErrInvalidPattern},
		{"a*", eventbus.ErrInvalidPattern},
		{"a b", eventbus.ErrInvalidPattern},
		{"a.\tb", eventbus.ErrInvalidPattern},
		{"a.b>", eventbus.ErrInvalidPattern},
	}
	for _, tt := range patterns {
		t.Run("pattern "+tt.give, func(t *testing.T) {
			_, err := m.RegisterListener(tt.give, h)
			require.ErrorIs(t, err, tt.wantErr)
			assert.Contains(t, err.Error(), fmt.Sprintf("%q", tt.give), "the message quotes the input")
		})
	}
	names := []string{"", "a..b", "a.*", ">", "a b", "order.>", "x\n"}
	for _, name := range names {
		t.Run("name "+name, func(t *testing.T) {
			require.ErrorIs(t, m.Emit(context.Background(), name, 0), eventbus.ErrInvalidName)
			require.ErrorIs(t, m.EmitSync(context.Background(), name, 0), eventbus.ErrInvalidName)
			err := m.TryEmit(name, 0)
			require.ErrorIs(t, err, eventbus.ErrInvalidName)
			assert.Contains(t, err.Error(), fmt.Sprintf("%q", name))
		})
	}
	_, err := m.RegisterListener("a", nil)
	require.ErrorIs(t, err, eventbus.ErrNilHandler)
	_, err = m.RegisterListener("a", h, eventbus.OrderedBy(func(eventbus.Event[string]) string { return "" }))
	require.ErrorIs(t, err, eventbus.ErrInvalidOption, "a key function for another data type")
	assert.Equal(t, uint64(3*len(names)), m.Stats().Rejected)
	assert.Zero(t, m.Stats().Listeners)
}

func TestStressRegisterEmitUnregister(t *testing.T) {
	m := newManager[int](t, eventbus.WithQueueSize(256))
	procs := max(4, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	var delivered atomic.Int64
	for p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				pattern := []string{"s.*", "s.>", "s.x", ">"}[(p+i)%4]
				l, err := m.RegisterListener(pattern, func(context.Context, eventbus.Event[int]) error {
					delivered.Add(1)
					return nil
				}, eventbus.Priority(i%3))
				if !assert.NoError(t, err) {
					return
				}
				assert.NoError(t, m.Emit(context.Background(), "s.x", i))
				assert.NoError(t, m.EmitSync(context.Background(), "s.x", i))
				if err := m.TryEmit("s.y", i); err != nil {
					assert.ErrorIs(t, err, eventbus.ErrQueueFull) // the only allowed failure
				}
				l.Unregister()
			}
		}()
	}
	wg.Wait()
	require.NoError(t, m.Flush(context.Background()))
	s := m.Stats()
	assert.Zero(t, s.Listeners)
	assert.Equal(t, uint64(delivered.Load()), s.Delivered)
	checkAccounting(t, s)
}

func TestNoGoroutineWithoutEmitAndNoneAfterClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	base := runtime.NumGoroutine()
	m := eventbus.New[int](eventbus.WithWorkers(8))
	_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { return nil })
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(context.Background(), "e", 1))
	assert.Equal(t, base, runtime.NumGoroutine(), "EmitSync starts no goroutine")
	for i := range 100 {
		require.NoError(t, m.Emit(context.Background(), "e", i))
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), base+8, "workers are bounded")
	require.NoError(t, m.Close(context.Background()))
}

// Close with a context that is already done returns nil when nothing is
// left to abandon: a bus never used, one closed already (Close is
// idempotent), or one whose work is all done and whose workers are parked
// (they leave at once, running nothing). Close chose at random between
// its pool being done and its context being done when both were: half of
// such calls failed, and a second Close could fail after the first had
// returned nil; with parked workers it always failed.
func TestCloseWithADoneContextAndNothingLeft(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 100 {
		m := eventbus.New[int]()
		require.NoError(t, m.Close(done), "never used (%d)", i)

		m = eventbus.New[int]()
		require.NoError(t, m.Close(context.Background()))
		require.NoError(t, m.Close(done), "closed already (%d)", i)
	}
	for i := range 20 {
		m := eventbus.New[int](eventbus.WithWorkers(2))
		var got atomic.Int64
		_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
			got.Add(1)
			return nil
		})
		require.NoError(t, err)
		for range 100 {
			require.NoError(t, m.Emit(context.Background(), "e", 1))
		}
		require.NoError(t, m.Flush(context.Background()))
		require.NoError(t, m.Close(done), "drained, workers parked (%d)", i)
		assert.Equal(t, int64(100), got.Load())
		assert.Zero(t, m.Stats().Workers, "every worker has left")
		assert.Zero(t, m.Stats().Abandoned)
	}

	// After a Close that gave up: once the pool has finished, a Close with
	// a done context returns nil too (it chose at random, since the pool
	// was aborted).
	m := eventbus.New[int]()
	entered, release := make(chan struct{}), make(chan struct{})
	_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
		close(entered)
		<-release
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	<-entered
	require.ErrorIs(t, m.Close(done), context.Canceled, "gives up on the running handler")
	close(release)
	require.NoError(t, m.Close(context.Background()), "the pool finishes")
	for i := range 100 {
		require.NoError(t, m.Close(done), "finished (%d)", i)
	}
}

func TestCloseWithoutUnregisterLeavesNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	m := eventbus.New[int]()
	for range 3 {
		_, err := m.RegisterListener("a.>", func(context.Context, eventbus.Event[int]) error { return nil })
		require.NoError(t, err)
	}
	for i := range 50 {
		require.NoError(t, m.Emit(context.Background(), "a.b", i))
	}
	require.NoError(t, m.Close(context.Background()))
	assert.Equal(t, uint64(150), m.Stats().Delivered)
}

func TestOrderedByKeepsOrderPastTheIdleKeyBound(t *testing.T) {
	// More keys than a keyed listener keeps idle mailboxes for (1024), so
	// that key mailboxes are dropped, reused for other keys and recreated
	// while events flow: every key's sequence must still arrive in order.
	const keys, seqs = 3000, 6
	m := newManager[[2]int](t, eventbus.WithQueueSize(512))
	var mu sync.Mutex
	next := make([]int, keys)
	var bad atomic.Int32
	_, err := m.RegisterListener("k", func(_ context.Context, e eventbus.Event[[2]int]) error {
		mu.Lock()
		defer mu.Unlock()
		if next[e.Data[0]] != e.Data[1] {
			bad.Add(1)
		}
		next[e.Data[0]] = e.Data[1] + 1
		return nil
	}, eventbus.OrderedBy(func(e eventbus.Event[[2]int]) string { return strconv.Itoa(e.Data[0]) }))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 2 { // emitter g owns the keys k with k%2 == g
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range seqs {
				for k := g; k < keys; k += 2 {
					assert.NoError(t, m.Emit(context.Background(), "k", [2]int{k, seq}))
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, m.Flush(context.Background()))
	assert.Zero(t, bad.Load(), "out-of-order deliveries")
	for k, n := range next {
		require.Equal(t, seqs, n, "key %d", k)
	}
	checkAccounting(t, m.Stats())
}

func TestPlainListenerRunsInParallelOnIdleWorkers(t *testing.T) {
	// Four slow events for one plain listener and four workers: all four
	// must be running at once, not queued behind each other on one worker.
	m := newManager[int](t, eventbus.WithWorkers(4))
	g := newGate()
	_, err := m.RegisterListener("slow", g.handler)
	require.NoError(t, err)
	for i := range 4 {
		require.NoError(t, m.Emit(context.Background(), "slow", i))
	}
	g.waitEntered(t, 4)
	assert.Equal(t, 4, m.Stats().Running)
	g.open()
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, uint64(4), m.Stats().Delivered)
}

func TestUnregisterStopsTheRetriesOfAOnceListener(t *testing.T) {
	m := newManager[int](t)
	var calls atomic.Int32
	var l *eventbus.Listener
	registered := make(chan struct{})
	l, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
		<-registered
		calls.Add(1)
		l.Unregister() // from inside its own handler, before the retry is due
		return errors.New("fail")
	}, eventbus.Once(), eventbus.Retry(3, time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	close(registered)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, int32(1), calls.Load(), "no retry after Unregister")
	s := m.Stats()
	assert.Equal(t, uint64(1), s.Skipped, "the retry is skipped: %+v", s)
	checkAccounting(t, s)
}

func TestConcurrencyListenerIsNotPausedByARetry(t *testing.T) {
	// Concurrency promises no order, so a delivery waiting out a (long)
	// backoff must not hold back the others; both backoffs are pending.
	m := newManager[int](t)
	delivered := make(chan int, 8)
	l, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
		if e.Data < 2 {
			return errors.New("fail") // events 0 and 1 back off for an hour
		}
		delivered <- e.Data
		return nil
	}, eventbus.Concurrency(2), eventbus.Retry(1, time.Hour, time.Hour))
	require.NoError(t, err)
	for i := range 5 {
		require.NoError(t, m.Emit(context.Background(), "e", i))
	}
	for range 3 {
		select {
		case <-delivered:
		case <-time.After(20 * time.Second):
			t.Fatal("deliveries held back by a retry backoff")
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for l.Stats().Pending != 2 && time.Now().Before(deadline) {
		runtime.Gosched() // the second failure's backoff is being scheduled
	}
	assert.Equal(t, 2, l.Stats().Pending, "both backoffs pending")
	assert.Equal(t, 2, m.Stats().Queued)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, m.Close(ctx), context.Canceled)
	s := m.Stats()
	assert.Equal(t, uint64(2), s.Abandoned, "%+v", s)
	checkAccounting(t, s)
}

func TestIdleWorkerStealsWhatABlockedWorkerTook(t *testing.T) {
	// Both workers are held while work queues up, so that each takes a
	// batch of several units when released. One unit then blocks; every
	// other unit, including those in the blocked worker's batch, must still
	// run, on the other worker.
	for _, mode := range []string{"plain", "keyed"} {
		t.Run(mode, func(t *testing.T) {
			m := newManager[int](t, eventbus.WithWorkers(2))
			hold := newGate()
			_, err := m.RegisterListener("hold", hold.handler)
			require.NoError(t, err)
			block := newGate()
			ran := make(chan int, 16)
			var opts []eventbus.ListenerOption
			if mode == "keyed" {
				opts = append(opts, eventbus.OrderedBy(func(e eventbus.Event[int]) string { return strconv.Itoa(e.Data) }))
			}
			_, err = m.RegisterListener("work", func(ctx context.Context, e eventbus.Event[int]) error {
				if e.Data == 0 {
					block.wait(ctx)
				}
				ran <- e.Data
				return nil
			}, opts...)
			require.NoError(t, err)
			require.NoError(t, m.Emit(context.Background(), "hold", 0))
			require.NoError(t, m.Emit(context.Background(), "hold", 1))
			hold.waitEntered(t, 2)
			const units = 8
			for i := range units {
				require.NoError(t, m.Emit(context.Background(), "work", i))
			}
			hold.open()
			block.waitEntered(t, 1)
			got := map[int]bool{}
			for range units - 1 {
				select {
				case v := <-ran:
					got[v] = true
				case <-time.After(20 * time.Second):
					t.Fatalf("units stuck behind the blocked one; ran %v", got)
				}
			}
			assert.Len(t, got, units-1)
			assert.NotContains(t, got, 0)
			block.open()
			require.NoError(t, m.Flush(context.Background()))
			checkAccounting(t, m.Stats())
		})
	}
}

func TestGoexitInAListenerLosesNothing(t *testing.T) {
	// t.FailNow in a listener calls runtime.Goexit, which ends the worker's
	// goroutine. The delivery is reported as failed, and everything else —
	// the event's other listeners, the rest of the worker's batch, an
	// ordered listener's backlog — is still delivered, in order.
	for _, mode := range []string{"plain", "ordered"} {
		t.Run(mode, func(t *testing.T) {
			var sink errorSink
			m := newManager[int](t, eventbus.WithWorkers(2), eventbus.WithErrorHandler(sink.handle))
			var opts []eventbus.ListenerOption
			if mode == "ordered" {
				opts = append(opts, eventbus.Ordered())
			}
			var mu sync.Mutex
			var got []int
			_, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
				if e.Data%10 == 3 {
					runtime.Goexit()
				}
				mu.Lock()
				got = append(got, e.Data)
				mu.Unlock()
				return nil
			}, opts...)
			require.NoError(t, err)
			var other atomic.Int32
			_, err = m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
				other.Add(1)
				return nil
			}, eventbus.Priority(-1)) // runs after the first on plain deliveries
			require.NoError(t, err)
			const events = 200
			for i := range events {
				require.NoError(t, m.Emit(context.Background(), "e", i))
			}
			require.NoError(t, m.Flush(context.Background()))
			assert.Equal(t, int32(events), other.Load(), "the other listener got every event")
			mu.Lock()
			assert.Len(t, got, events-events/10)
			if mode == "ordered" {
				assert.True(t, slices.IsSorted(got), "in order")
			}
			mu.Unlock()
			errs := sink.all()
			require.Len(t, errs, events/10)
			assert.ErrorContains(t, errs[0], "runtime.Goexit")
			s := m.Stats()
			assert.Equal(t, uint64(events/10), s.Failed)
			checkAccounting(t, s)
		})
	}
}

func TestGoexitEdgeCases(t *testing.T) {
	boom := errors.New("boom")
	t.Run("a retry requested earlier in the same delivery still runs", func(t *testing.T) {
		m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithErrorHandler(func(error) {}))
		var calls atomic.Int32
		_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
			if calls.Add(1) == 1 {
				return boom
			}
			return nil
		}, eventbus.Priority(1), eventbus.Retry(1, time.Millisecond, time.Millisecond))
		require.NoError(t, err)
		_, err = m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
			runtime.Goexit()
			return nil
		})
		require.NoError(t, err)
		require.NoError(t, m.Emit(context.Background(), "e", 1))
		require.NoError(t, m.Flush(context.Background()))
		assert.Equal(t, int32(2), calls.Load(), "the first listener's retry ran")
		checkAccounting(t, m.Stats())
	})
	t.Run("Close waits for a retry when no worker is left", func(t *testing.T) {
		m := eventbus.New[int](eventbus.WithWorkers(1), eventbus.WithErrorHandler(func(error) {}))
		var calls atomic.Int32
		failed := make(chan struct{})
		_, err := m.RegisterListener("r", func(context.Context, eventbus.Event[int]) error {
			if calls.Add(1) == 1 {
				close(failed)
				return boom
			}
			return nil
		}, eventbus.Retry(1, 20*time.Millisecond, 20*time.Millisecond))
		require.NoError(t, err)
		_, err = m.RegisterListener("x", func(context.Context, eventbus.Event[int]) error {
			runtime.Goexit() // the only worker's goroutine ends
			return nil
		})
		require.NoError(t, err)
		require.NoError(t, m.Emit(context.Background(), "r", 1))
		<-failed
		require.NoError(t, m.Emit(context.Background(), "x", 1))
		require.NoError(t, m.Close(context.Background()))
		assert.Equal(t, int32(2), calls.Load(), "Close returned after the retry")
		s := m.Stats()
		assert.Zero(t, s.Queued)
		checkAccounting(t, s)
	})
	t.Run("an error handler that calls Goexit once", func(t *testing.T) {
		var once atomic.Bool
		m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithErrorHandler(func(error) {
			if !once.Swap(true) {
				runtime.Goexit()
			}
		}))
		_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { return boom })
		require.NoError(t, err)
		require.NoError(t, m.Emit(context.Background(), "e", 1))
		require.NoError(t, m.Flush(context.Background()))
		s := m.Stats()
		assert.Equal(t, uint64(1), s.Failed, "counted once: %+v", s)
		checkAccounting(t, s)
	})
	t.Run("an error handler that always calls Goexit", func(t *testing.T) {
		m := eventbus.New[int](eventbus.WithWorkers(1), eventbus.WithErrorHandler(func(error) { runtime.Goexit() }))
		_, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
			if e.Data == 0 {
				runtime.Goexit()
			}
			return boom
		})
		require.NoError(t, err)
		for i := range 3 {
			require.NoError(t, m.Emit(context.Background(), "e", i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, m.Flush(ctx))
		require.NoError(t, m.Close(ctx))
		s := m.Stats()
		assert.Equal(t, uint64(3), s.Failed, "%+v", s)
		checkAccounting(t, s)
	})
}

// goexitObserver records what an Observer is told of each attempt.
type goexitObserver struct {
	mu     sync.Mutex
	starts []bool // Final, per Start
	dones  []eventbus.Outcome
	lost   int
}

func (o *goexitObserver) Emit(ctx context.Context, _ string) (context.Context, func(error)) {
	return ctx, func(error) {}
}

func (o *goexitObserver) Start(ctx context.Context, d eventbus.Delivery) (context.Context, func(eventbus.Outcome, error)) {
	o.mu.Lock()
	o.starts = append(o.starts, d.Final)
	o.mu.Unlock()
	return ctx, func(oc eventbus.Outcome, _ error) {
		o.mu.Lock()
		o.dones = append(o.dones, oc)
		o.mu.Unlock()
	}
}

func (o *goexitObserver) Lost(context.Context, eventbus.Delivery, eventbus.Outcome) {
	o.mu.Lock()
	o.lost++
	o.mu.Unlock()
}

// Under Retry, an attempt whose handler calls runtime.Goexit is a failed
// attempt like any other: it is retried, and the Observer, told that the
// attempt was not final, sees the next one start; only a final attempt's
// Goexit reaches the error handler, with every attempt counted.
func TestGoexitUnderRetryIsRetried(t *testing.T) {
	for _, tc := range []struct {
		name      string
		exits     int32 // attempts that call Goexit, then it returns nil
		retries   int
		starts    []bool
		dones     []eventbus.Outcome
		delivered uint64
		failed    uint64
	}{
		{"then delivered", 1, 3, []bool{false, false}, []eventbus.Outcome{eventbus.OutcomeFailed, eventbus.OutcomeDelivered}, 1, 0},
		{"every attempt", 3, 2, []bool{false, false, true}, []eventbus.Outcome{eventbus.OutcomeFailed, eventbus.OutcomeFailed, eventbus.OutcomeFailed}, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &goexitObserver{}
			var reported []*eventbus.ListenerError
			var mu sync.Mutex
			m := newManager[int](t, eventbus.WithObserver(obs), eventbus.WithErrorHandler(func(_ context.Context, lerr *eventbus.ListenerError) {
				mu.Lock()
				reported = append(reported, lerr)
				mu.Unlock()
			}))
			var calls atomic.Int32
			l, err := m.RegisterListener("g", func(context.Context, eventbus.Event[int]) error {
				if calls.Add(1) <= tc.exits {
					runtime.Goexit()
				}
				return nil
			}, eventbus.Retry(tc.retries, 0, 0))
			require.NoError(t, err)
			require.NoError(t, m.Emit(context.Background(), "g", 0))
			require.NoError(t, m.Flush(context.Background()))
			assert.Equal(t, int32(len(tc.starts)), calls.Load(), "attempts")
			obs.mu.Lock()
			assert.Equal(t, tc.starts, obs.starts, "Delivery.Final of each attempt")
			assert.Equal(t, tc.dones, obs.dones)
			assert.Zero(t, obs.lost)
			obs.mu.Unlock()
			s := m.Stats()
			assert.Equal(t, tc.delivered, s.Delivered)
			assert.Equal(t, tc.failed, s.Failed)
			assert.Equal(t, uint64(len(tc.starts)-1), s.Retried)
			assert.Equal(t, uint64(len(tc.starts)-1), l.Stats().Retried)
			checkAccounting(t, s)
			mu.Lock()
			defer mu.Unlock()
			if tc.failed == 0 {
				assert.Empty(t, reported)
				return
			}
			require.Len(t, reported, 1)
			assert.ErrorContains(t, reported[0], "runtime.Goexit")
			assert.Equal(t, len(tc.starts), reported[0].Attempts)
		})
	}
}

// lostObserver counts what its Lost is told, and runs onLost (if set) in it.
type lostObserver struct {
	goexitObserver
	abandoned atomic.Int32
	onLost    func()
}

func (o *lostObserver) Lost(_ context.Context, _ eventbus.Delivery, oc eventbus.Outcome) {
	if oc == eventbus.OutcomeAbandoned {
		o.abandoned.Add(1)
	}
	if o.onLost != nil {
		o.onLost()
	}
}

// Close gives up while a worker holds a batch of 10 deliveries of an
// Ordered listener, the first one running; then that handler (or, in the
// second case, the Observer's Lost for the rest) calls runtime.Goexit. The
// nine not started are abandoned (and, but for the Lost that ends its
// goroutine, each is told to the Observer's Lost); the worker leaves the
// pool, so a second Close returns. In the third case the worker has been
// declared stalled (another listener's event ran on a replacement) when its
// goroutine ends: it gives its stalled count back as it leaves.
func TestGoexitAfterCloseGaveUpTellsLostAndLeaves(t *testing.T) {
	const stalledCase = "observer's Lost on a stalled worker"
	for _, where := range []string{"handler", "observer's Lost", stalledCase} {
		t.Run(where, func(t *testing.T) {
			obs := &lostObserver{}
			if where != "handler" {
				obs.onLost = runtime.Goexit
			}
			m := eventbus.New[int](eventbus.WithWorkers(1), eventbus.WithObserver(obs), eventbus.WithErrorHandler(func(error) {}))
			plugged, unplug := make(chan struct{}), make(chan struct{})
			_, err := m.RegisterListener("plug", func(context.Context, eventbus.Event[int]) error {
				close(plugged)
				<-unplug
				return nil
			})
			require.NoError(t, err)
			entered, release := make(chan struct{}), make(chan struct{})
			_, err = m.RegisterListener("o", func(_ context.Context, e eventbus.Event[int]) error {
				if e.Data == 0 {
					close(entered)
					<-release
					if where == "handler" {
						runtime.Goexit()
					}
				}
				return nil
			}, eventbus.Ordered())
			require.NoError(t, err)
			require.NoError(t, m.Emit(context.Background(), "plug", 0))
			<-plugged // the one worker is busy: the ten queue, and go to it as one batch
			for i := range 10 {
				require.NoError(t, m.Emit(context.Background(), "o", i))
			}
			close(unplug)
			<-entered
			if where == stalledCase {
				ran := make(chan struct{})
				_, err = m.RegisterListener("other", func(context.Context, eventbus.Event[int]) error {
					close(ran)
					return nil
				})
				require.NoError(t, err)
				require.NoError(t, m.Emit(context.Background(), "other", 0))
				<-ran // on a replacement: the one worker, held by the batch, was declared stalled
				require.Equal(t, 1, m.Stats().Stalled)
			}
			gaveUp, cancel := context.WithCancel(context.Background())
			cancel()
			require.ErrorIs(t, m.Close(gaveUp), context.Canceled)
			close(release)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			require.NoError(t, m.Close(ctx), "the worker left the pool")
			s := m.Stats()
			assert.Zero(t, s.Workers)
			assert.Zero(t, s.Stalled, "no worker left, none stalled")
			assert.Equal(t, uint64(9), s.Abandoned)
			if where == "handler" {
				assert.Equal(t, int32(9), obs.abandoned.Load(), "each abandoned delivery told to Lost")
			} else { // the first Lost ends the goroutine that tells them
				assert.Positive(t, obs.abandoned.Load())
			}
			checkAccounting(t, s)
		})
	}
}
