package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Stats snapshots taken while Emit and EmitSync run, with listeners that
// deliver, fail and panic: no counter ever shows less than in an earlier
// snapshot (they can be exported as monotonic counters), the identity holds
// in every snapshot, and the totals are exact at the end.
func TestStatsNeverGoDownAndAlwaysAddUp(t *testing.T) {
	m := eventbus.New[int](eventbus.WithErrorHandler(func(error) {}))
	defer m.Close(context.Background())
	for k := range 3 {
		_, err := m.RegisterListener("s", func(_ context.Context, e eventbus.Event[int]) error {
			switch (e.Data + k) % 3 {
			case 0:
				return errors.New("fail")
			case 1:
				panic("boom")
			}
			return nil
		})
		require.NoError(t, err)
	}
	const emitters, perEmitter = 3, 5000
	var wg sync.WaitGroup
	for g := range emitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perEmitter {
				if g == 0 {
					assert.NoError(t, m.Emit(context.Background(), "s", i))
				} else {
					_ = m.EmitSync(context.Background(), "s", i) // its listeners' failures
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	counters := func(s eventbus.Stats) map[string]uint64 {
		return map[string]uint64{"Emitted": s.Emitted, "Matched": s.Matched, "Delivered": s.Delivered,
			"Failed": s.Failed, "Panicked": s.Panicked, "Skipped": s.Skipped}
	}
	prev, snapshots := counters(m.Stats()), 0
	for running := true; running; snapshots++ {
		select {
		case <-done:
			running = false // one more snapshot, after the last emit
		default:
		}
		s := m.Stats()
		require.Equal(t, s.Matched, s.Delivered+s.Failed+s.Panicked+s.Skipped+s.Dropped+s.Abandoned+uint64(s.Queued)+uint64(s.Running),
			"the identity, in snapshot %d: %+v", snapshots, s)
		now := counters(s)
		for name, n := range now {
			require.GreaterOrEqual(t, n, prev[name], fmt.Sprintf("%s went down, in snapshot %d", name, snapshots))
		}
		prev = now
	}
	require.NoError(t, m.Flush(context.Background()))
	s := m.Stats()
	assert.Equal(t, uint64(emitters*perEmitter), s.Emitted)
	assert.Equal(t, uint64(3*emitters*perEmitter), s.Matched)
	assert.Equal(t, uint64(emitters*perEmitter), s.Delivered)
	assert.Equal(t, uint64(emitters*perEmitter), s.Failed)
	assert.Equal(t, uint64(emitters*perEmitter), s.Panicked)
	t.Logf("%d snapshots", snapshots)
}

// An EmitSync call to a name with one listener counts the call and its
// delivery with one add on the listener (see soleDelivered in stats.go).
// Here the handler unregisters its own listener, so that the call counts its
// delivery after the listener has left the registry: it must still reach
// Stats, exactly once, and the listener's own count.
func TestSoleDeliveryCountedAfterItsListenerLeft(t *testing.T) {
	m := eventbus.New[int]()
	defer m.Close(context.Background())
	const rounds, callsEach = 50, 5
	var handled atomic.Uint64
	for r := range rounds {
		var l *eventbus.Listener
		var n uint64
		l, err := m.RegisterListener("one", func(context.Context, eventbus.Event[int]) error {
			handled.Add(1)
			if n++; n == callsEach {
				l.Unregister() // from its own handler: the count comes after
			}
			return nil
		})
		require.NoError(t, err)
		for range callsEach {
			require.NoError(t, m.EmitSync(context.Background(), "one", r))
		}
		require.NoError(t, m.EmitSync(context.Background(), "one", r), "no listener left: matches nothing")
		assert.Equal(t, uint64(callsEach), l.Stats().Delivered, "round %d: the listener's own count", r)
		s := m.Stats()
		assert.Equal(t, handled.Load(), s.Delivered, "round %d", r)
		assert.Equal(t, handled.Load(), s.Matched, "round %d", r)
		assert.Equal(t, uint64((r+1)*(callsEach+1)), s.Emitted, "round %d", r)
	}
}

// Emitters call EmitSync on three names of one listener each while those
// listeners come and go (unregistered in varying order), and a reader takes
// snapshots: every snapshot adds up, no counter goes down and the
// sole-count invariants hold (CheckSoles), and at the end Stats and each
// listener count every delivery its handler made, once.
func TestSoleDeliveriesCountedExactlyUnderChurn(t *testing.T) {
	churnNames := []string{"churn.a", "churn.b", "churn.c"}
	m := eventbus.New[int]()
	defer m.Close(context.Background())
	const emitters, rounds = 3, 30
	type reg struct {
		l       *eventbus.Listener
		handled *atomic.Uint64
	}
	var (
		all     []reg
		handled atomic.Uint64
		calls   atomic.Uint64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for range emitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := m.EmitSync(context.Background(), churnNames[i%len(churnNames)], i); err == nil {
					calls.Add(1)
				}
			}
		}()
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		var prev eventbus.Stats
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := eventbus.CheckSoles(m); err != nil {
				t.Error(err)
				return
			}
			s := m.Stats()
			if s.Matched != s.Delivered+s.Failed+s.Panicked+s.Skipped+s.Dropped+s.Abandoned+uint64(s.Queued)+uint64(s.Running) ||
				s.Emitted < prev.Emitted || s.Matched < prev.Matched || s.Delivered < prev.Delivered {
				t.Errorf("snapshot %+v after %+v", s, prev)
				return
			}
			prev = s
		}
	}()
	for r := range rounds {
		var round []reg
		for _, name := range churnNames {
			mine := new(atomic.Uint64)
			entered := make(chan struct{})
			var once sync.Once
			l, err := m.RegisterListener(name, func(context.Context, eventbus.Event[int]) error {
				mine.Add(1)
				handled.Add(1)
				once.Do(func() { close(entered) })
				return nil
			})
			require.NoError(t, err)
			<-entered // emitters are calling it
			round = append(round, reg{l, mine})
		}
		// Unregistered in an order that varies, so that each place in the
		// listeners Stats reads is taken out.
		for i := range round {
			round[(i+r)%len(round)].l.Unregister()
		}
		all = append(all, round...)
	}
	close(stop)
	wg.Wait()
	<-readerDone
	require.NoError(t, eventbus.CheckSoles(m))
	s := m.Stats()
	assert.Equal(t, calls.Load(), s.Emitted)
	assert.Equal(t, handled.Load(), s.Delivered, "every delivery counted once")
	assert.Equal(t, s.Delivered+s.Skipped, s.Matched, "calls that found their listener unregistered skip it")
	for i, r := range all {
		assert.Equal(t, r.handled.Load(), r.l.Stats().Delivered, "listener %d", i)
	}
	t.Logf("%d calls, %d deliveries, %d skipped", calls.Load(), handled.Load(), s.Skipped)
}

// A call whose listener is unregistered while its handler runs moves its
// sole count to the manager's itself; every such move, and remove's, is
// made with the registry's lock held, so that no Stats sees a count half
// moved (taken from the listener and not yet the manager's, which made
// Delivered go down) and a Stats after the call returns counts it.
func TestSoleCountsMoveUnderTheRegistryLock(t *testing.T) {
	var m *eventbus.EventManager[int]
	var moves, unlocked atomic.Int32
	m = eventbus.New[int](eventbus.WithSoleMoveHook(func() {
		moves.Add(1)
		if !eventbus.RegistryLocked(m) {
			unlocked.Add(1)
		}
	}))
	defer m.Close(context.Background())
	entered, gate := make(chan struct{}), make(chan struct{})
	l, err := m.RegisterListener("x", func(_ context.Context, e eventbus.Event[int]) error {
		if e.Data == 1 {
			close(entered)
			<-gate
		}
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(context.Background(), "x", 0))
	late := make(chan error)
	go func() { late <- m.EmitSync(context.Background(), "x", 1) }()
	<-entered
	l.Unregister() // moves the first call's count
	close(gate)
	require.NoError(t, <-late) // the late call moves its own
	assert.Equal(t, int32(2), moves.Load(), "remove's move and the late call's")
	assert.Zero(t, unlocked.Load(), "moves made without the registry's lock")
	assert.Equal(t, uint64(2), m.Stats().Delivered)
	assert.Equal(t, uint64(2), l.Stats().Delivered)
	require.NoError(t, eventbus.CheckSoles(m))
}

// Many listeners, each called once as the one listener of its name, then
// most unregistered, in an order that takes each place in the list Stats
// reads (which gives memory back as it shrinks): their counts stay, once.
func TestSoleCountsOfManyListenersSurviveUnregister(t *testing.T) {
	m := eventbus.New[int]()
	defer m.Close(context.Background())
	const n, keep = 300, 10
	ls := make([]*eventbus.Listener, n)
	for i := range n {
		name := "many." + strconv.Itoa(i)
		l, err := m.RegisterListener(name, func(context.Context, eventbus.Event[int]) error { return nil })
		require.NoError(t, err)
		ls[i] = l
		require.NoError(t, m.EmitSync(context.Background(), name, i))
	}
	for i := range n - keep {
		ls[(i*7)%n].Unregister() // 7 and 300 are coprime: each once
		require.NoError(t, eventbus.CheckSoles(m))
	}
	s := m.Stats()
	assert.Equal(t, uint64(n), s.Delivered)
	assert.Equal(t, uint64(n), s.Emitted)
	assert.Equal(t, keep, s.Listeners)
	for i, l := range ls {
		assert.Equal(t, uint64(1), l.Stats().Delivered, "listener %d", i)
	}
}
