package eventbus_test

import (
	"context"
	"errors"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/eventbustest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Listener isolation: each test here fails on the scheduler that ran an
// event's plain listeners one after another on one worker, shared one queue
// bound between every listener, and recognised re-entrant emits by their
// context.

// waitCount waits until n values arrive on ch, failing the test (with what
// arrived) if they do not within a generous limit: a deadlock guard, not a
// timing assertion.
func waitCount(t *testing.T, ch <-chan int, n int, what string) {
	t.Helper()
	limit := time.After(20 * time.Second)
	for i := range n {
		select {
		case <-ch:
		case <-limit:
			t.Fatalf("%s: %d of %d arrived", what, i, n)
		}
	}
}

func TestSiblingListenersOfOneEventAreIndependent(t *testing.T) {
	// An email listener blocks on every event; the inventory listener of the
	// same event handles all of them meanwhile.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m := newManager[int](t, eventbus.WithWorkers(8))
	email, release := eventbustest.Block[int](t)
	_, err := m.RegisterListener("order.created", email.Handle)
	require.NoError(t, err)
	inventory := eventbustest.Record(t, m, "order.created")
	for i := range 200 {
		require.NoError(t, m.Emit(context.Background(), "order.created", i))
	}
	inventory.WaitN(ctx, 200) // while email blocks
	email.WaitEntered(ctx, 8)
	assert.Equal(t, 8, email.Entered(), "email runs at most WithWorkers invocations at once")
	release()
	require.NoError(t, m.Flush(context.Background()))
	s := m.Stats()
	assert.Equal(t, uint64(400), s.Delivered)
	checkAccounting(t, s)
}

func TestBlockedListenersDoNotStarveOthers(t *testing.T) {
	// As many blocking listeners as workers, each holding its worker; other
	// events keep flowing on replacement workers, and goroutines stay
	// within WithMaxWorkers.
	const workers, maxWorkers, blocked = 2, 8, 4
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m := newManager[int](t, eventbus.WithWorkers(workers), eventbus.WithMaxWorkers(maxWorkers))
	acks, release := eventbustest.Block[int](t)
	for i := range blocked {
		name := "ack." + string(rune('a'+i))
		_, err := m.RegisterListener(name, acks.Handle)
		require.NoError(t, err)
		require.NoError(t, m.Emit(context.Background(), name, i))
	}
	other := eventbustest.Record(t, m, "other")
	acks.WaitEntered(ctx, blocked) // every one of them holds a worker
	for i := range 1000 {
		require.NoError(t, m.Emit(context.Background(), "other", i))
	}
	other.WaitN(ctx, 1000) // while the listeners block
	s := m.Stats()
	assert.LessOrEqual(t, s.Workers, maxWorkers, "workers bounded: %+v", s)
	assert.GreaterOrEqual(t, s.Stalled, workers, "the blocked workers count as stalled: %+v", s)
	release()
	require.NoError(t, m.Flush(context.Background()))
	checkAccounting(t, m.Stats())
}

func TestWorkersAreBoundedWhenEveryListenerBlocks(t *testing.T) {
	// More blocking listeners than WithMaxWorkers: the pool never exceeds
	// the bound, and catches up once they are released.
	const maxWorkers, listeners = 6, 20
	m := newManager[int](t, eventbus.WithWorkers(2), eventbus.WithMaxWorkers(maxWorkers))
	g := newGate()
	before := runtime.NumGoroutine()
	for i := range listeners {
		name := "block." + string(rune('a'+i))
		_, err := m.RegisterListener(name, g.handler)
		require.NoError(t, err)
		require.NoError(t, m.Emit(context.Background(), name, i))
	}
	g.waitEntered(t, maxWorkers) // every worker is held
	s := m.Stats()
	assert.Equal(t, maxWorkers, s.Workers, "never more than WithMaxWorkers")
	assert.LessOrEqual(t, runtime.NumGoroutine(), before+maxWorkers+2, "goroutines bounded (workers, plus a timer callback)")
	g.open()
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, uint64(listeners), m.Stats().Delivered)
}

func TestBacklogIsPerListener(t *testing.T) {
	// A stuck listener fills its own backlog; emits to other names are
	// neither delayed nor refused, and only emits that match it push back.
	m := newManager[int](t, eventbus.WithWorkers(2), eventbus.WithQueueSize(4))
	g := newGate()
	stuck, err := m.RegisterListener("stuck", g.handler, eventbus.Ordered())
	require.NoError(t, err)
	free := make(chan int, 100)
	_, err = m.RegisterListener("free", func(_ context.Context, e eventbus.Event[int]) error {
		free <- e.Data
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.TryEmit("stuck", 0))
	g.waitEntered(t, 1)
	for i := range 4 {
		require.NoError(t, m.TryEmit("stuck", i+1), "room for the listener's queue size")
	}
	assert.ErrorIs(t, m.TryEmit("stuck", 5), eventbus.ErrQueueFull)
	assert.Equal(t, 4, stuck.Stats().Pending)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 100 {
		require.NoError(t, m.Emit(ctx, "free", i), "another listener's backlog is its own")
	}
	waitCount(t, free, 100, "free listener")
	g.open()
	require.NoError(t, m.Flush(context.Background()))
	checkAccounting(t, m.Stats())
}

func TestRetriesCountAgainstTheBacklog(t *testing.T) {
	// A listener that keeps failing with long backoffs: its retries hold
	// its backlog, so emits to it are refused once the bound is reached.
	const queue = 8
	m := eventbus.New[int](eventbus.WithWorkers(1), eventbus.WithQueueSize(queue), eventbus.WithErrorHandler(func(error) {}), eventbus.WithInvariantChecks())
	failing, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
		return errors.New("down")
	}, eventbus.Retry(100, time.Hour, time.Hour))
	require.NoError(t, err)
	accepted := 0
	for accepted < 10_000 {
		err := m.TryEmit("e", accepted)
		if err != nil {
			require.ErrorIs(t, err, eventbus.ErrQueueFull)
			break
		}
		accepted++
		require.LessOrEqual(t, failing.Stats().Pending, queue, "retries stay within the bound")
	}
	assert.Less(t, accepted, 10_000, "the backlog filled up with retries")
	assert.LessOrEqual(t, accepted, queue+64, "at most the bound plus one batch in a worker's hands")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.Error(t, m.Close(ctx), "the retries would wait an hour: Close gives up")
	s := m.Stats()
	assert.Equal(t, uint64(accepted), s.Abandoned+s.Failed, "every accepted delivery accounted for: %+v", s)
	checkAccounting(t, s)
}

func TestOverflowPolicies(t *testing.T) {
	type result struct {
		emitErr   error
		delivered []int
		dropped   uint64
		reported  int
	}
	run := func(t *testing.T, p eventbus.Overflow) result {
		sink := &errorSink{}
		m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithErrorHandler(sink.handle))
		g := newGate()
		var mu sync.Mutex
		var got []int
		l, err := m.RegisterListener("e", func(ctx context.Context, e eventbus.Event[int]) error {
			if e.Data == 0 {
				g.wait(ctx)
			}
			mu.Lock()
			got = append(got, e.Data)
			mu.Unlock()
			return nil
		}, eventbus.QueueSize(3), eventbus.OnOverflow(p), eventbus.Ordered())
		require.NoError(t, err)
		require.NoError(t, m.Emit(context.Background(), "e", 0))
		g.waitEntered(t, 1)
		for i := 1; i <= 3; i++ {
			require.NoError(t, m.Emit(context.Background(), "e", i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		var r result
		r.emitErr = m.Emit(ctx, "e", 4) // the backlog is full
		g.open()
		require.NoError(t, m.Flush(context.Background()))
		mu.Lock()
		r.delivered = append([]int(nil), got...)
		mu.Unlock()
		r.dropped = l.Stats().Dropped
		for _, err := range sink.all() {
			assert.ErrorIs(t, err, eventbus.ErrDropped)
			r.reported++
		}
		assert.Equal(t, r.dropped, m.Stats().Dropped)
		checkAccounting(t, m.Stats())
		return r
	}
	t.Run("wait", func(t *testing.T) {
		r := run(t, eventbus.OverflowWait)
		assert.ErrorIs(t, r.emitErr, eventbus.ErrQueueFull)
		assert.ErrorIs(t, r.emitErr, context.DeadlineExceeded, "Emit waited until its context ended")
		assert.Equal(t, []int{0, 1, 2, 3}, r.delivered)
	})
	t.Run("fail", func(t *testing.T) {
		r := run(t, eventbus.OverflowFail)
		assert.ErrorIs(t, r.emitErr, eventbus.ErrQueueFull)
		assert.NotErrorIs(t, r.emitErr, context.DeadlineExceeded, "Emit failed at once")
		assert.Equal(t, []int{0, 1, 2, 3}, r.delivered)
	})
	t.Run("drop newest", func(t *testing.T) {
		r := run(t, eventbus.OverflowDropNewest)
		require.NoError(t, r.emitErr)
		assert.Equal(t, []int{0, 1, 2, 3}, r.delivered)
		assert.Equal(t, uint64(1), r.dropped)
		assert.Equal(t, 1, r.reported)
	})
	t.Run("drop oldest", func(t *testing.T) {
		r := run(t, eventbus.OverflowDropOldest)
		require.NoError(t, r.emitErr)
		assert.Equal(t, []int{0, 2, 3, 4}, r.delivered)
		assert.Equal(t, uint64(1), r.dropped)
		assert.Equal(t, 1, r.reported)
	})
}

func TestEmitFromAHandlerNeverDeadlocksWhateverItsContext(t *testing.T) {
	contexts := map[string]func(ctx context.Context) context.Context{
		"background":      func(context.Context) context.Context { return context.Background() },
		"captured":        func(context.Context) context.Context { return captured },
		"handler context": func(ctx context.Context) context.Context { return ctx },
	}
	for name, pick := range contexts {
		t.Run(name, func(t *testing.T) {
			// One worker, a backlog of 1: a listener that emits to itself
			// fills its own backlog while it holds the only worker.
			m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithQueueSize(1))
			var full, ok atomic.Int32
			_, err := m.RegisterListener("e", func(ctx context.Context, e eventbus.Event[int]) error {
				if e.Data > 0 {
					return nil
				}
				for i := range 5 {
					err := m.Emit(pick(ctx), "e", i+1)
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, eventbus.ErrQueueFull):
						full.Add(1)
					default:
						return err
					}
				}
				return nil
			})
			require.NoError(t, err)
			require.NoError(t, m.Emit(context.Background(), "e", 0))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			require.NoError(t, m.Flush(ctx), "no deadlock")
			assert.Equal(t, int32(2), ok.Load(), "the bound and its reserve")
			assert.Equal(t, int32(3), full.Load(), "then ErrQueueFull at once")
			assert.Zero(t, m.Stats().Failed)
		})
	}
}

var captured = context.WithValue(context.Background(), ctxKey("request"), "captured")

func TestEmitAcrossManagersNeverDeadlocks(t *testing.T) {
	// A listener of A emits into B with A's context; B's listener emits
	// into B with the context it received, which carries A's values.
	a := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithQueueSize(1))
	b := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithQueueSize(1))
	var refused atomic.Int32
	_, err := b.RegisterListener("y", func(ctx context.Context, e eventbus.Event[int]) error {
		for i := range 4 {
			if err := b.Emit(ctx, "y2", i); errors.Is(err, eventbus.ErrQueueFull) {
				refused.Add(1)
			}
		}
		return nil
	})
	require.NoError(t, err)
	release := newGate()
	_, err = b.RegisterListener("y2", release.handler)
	require.NoError(t, err)
	_, err = a.RegisterListener("x", func(ctx context.Context, e eventbus.Event[int]) error {
		return b.Emit(ctx, "y", e.Data)
	})
	require.NoError(t, err)
	require.NoError(t, a.Emit(context.Background(), "x", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, a.Flush(ctx))
	release.waitEntered(t, 1)
	release.open()
	require.NoError(t, b.Flush(ctx), "no deadlock")
	assert.Positive(t, refused.Load(), "B's full backlog refused B's own worker instead of blocking it")
}

func TestFlushAndCloseFromAHandlerDoNotWaitForIt(t *testing.T) {
	m := eventbus.New[int](eventbus.WithInvariantChecks())
	flushed := make(chan error, 1)
	closed := make(chan error, 1)
	followUps := make(chan int, 10)
	_, err := m.RegisterListener("flush", func(ctx context.Context, e eventbus.Event[int]) error {
		flushed <- m.Flush(ctx)
		return nil
	})
	require.NoError(t, err)
	_, err = m.RegisterListener("close", func(ctx context.Context, e eventbus.Event[int]) error {
		closed <- m.Close(ctx)
		return m.Emit(ctx, "after", 1) // a follow-up during the drain
	})
	require.NoError(t, err)
	_, err = m.RegisterListener("after", func(_ context.Context, e eventbus.Event[int]) error {
		followUps <- e.Data
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "flush", 0))
	assert.ErrorIs(t, <-flushed, eventbus.ErrReentrant)
	require.NoError(t, m.Emit(context.Background(), "close", 0))
	assert.ErrorIs(t, <-closed, eventbus.ErrReentrant)
	require.ErrorIs(t, m.Emit(context.Background(), "after", 2), eventbus.ErrClosed, "emits from outside are refused")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, m.Close(ctx), "the drain completes and the workers exit")
	assert.Equal(t, 1, <-followUps, "the follow-up emitted during the drain was delivered")
	assert.Zero(t, m.Stats().Failed)
}

func TestGracefulCloseCompletesTheCascade(t *testing.T) {
	// Handlers still running when Close is called emit follow-ups, with
	// whatever context; every one is accepted and delivered before Close
	// returns, while emits from outside are refused.
	const orders = 100
	m := eventbus.New[int](eventbus.WithWorkers(2), eventbus.WithInvariantChecks())
	hold := newGate()
	var shipped atomic.Int32
	_, err := m.RegisterListener("order.created", func(ctx context.Context, e eventbus.Event[int]) error {
		if e.Data == 0 {
			hold.wait(ctx)
		}
		return m.Emit(context.Background(), "order.paid", e.Data)
	})
	require.NoError(t, err)
	_, err = m.RegisterListener("order.paid", func(ctx context.Context, e eventbus.Event[int]) error {
		return m.Emit(ctx, "order.shipped", e.Data)
	})
	require.NoError(t, err)
	_, err = m.RegisterListener("order.shipped", func(context.Context, eventbus.Event[int]) error {
		shipped.Add(1)
		return nil
	})
	require.NoError(t, err)
	for i := range orders {
		require.NoError(t, m.Emit(context.Background(), "order.created", i))
	}
	hold.waitEntered(t, 1)
	closed := make(chan error, 1)
	go func() { closed <- m.Close(context.Background()) }()
	for !errors.Is(m.TryEmit("outside", 0), eventbus.ErrClosed) {
		runtime.Gosched() // until Close has started
	}
	hold.open()
	require.NoError(t, <-closed)
	assert.Equal(t, int32(orders), shipped.Load(), "every follow-up was delivered")
	s := m.Stats()
	assert.Zero(t, s.Failed, "no follow-up was refused: %+v", s)
	assert.Equal(t, uint64(3*orders), s.Delivered)
	assert.ErrorIs(t, m.Emit(context.Background(), "order.created", 1), eventbus.ErrClosed)
	checkAccounting(t, s)
}

func TestTimeoutIsJudgedByTheClock(t *testing.T) {
	// With one P busy in the handler, the context's timer cannot run before
	// the handler returns; the overrun must be seen all the same.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	m := newManager[int](t)
	_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
		for start := time.Now(); time.Since(start) < 3*time.Millisecond; {
		}
		return nil
	}, eventbus.Timeout(time.Millisecond))
	require.NoError(t, err)
	for range 20 {
		err := m.EmitSync(context.Background(), "e", 0)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
}

func TestErrClosedIsFinal(t *testing.T) {
	for range 500 {
		m := eventbus.New[int]()
		_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { return nil })
		require.NoError(t, err)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if errors.Is(m.EmitSync(context.Background(), "e", 0), eventbus.ErrClosed) {
					assert.ErrorIs(t, m.Emit(context.Background(), "e", 0), eventbus.ErrClosed, "Emit after EmitSync saw ErrClosed")
					assert.ErrorIs(t, m.TryEmit("e", 0), eventbus.ErrClosed)
					return
				}
			}
		}()
		require.NoError(t, m.Close(context.Background()))
		<-done
	}
}

func TestExtremePrioritiesOrderCorrectly(t *testing.T) {
	m := newManager[int](t)
	var got []string
	reg := func(name string, p int) {
		_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
			got = append(got, name)
			return nil
		}, eventbus.Priority(p))
		require.NoError(t, err)
	}
	reg("min", math.MinInt)
	reg("zero", 0)
	reg("max", math.MaxInt)
	reg("min+1", math.MinInt+1)
	require.NoError(t, m.EmitSync(context.Background(), "e", 0))
	assert.Equal(t, []string{"max", "zero", "min+1", "min"}, got)
}

func TestUnregisterAndWaitWaitsForRunningInvocations(t *testing.T) {
	m := newManager[int](t, eventbus.WithWorkers(1))
	g := newGate()
	l, err := m.RegisterListener("e", g.handler)
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 0))
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	g.waitEntered(t, 1)

	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, l.UnregisterAndWait(short), context.DeadlineExceeded, "the invocation is still running")

	done := make(chan error, 1)
	go func() { done <- l.UnregisterAndWait(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("returned while the handler runs: %v", err)
	default:
	}
	g.open()
	require.NoError(t, <-done)
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, uint64(1), l.Stats().Delivered, "the running one finished")
	assert.Equal(t, uint64(1), l.Stats().Skipped, "the queued one was skipped")

	own, err := m.RegisterListener("own", func(ctx context.Context, e eventbus.Event[int]) error {
		return nil
	})
	require.NoError(t, err)
	self := make(chan error, 1)
	var me *eventbus.Listener
	me, err = m.RegisterListener("self", func(ctx context.Context, e eventbus.Event[int]) error {
		self <- me.UnregisterAndWait(ctx)
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "self", 0))
	assert.ErrorIs(t, <-self, eventbus.ErrReentrant, "from its own handler")
	require.NoError(t, own.UnregisterAndWait(context.Background()), "nothing running: at once")
}
