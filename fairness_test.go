package eventbus_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The listener is the unit of fairness and of the worker bound. Each test
// here fails on 0a1e6ca, whose ready list held one entry per OrderedBy key
// and whose batches were bounded only in count.

// A keyed listener holds at most its limit of workers, stalled ones
// included: WithWorkers by default. On 0a1e6ca one keyed listener whose
// handler blocks, with 300 keys in flight, took every worker the watchdog
// started (up to WithMaxWorkers), and an unrelated listener waited.
func TestKeyedListenerHoldsAtMostItsLimitOfWorkers(t *testing.T) {
	const workers, keys = 2, 300
	m := newManager[int](t, eventbus.WithWorkers(workers), eventbus.WithStallAfter(time.Millisecond))
	g := newGate()
	t.Cleanup(g.open) // before Close, should the test fail
	var running, peak atomic.Int32
	_, err := m.RegisterListener("keyed", func(ctx context.Context, e eventbus.Event[int]) error {
		recordMax(&peak, running.Add(1))
		defer running.Add(-1)
		g.wait(ctx)
		return nil
	}, eventbus.OrderedBy(func(e eventbus.Event[int]) string { return strconv.Itoa(e.Data) }))
	require.NoError(t, err)
	other := make(chan int, 10)
	_, err = m.RegisterListener("other", func(_ context.Context, e eventbus.Event[int]) error {
		other <- e.Data
		return nil
	})
	require.NoError(t, err)

	for i := range keys {
		require.NoError(t, m.Emit(context.Background(), "keyed", i))
	}
	g.waitEntered(t, workers)
	// An unrelated listener gets a worker, again and again, while the keyed
	// one stays at its limit (each round gives the watchdog time to act).
	for i := range 5 {
		require.NoError(t, m.Emit(context.Background(), "other", i))
		waitCount(t, other, 1, "unrelated delivery")
	}
	assert.Equal(t, int32(workers), peak.Load(), "keyed invocations at once")
	assert.Empty(t, g.entered, "no keyed invocation beyond the limit started")
	s := m.Stats()
	assert.LessOrEqual(t, s.Workers, 2*workers+1, "workers: %+v", s)
	g.open()
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, uint64(keys+5), m.Stats().Delivered)
	checkAccounting(t, m.Stats())
}

// With Concurrency(n), a keyed listener's limit is n keys at once, stalled
// workers included.
func TestKeyedListenerWithConcurrencyHoldsNWorkers(t *testing.T) {
	const n, keys = 3, 50
	m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithStallAfter(time.Millisecond))
	g := newGate()
	t.Cleanup(g.open) // before Close, should the test fail
	var running, peak atomic.Int32
	_, err := m.RegisterListener("keyed", func(ctx context.Context, e eventbus.Event[int]) error {
		recordMax(&peak, running.Add(1))
		defer running.Add(-1)
		g.wait(ctx)
		return nil
	}, eventbus.OrderedBy(func(e eventbus.Event[int]) string { return strconv.Itoa(e.Data) }), eventbus.Concurrency(n))
	require.NoError(t, err)
	other := make(chan int, 10)
	_, err = m.RegisterListener("other", func(_ context.Context, e eventbus.Event[int]) error {
		other <- e.Data
		return nil
	})
	require.NoError(t, err)
	for i := range keys {
		require.NoError(t, m.Emit(context.Background(), "keyed", i))
	}
	g.waitEntered(t, n) // more than WithWorkers: blocked workers are replaced
	for i := range 5 {
		require.NoError(t, m.Emit(context.Background(), "other", i))
		waitCount(t, other, 1, "unrelated delivery")
	}
	assert.Equal(t, int32(n), peak.Load(), "keyed invocations at once")
	assert.Empty(t, g.entered, "no keyed invocation beyond Concurrency(n) started")
	g.open()
	require.NoError(t, m.Flush(context.Background()))
	checkAccounting(t, m.Stats())
}

// Workers rotate among listeners, not keys: a listener with 2,000 ready keys
// gets one turn, like a listener with one. On 0a1e6ca each key was its own
// entry in the ready list, and the unrelated delivery ran after all 2,000.
func TestReadyKeysOfOneListenerGetOneTurn(t *testing.T) {
	const keys = 2000
	// One worker and no replacement: the order of turns is all there is.
	m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithMaxWorkers(1))
	g := newGate()
	var keyed atomic.Int32
	_, err := m.RegisterListener("keyed", func(ctx context.Context, e eventbus.Event[int]) error {
		keyed.Add(1)
		if e.Data == -1 {
			g.wait(ctx)
		}
		return nil
	}, eventbus.OrderedBy(func(e eventbus.Event[int]) string { return strconv.Itoa(e.Data) }))
	require.NoError(t, err)
	before := make(chan int32, 1)
	_, err = m.RegisterListener("other", func(context.Context, eventbus.Event[int]) error {
		before <- keyed.Load()
		return nil
	})
	require.NoError(t, err)

	require.NoError(t, m.Emit(context.Background(), "keyed", -1))
	g.waitEntered(t, 1) // the one worker is in the keyed listener
	for i := range keys {
		require.NoError(t, m.Emit(context.Background(), "keyed", i))
	}
	require.NoError(t, m.Emit(context.Background(), "other", 0))
	g.open()
	ran := <-before
	assert.LessOrEqual(t, ran, int32(2), "keyed invocations before the unrelated one (of %d)", keys+1)
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, int32(keys+1), keyed.Load())
	checkAccounting(t, m.Stats())
}

// Batches are bounded in time: a worker running a slow (but not stalled)
// listener's batch gives back the unstarted rest once it has run for about
// the stall threshold while another listener waits. On 0a1e6ca the whole
// batch of 64 ran first (4 ms each: 256 ms).
func TestBatchesAreBoundedInTime(t *testing.T) {
	const slowEvents = 200
	m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithMaxWorkers(1))
	g := newGate()
	var slow atomic.Int32
	_, err := m.RegisterListener("slow", func(ctx context.Context, e eventbus.Event[int]) error {
		if e.Data == -1 {
			g.wait(ctx)
			return nil
		}
		slow.Add(1)
		time.Sleep(4 * time.Millisecond) // slow, never stalled: the duration is the point
		return nil
	}, eventbus.Ordered())
	require.NoError(t, err)
	type seen struct {
		slow int32
		wait time.Duration
	}
	before := make(chan seen, 1)
	var emitted time.Time
	_, err = m.RegisterListener("other", func(context.Context, eventbus.Event[int]) error {
		before <- seen{slow.Load(), time.Since(emitted)}
		return nil
	})
	require.NoError(t, err)

	require.NoError(t, m.Emit(context.Background(), "slow", -1))
	g.waitEntered(t, 1)
	for i := range slowEvents {
		require.NoError(t, m.Emit(context.Background(), "slow", i))
	}
	g.open()
	// Wait until the worker is into the slow listener's next batch.
	for slow.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	emitted = time.Now()
	require.NoError(t, m.Emit(context.Background(), "other", 0))
	got := <-before
	t.Logf("the unrelated delivery waited %v, behind %d slow invocations", got.wait, got.slow)
	assert.Less(t, got.slow, int32(64), "the slow listener's batch of 64 was cut short")
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, int32(slowEvents), slow.Load())
	checkAccounting(t, m.Stats())
}
