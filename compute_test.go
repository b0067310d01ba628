package eventbus_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// spin computes for d without blocking.
func spin(d time.Duration) {
	for start := time.Now(); time.Since(start) < d; {
		for i := 0; i < 1000; i++ {
			_ = i * i
		}
	}
}

// node is a heap object with pointers: allocating it makes work for the
// garbage collector.
type node struct {
	next, prev *node
	keys       [4]int
}

// churn keeps the last list spinAlloc made reachable, so that the
// collector has something to mark.
var churn atomic.Pointer[node]

// spinAlloc computes for d, allocating as it goes: a handler that the
// garbage collector makes wait (GC assist) at times, which runtime/metrics
// counts as waiting, neither running nor runnable.
func spinAlloc(d time.Duration) {
	for start := time.Now(); time.Since(start) < d; {
		var head *node
		for range 1000 {
			head = &node{next: head, prev: head, keys: [4]int{1, 2, 3, 4}}
		}
		churn.Store(head)
	}
}

// WithWorkers bounds handlers that compute: a worker whose handler has run
// past the stall threshold is replaced only when it is blocked, so handlers
// that only compute run at most WithWorkers at once (one more while a
// replacement starts). On 0a1e6ca they were all declared stalled and
// replaced: 16 listeners computing 40 ms each ran 30 at once with
// WithWorkers(2).
//
// Handlers that allocate too (spinAlloc): the collector makes them wait at
// times, and an instant's count of running goroutines then misses them. A
// suspect counted blocked is stalled at the next look, and only when no GC
// cycle completed around the look that counted it. Stalled at once, 16
// allocating listeners ran 4-5 at once with WithWorkers(2) and 7 with
// WithWorkers(4).
func TestWithWorkersBoundsComputingHandlers(t *testing.T) {
	type work struct {
		name string
		f    func(time.Duration)
	}
	for _, c := range []struct {
		work
		workers int
	}{{work{"spin", spin}, 1}, {work{"spin", spin}, 2}, {work{"alloc", spinAlloc}, 2}, {work{"alloc", spinAlloc}, 4}} {
		workers, compute := c.workers, c.f
		t.Run(fmt.Sprintf("%s/workers=%d", c.name, workers), func(t *testing.T) {
			const listeners, events = 16, 2
			m := newManager[int](t, eventbus.WithWorkers(workers))
			var running, peak atomic.Int32
			for i := range listeners {
				_, err := m.RegisterListener("compute", func(context.Context, eventbus.Event[int]) error {
					recordMax(&peak, running.Add(1))
					defer running.Add(-1)
					compute(40 * time.Millisecond) // the duration is the point: past the stall threshold
					return nil
				}, eventbus.Name(fmt.Sprintf("c%d", i)))
				require.NoError(t, err)
			}
			for i := range events {
				require.NoError(t, m.Emit(context.Background(), "compute", i))
			}
			require.NoError(t, m.Flush(context.Background()))
			s := m.Stats()
			t.Logf("peak %d computing handlers at once, %d workers, %d stalled now", peak.Load(), s.Workers, s.Stalled)
			assert.LessOrEqual(t, peak.Load(), int32(workers+1), "computing handlers at once")
			assert.Equal(t, uint64(listeners*events), s.Delivered)
			checkAccounting(t, s)
		})
	}
}

// A blocked handler is replaced even while other goroutines of the process
// keep every P busy (so it cannot be told from a computing one): after
// _computeLimit watchdog looks, at the latest.
func TestBlockedHandlerIsReplacedUnderCPUSaturation(t *testing.T) {
	m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithStallAfter(time.Millisecond))
	g := newGate()
	t.Cleanup(g.open)
	_, err := m.RegisterListener("blocked", g.handler)
	require.NoError(t, err)
	other := make(chan int, 1)
	_, err = m.RegisterListener("other", func(_ context.Context, e eventbus.Event[int]) error {
		other <- e.Data
		return nil
	})
	require.NoError(t, err)

	stop := make(chan struct{})
	done := make(chan struct{})
	const spinners = 4 // more than GOMAXPROCS on the test machines
	for range spinners {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
					spin(time.Millisecond)
				}
			}
		}()
	}
	defer func() {
		close(stop)
		for range spinners {
			<-done
		}
	}()
	require.NoError(t, m.Emit(context.Background(), "blocked", 0))
	g.waitEntered(t, 1)
	require.NoError(t, m.Emit(context.Background(), "other", 1))
	waitCount(t, other, 1, "delivery behind a blocked handler under CPU saturation")
}
