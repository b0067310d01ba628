package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHammerSeeded runs a seeded random program against one EventManager
// whose scheduler checks its invariants after every accounting step, with a
// stall threshold short enough that workers are declared stalled, replaced
// and handed back their batches all the time. Emitters (some of them
// handlers) emit in every way to listeners of every mode, some of which
// fail, panic, spin past the stall threshold, emit, or unregister; then
// Close. Every delivery must be accounted for, every Ordered listener must
// see each emitter's events in order, and nothing may hang.
func TestHammerSeeded(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { hammer(t, seed) })
	}
}

func hammer(t *testing.T, seed uint64) {
	const emitters, perEmitter, names = 4, 400, 4
	m := eventbus.New[[3]int](
		eventbus.WithInvariantChecks(),
		eventbus.WithStallAfter(50*time.Microsecond),
		eventbus.WithWorkers(2), eventbus.WithMaxWorkers(16),
		eventbus.WithQueueSize(16),
		eventbus.WithErrorHandler(func(error) {}),
	)
	rng := rand.New(rand.NewPCG(seed, 1))
	spin := func() { // busy past the stall threshold, without sleeping
		for start := time.Now(); time.Since(start) < 200*time.Microsecond; {
			runtime.Gosched()
		}
	}
	type orderCheck struct {
		mu   sync.Mutex
		last [emitters]int
		bad  int
	}
	var checks []*orderCheck
	var listeners []*eventbus.Listener
	for i := range 12 {
		name := fmt.Sprintf("n%d", i%names)
		if i%5 == 4 {
			name = "n.>" // a wildcard that matches nothing emitted here but n.x
		}
		var opts []eventbus.ListenerOption
		kind := rng.IntN(7)
		oc := &orderCheck{}
		for j := range oc.last {
			oc.last[j] = -1
		}
		switch kind {
		case 1:
			opts = append(opts, eventbus.Ordered())
			checks = append(checks, oc)
		case 2:
			opts = append(opts, eventbus.OrderedBy(func(e eventbus.Event[[3]int]) string { return fmt.Sprint(e.Data[0]) }))
			checks = append(checks, oc)
		case 3:
			opts = append(opts, eventbus.Concurrency(2))
		case 4:
			opts = append(opts, eventbus.Retry(2, 10*time.Microsecond, 50*time.Microsecond))
		case 5:
			opts = append(opts, eventbus.QueueSize(4), eventbus.OnOverflow(eventbus.Overflow(rng.IntN(4))))
		case 6:
			opts = append(opts, eventbus.Once())
		}
		behaviour := rng.IntN(6)
		ordered := kind == 1 || kind == 2
		l, err := m.RegisterListener(name, func(ctx context.Context, e eventbus.Event[[3]int]) error {
			if ordered && e.Data[2] == 0 { // EmitSync (1) takes no part in the accept order, follow-ups (2) come from many handlers
				oc.mu.Lock()
				if e.Data[1] <= oc.last[e.Data[0]] {
					oc.bad++
				}
				oc.last[e.Data[0]] = e.Data[1]
				oc.mu.Unlock()
			}
			switch {
			case behaviour == 1 && e.Data[1]%7 == 0:
				return errors.New("fail")
			case behaviour == 2 && e.Data[1]%11 == 0:
				panic("boom")
			case behaviour == 3 && e.Data[1]%5 == 0:
				spin()
			case behaviour == 4 && e.Data[1]%13 == 0:
				_ = m.Emit(context.Background(), "n.x", [3]int{e.Data[0], e.Data[1], 2}) // a follow-up, whatever the context
			}
			return nil
		}, opts...)
		require.NoError(t, err)
		listeners = append(listeners, l)
	}
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for g := range emitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(g)+2))
			for i := range perEmitter {
				name := fmt.Sprintf("n%d", r.IntN(names))
				data := [3]int{g, i, 0}
				var err error
				switch r.IntN(10) {
				case 0:
					data[2] = 1
					err = m.EmitSync(context.Background(), name, data)
				case 1, 2:
					err = m.TryEmit(name, data)
				default:
					err = m.Emit(context.Background(), name, data)
				}
				if err == nil {
					accepted.Add(1)
				}
				if r.IntN(200) == 0 {
					listeners[r.IntN(len(listeners))].Unregister()
				}
			}
		}()
	}
	if seed%2 == 1 {
		// Give up on the drain at once: what has not started is abandoned
		// while emitters and stalled workers are still busy.
		short, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		_ = m.Close(short)
		cancel()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, m.Close(ctx), "the pool drains, or its workers exit after an abort")
	s := m.Stats()
	checkAccounting(t, s)
	assert.Zero(t, s.Queued+s.Running)
	assert.Zero(t, s.Workers, "every worker exited")
	if seed%2 == 1 {
		return // an abort cuts ordered sequences short
	}
	assert.Positive(t, accepted.Load())
	for i, oc := range checks {
		assert.Zero(t, oc.bad, "ordered listener %d saw an emitter's events out of order", i)
	}
}
