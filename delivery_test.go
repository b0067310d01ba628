package eventbus_test

import (
	"context"
	"errors"
	"runtime"
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

type step struct{ Key, Seq int }

// recordMax records n in max if it is larger than what max holds.
func recordMax(max *atomic.Int32, n int32) {
	for {
		old := max.Load()
		if n <= old || max.CompareAndSwap(old, n) {
			return
		}
	}
}

func TestOrderedByKeepsPerKeyOrderAtScaleAndRunsKeysConcurrently(t *testing.T) {
	const keys, perKey, emitters = 1000, 100, 4
	names := make([]string, keys)
	for k := range names {
		names[k] = strconv.Itoa(k)
	}
	m := newManager[step](t, eventbus.WithWorkers(4), eventbus.WithQueueSize(1024))
	last := make([]atomic.Int32, keys) // the last Seq seen per key
	busy := make([]atomic.Int32, keys) // invocations of a key running now
	var total, outOfOrder, keyOverlap atomic.Int32
	var inFlight, maxInFlight atomic.Int32
	// Key 0's first invocation waits until an invocation of another key
	// starts while it is running, so the overlap is observed, not hoped for.
	overlapped := make(chan struct{})
	var overlapOnce sync.Once
	_, err := m.RegisterListener("step", func(_ context.Context, e eventbus.Event[step]) error {
		k := e.Data.Key
		if busy[k].Add(1) != 1 {
			keyOverlap.Add(1)
		}
		n := inFlight.Add(1)
		recordMax(&maxInFlight, n)
		if n > 1 {
			overlapOnce.Do(func() { close(overlapped) })
		}
		if k == 0 && e.Data.Seq == 1 {
			select {
			case <-overlapped:
			case <-time.After(20 * time.Second):
				t.Error("no other key started while key 0 was running")
			}
		}
		if last[k].Load() != int32(e.Data.Seq-1) {
			outOfOrder.Add(1)
		}
		last[k].Store(int32(e.Data.Seq))
		total.Add(1)
		inFlight.Add(-1)
		busy[k].Add(-1)
		return nil
	}, eventbus.OrderedBy(func(e eventbus.Event[step]) string { return names[e.Data.Key] }))
	require.NoError(t, err)

	var wg sync.WaitGroup
	for g := range emitters { // each emitter owns the keys k ≡ g (mod emitters)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 1; seq <= perKey; seq++ {
				for k := g; k < keys; k += emitters {
					if err := m.Emit(context.Background(), "step", step{Key: k, Seq: seq}); err != nil {
						t.Errorf("emit key %d seq %d: %v", k, seq, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, m.Flush(context.Background()))

	assert.Equal(t, int32(keys*perKey), total.Load(), "every event delivered once")
	assert.Zero(t, outOfOrder.Load(), "every key's sequence arrives in order")
	assert.Zero(t, keyOverlap.Load(), "one invocation at a time per key")
	for k := range keys {
		if !assert.Equal(t, int32(perKey), last[k].Load(), "key %d complete", k) {
			break
		}
	}
	assert.Greater(t, maxInFlight.Load(), int32(1), "different keys ran concurrently")
	s := m.Stats()
	assert.Equal(t, uint64(keys*perKey), s.Delivered)
	checkAccounting(t, s)
}

func TestOrderedBacklogIsBoundedAndHoldsNoWorker(t *testing.T) {
	const queueSize, fastEvents = 16, 100
	m := newManager[int](t, eventbus.WithWorkers(2), eventbus.WithQueueSize(queueSize))
	slow := newGate()
	var mu sync.Mutex
	var got []int
	var running, maxRunning atomic.Int32
	l, err := m.RegisterListener("slow", func(ctx context.Context, e eventbus.Event[int]) error {
		recordMax(&maxRunning, running.Add(1))
		slow.wait(ctx)
		mu.Lock()
		got = append(got, e.Data)
		mu.Unlock()
		running.Add(-1)
		return nil
	}, eventbus.Ordered())
	require.NoError(t, err)
	fast := newGate()
	fast.open() // it only counts deliveries
	_, err = m.RegisterListener("fast", fast.handler)
	require.NoError(t, err)

	accepted := 0
	trySlow := func() error {
		err := m.TryEmit("slow", accepted)
		if err == nil {
			accepted++
		}
		return err
	}
	require.NoError(t, trySlow())
	slow.waitEntered(t, 1) // one worker is now blocked in the ordered listener
	for range queueSize / 2 {
		require.NoError(t, trySlow())
	}
	assert.Equal(t, queueSize/2, l.Stats().Pending, "the backlog waits in the mailbox, not in a worker's hands")

	// The other worker keeps delivering other events, more of them than the
	// queue holds, while the ordered listener is blocked.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range fastEvents {
		require.NoError(t, m.Emit(ctx, "fast", i), "other events flow while the ordered listener is blocked")
	}
	fast.waitEntered(t, fastEvents)
	assert.Empty(t, slow.entered, "the blocked ordered listener started no other invocation")
	assert.Equal(t, int32(1), running.Load(), "the ordered listener uses one worker")

	// Fill the queue: it holds exactly queueSize deliveries behind the one
	// running, then TryEmit and a timed-out Emit are refused.
	for range 2 * queueSize {
		err := trySlow()
		if err != nil {
			require.ErrorIs(t, err, eventbus.ErrQueueFull)
			break
		}
		require.LessOrEqual(t, l.Stats().Pending, queueSize, "backlog within the bound")
	}
	assert.Equal(t, queueSize+1, accepted, "accepted: one running and the queue size waiting")
	assert.Equal(t, queueSize, l.Stats().Pending)
	assert.ErrorIs(t, trySlow(), eventbus.ErrQueueFull, "still full")
	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	err = m.Emit(short, "slow", accepted)
	assert.ErrorIs(t, err, eventbus.ErrQueueFull)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, queueSize, l.Stats().Pending, "refused emits add nothing")
	assert.Equal(t, queueSize, m.Stats().Queued)

	slow.open()
	require.NoError(t, m.Flush(context.Background()))
	want := make([]int, accepted)
	for i := range want {
		want[i] = i
	}
	assert.Equal(t, want, got, "everything accepted is delivered, in order")
	assert.Equal(t, int32(1), maxRunning.Load(), "one invocation at a time")
	assert.Zero(t, l.Stats().Pending)
	s := m.Stats()
	assert.Equal(t, uint64(accepted+fastEvents), s.Delivered)
	assert.Equal(t, uint64(3), s.Rejected, "two TryEmits and one Emit refused")
	checkAccounting(t, s)
}

func TestConcurrencyLimitIsReachedAndNeverExceeded(t *testing.T) {
	const limit, workers, events = 3, 8, 300
	m := newManager[int](t, eventbus.WithWorkers(workers))
	g := newGate()
	var started, inFlight, maxInFlight atomic.Int32
	l, err := m.RegisterListener("e", func(ctx context.Context, _ eventbus.Event[int]) error {
		recordMax(&maxInFlight, inFlight.Add(1))
		if started.Add(1) <= limit {
			g.wait(ctx) // the first ones hold their slots until released
		} else {
			runtime.Gosched() // give other invocations a chance to overlap
		}
		inFlight.Add(-1)
		return nil
	}, eventbus.Concurrency(limit))
	require.NoError(t, err)
	for i := range events {
		require.NoError(t, m.Emit(context.Background(), "e", i))
	}
	g.waitEntered(t, limit)
	s := m.Stats()
	assert.Equal(t, limit, s.Running, "the limit is reached")
	assert.Equal(t, events-limit, s.Queued)
	assert.Equal(t, events-limit, l.Stats().Pending, "the rest wait in the mailbox, holding no worker")
	g.open()
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, int32(limit), maxInFlight.Load(), "at most the limit at once")
	s = m.Stats()
	assert.Equal(t, uint64(events), s.Delivered)
	checkAccounting(t, s)
}

func TestCloseTimeoutAbandonsOrderedAndKeyedBacklog(t *testing.T) {
	defer goleak.VerifyNone(t)
	const backlog = 5
	m := eventbus.New[step](eventbus.WithWorkers(4))
	g := newGate()
	block := func(ctx context.Context, _ eventbus.Event[step]) error {
		g.wait(ctx) // returns when Close gives up and cancels ctx
		return nil
	}
	ordered, err := m.RegisterListener("ordered", block, eventbus.Ordered())
	require.NoError(t, err)
	// Two keys at once: the third waits for the gate, not for a worker.
	keyed, err := m.RegisterListener("keyed", block,
		eventbus.OrderedBy(func(e eventbus.Event[step]) string { return strconv.Itoa(e.Data.Key) }),
		eventbus.Concurrency(2))
	require.NoError(t, err)

	emit := func(name string, key, seq int) {
		t.Helper()
		require.NoError(t, m.Emit(context.Background(), name, step{Key: key, Seq: seq}))
	}
	// One at a time, so that each runs on a worker of its own.
	emit("ordered", 0, 0)
	g.waitEntered(t, 1)
	emit("keyed", 0, 0)
	g.waitEntered(t, 1)
	emit("keyed", 1, 0)
	g.waitEntered(t, 1)
	emit("keyed", 2, 0)
	for seq := 1; seq <= backlog; seq++ {
		emit("ordered", 0, seq)
		for key := range 3 {
			emit("keyed", key, seq)
		}
	}
	require.Equal(t, backlog, ordered.Stats().Pending)
	require.Equal(t, 1+3*backlog, keyed.Stats().Pending)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err = m.Close(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	watchdog, cancelWatchdog := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelWatchdog()
	require.NoError(t, m.Close(watchdog), "a second Close sees every worker exit")
	assert.Empty(t, g.entered, "no queued delivery started after Close gave up")

	s := m.Stats()
	assert.Equal(t, uint64(3), s.Delivered, "the running invocations finish")
	assert.Equal(t, uint64(backlog+1+3*backlog), s.Abandoned, "the whole backlog is abandoned")
	assert.Zero(t, s.Queued)
	assert.Zero(t, s.Running)
	assert.Zero(t, ordered.Stats().Pending)
	assert.Zero(t, keyed.Stats().Pending)
	checkAccounting(t, s)
}

func TestOrderedDeliversOneAtATimeInOrder(t *testing.T) {
	m := newManager[int](t, eventbus.WithWorkers(4))
	var got []int
	var running atomic.Int32
	_, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
		if running.Add(1) != 1 {
			t.Error("two invocations at once")
		}
		got = append(got, e.Data)
		running.Add(-1)
		return nil
	}, eventbus.Ordered())
	require.NoError(t, err)
	var others atomic.Int32
	_, err = m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { others.Add(1); return nil })
	require.NoError(t, err)
	for i := range 2000 {
		require.NoError(t, m.Emit(context.Background(), "e", i))
	}
	require.NoError(t, m.Flush(context.Background()))
	require.Len(t, got, 2000)
	for i, v := range got {
		require.Equal(t, i, v, "order kept")
	}
	assert.Equal(t, int32(2000), others.Load())
}

func TestRetryCountsAttemptsExactly(t *testing.T) {
	sink := &errorSink{}
	m := newManager[int](t, eventbus.WithErrorHandler(sink.handle))
	var calls atomic.Int32
	errFlaky := errors.New("flaky")
	l, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
		calls.Add(1)
		return errFlaky // always fails
	}, eventbus.Retry(3, time.Millisecond, 4*time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, int32(4), calls.Load(), "1 attempt + 3 retries")
	errs := sink.all()
	require.Len(t, errs, 1, "only the final failure is reported")
	var le *eventbus.ListenerError
	require.ErrorAs(t, errs[0], &le)
	assert.Equal(t, 4, le.Attempts)
	assert.ErrorIs(t, errs[0], errFlaky)
	assert.Equal(t, uint64(3), l.Stats().Retried)
	checkAccounting(t, m.Stats())
}

func TestTimeoutReportsDeadlineExceeded(t *testing.T) {
	sink := &errorSink{}
	m := newManager[int](t, eventbus.WithErrorHandler(sink.handle))
	_, err := m.RegisterListener("e", func(ctx context.Context, _ eventbus.Event[int]) error {
		<-ctx.Done()
		return nil
	}, eventbus.Timeout(5*time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	require.NoError(t, m.Flush(context.Background()))
	errs := sink.all()
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], context.DeadlineExceeded)
}

func TestMiddlewareWrapsHandlers(t *testing.T) {
	var trace []string
	mw := func(name string) eventbus.Middleware[int] {
		return func(next eventbus.Handler[int]) eventbus.Handler[int] {
			return func(ctx context.Context, e eventbus.Event[int]) error {
				trace = append(trace, name)
				return next(ctx, e)
			}
		}
	}
	m := newManager[int](t, eventbus.WithMiddleware(mw("manager")))
	_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
		trace = append(trace, "handler")
		return nil
	}, eventbus.Use(mw("listener")))
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(context.Background(), "e", 0))
	assert.Equal(t, []string{"manager", "listener", "handler"}, trace)
}

func TestRetryForeverAtOnceUntilItSucceeds(t *testing.T) {
	m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithErrorHandler(func(error) {}))
	var mu sync.Mutex
	var got []int
	attempts := map[int]int{}
	l, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[e.Data]++
		if attempts[e.Data] < 50 { // "nack" 49 times, then "ack"
			return errors.New("nack")
		}
		got = append(got, e.Data)
		return nil
	}, eventbus.Ordered(), eventbus.Retry(eventbus.RetryForever, 0, 0))
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, m.Emit(context.Background(), "e", i))
	}
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, []int{0, 1, 2}, got, "in order, each after its own retries")
	assert.Equal(t, uint64(3*49), l.Stats().Retried)
	assert.Zero(t, l.Stats().Failed)
	checkAccounting(t, m.Stats())

	_, err = m.RegisterListener("bad", func(context.Context, eventbus.Event[int]) error { return nil }, eventbus.Retry(-2, 0, 0))
	assert.ErrorIs(t, err, eventbus.ErrInvalidOption)
	_, err = m.RegisterListener("bad", func(context.Context, eventbus.Event[int]) error { return nil }, eventbus.Retry(1, 0, time.Second))
	assert.ErrorIs(t, err, eventbus.ErrInvalidOption)
}

func TestRetryAtOnceKeepsOrderWithinABatch(t *testing.T) {
	// The worker is held while three events queue up, so that it takes
	// them as one batch; the first fails three times and is retried at
	// once, ahead of the other two.
	m := newManager[string](t, eventbus.WithWorkers(1), eventbus.WithStallAfter(time.Hour), eventbus.WithErrorHandler(func(error) {}))
	hold := make(chan struct{})
	entered := make(chan struct{})
	_, err := m.RegisterListener("hold", func(context.Context, eventbus.Event[string]) error {
		close(entered)
		<-hold
		return nil
	})
	require.NoError(t, err)
	var mu sync.Mutex
	var got []string
	fails := 0
	_, err = m.RegisterListener("e", func(_ context.Context, e eventbus.Event[string]) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, e.Data)
		if e.Data == "first" && fails < 3 {
			fails++
			return errors.New("nack")
		}
		return nil
	}, eventbus.Ordered(), eventbus.Retry(eventbus.RetryForever, 0, 0))
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "hold", ""))
	<-entered
	for _, s := range []string{"first", "second", "third"} {
		require.NoError(t, m.Emit(context.Background(), "e", s))
	}
	close(hold)
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, []string{"first", "first", "first", "first", "second", "third"}, got)
}

func TestUnregisterDropsPendingRetries(t *testing.T) {
	// A retry waiting out an hour's backoff: Unregister skips it at once,
	// so Flush and a graceful Close do not wait for the timer.
	m := eventbus.New[int](eventbus.WithErrorHandler(func(error) {}), eventbus.WithInvariantChecks())
	failed := make(chan struct{}, 1)
	l, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
		failed <- struct{}{}
		return errors.New("down")
	}, eventbus.Retry(3, time.Hour, time.Hour))
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	<-failed
	for l.Stats().Pending == 0 { // the failure is accounted and its backoff started
		runtime.Gosched()
	}
	l.Unregister()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, m.Flush(ctx))
	require.NoError(t, m.Close(ctx))
	s := m.Stats()
	assert.Equal(t, uint64(1), s.Skipped, "the pending retry was skipped")
	assert.Equal(t, uint64(1), s.Retried)
	checkAccounting(t, s)
}

// A nil middleware is a bad option, given to WithMiddleware as to Use:
// RegisterListener and Topic.Listen fail with ErrInvalidOption and register
// nothing. (WithMiddleware(nil) made them panic on a nil func call.)
func TestNilMiddlewareIsAnInvalidOption(t *testing.T) {
	noop := func(context.Context, eventbus.Event[any]) error { return nil }
	m := newManager[any](t, eventbus.WithMiddleware[any](nil))
	_, err := m.RegisterListener("x", noop)
	assert.ErrorIs(t, err, eventbus.ErrInvalidOption)
	topic, err := eventbus.NewTopic[int](m, "y")
	require.NoError(t, err)
	_, err = topic.Listen(func(context.Context, eventbus.Event[int]) error { return nil })
	assert.ErrorIs(t, err, eventbus.ErrInvalidOption)
	assert.Empty(t, m.Listeners(), "nothing registered")

	m = newManager[any](t)
	_, err = m.RegisterListener("x", noop, eventbus.Use[any](nil))
	assert.ErrorIs(t, err, eventbus.ErrInvalidOption)
}
