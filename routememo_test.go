package eventbus

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eventbus-go/eventbus/internal/registry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A remembered route is never used once the registry has changed: emits
// with the same string (same bytes, same length) see every registration,
// unregistration and declaration made before they start.
func TestRouteMemoFollowsTheRegistry(t *testing.T) {
	m := New[any]()
	defer m.Close(context.Background())
	const name = "memo.event" // one constant: the same bytes on every emit
	var a, b atomic.Int64
	la, err := m.RegisterListener(name, func(context.Context, Event[any]) error { a.Add(1); return nil })
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(context.Background(), name, 1))
	require.NotNil(t, m.memo.Find(name, &m.version), "the route is remembered")

	lb, err := m.RegisterListener(name, func(context.Context, Event[any]) error { b.Add(1); return nil })
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(context.Background(), name, 2))
	assert.Equal(t, int64(2), a.Load())
	assert.Equal(t, int64(1), b.Load(), "a listener registered after the route was remembered gets the next emit")

	la.Unregister()
	require.NoError(t, m.EmitSync(context.Background(), name, 3))
	assert.Equal(t, int64(2), a.Load(), "an unregistered listener gets nothing")
	assert.Equal(t, int64(2), b.Load())

	_, err = NewTopic[int](m, name)
	require.NoError(t, err)
	err = m.EmitSync(context.Background(), name, "not an int")
	assert.ErrorIs(t, err, ErrTypeMismatch, "a declaration made after the route was remembered is enforced")
	assert.ErrorIs(t, m.Emit(context.Background(), name, "not an int"), ErrTypeMismatch)
	assert.Equal(t, int64(2), b.Load())

	// A name with the same bytes elsewhere (built at run time) and a
	// name of the same length with other bytes find their own routes.
	same := strings.Clone(name)
	require.NoError(t, m.EmitSync(context.Background(), same, 4))
	assert.Equal(t, int64(3), b.Load())
	other := "memo.eventX"[:len(name)-1] + "Y"
	require.NoError(t, m.EmitSync(context.Background(), other, 5))
	assert.Equal(t, int64(3), b.Load(), "another name of the same length matches nothing")
	lb.Unregister()
	assert.Nil(t, m.memo.Find(name, &m.version), "no remembered route survives a registry change")
}

// Emitters racing with registrations, on names sharing memo slots, never
// deliver to a listener unregistered before the emit started, nor miss one
// registered before it: checked per emit with a registration counter.
func TestRouteMemoRace(t *testing.T) {
	m := New[int]()
	defer m.Close(context.Background())
	names := make([]string, 3*registry.MemoSlots) // more names than slots: they collide
	for i := range names {
		names[i] = "race.n" + strings.Repeat("x", i%7) + string(rune('a'+i%26))
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = m.EmitSync(context.Background(), names[(i*7+g)%len(names)], i)
			}
		}()
	}
	for round := range 200 {
		name := names[round%len(names)]
		var got atomic.Int64
		l, err := m.RegisterListener(name, func(_ context.Context, e Event[int]) error {
			if e.Data == -1 {
				got.Add(1)
			}
			return nil
		})
		require.NoError(t, err)
		require.NoError(t, m.EmitSync(context.Background(), name, -1))
		require.Equal(t, int64(1), got.Load(), "a listener registered before the emit gets it")
		l.Unregister()
		_ = m.EmitSync(context.Background(), name, -1)
		require.Equal(t, int64(1), got.Load(), "an unregistered listener gets nothing")
	}
	close(stop)
	wg.Wait()
}

// callTally keeps exact counts across folds, including adds racing with
// one, and a reader never sees a fold half done: what it reads never goes
// down.
func TestCallTallyFolds(t *testing.T) {
	var c callTally
	const big = _foldAt / 4
	var wg sync.WaitGroup
	done := make(chan struct{})
	read := make(chan error, 1)
	go func() {
		var calls, delivered uint64
		for {
			select {
			case <-done:
				read <- nil
				return
			default:
			}
			n, d := c.sum()
			if n < calls || d < delivered {
				read <- fmt.Errorf("sum went down: calls %d -> %d, delivered %d -> %d", calls, n, delivered, d)
				return
			}
			calls, delivered = n, d
		}
	}()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				c.add(big) // 40 adds of 2^29: the low halves pass 2^31 several times
			}
			for range 1000 {
				c.add(3)
			}
		}()
	}
	wg.Wait()
	close(done)
	require.NoError(t, <-read)
	calls, delivered := c.sum()
	assert.Equal(t, uint64(4*1010), calls)
	assert.Equal(t, uint64(4*(10*big+3000)), delivered)
	assert.Positive(t, c.delivered.Load(), "some stripe was folded")
	assert.Zero(t, c.folding.Load()%2, "no fold left under way")
}

// Stats adds EmitSync's calls, deliveries and failures up exactly.
func TestEmitSyncCounts(t *testing.T) {
	m := New[int]()
	defer m.Close(context.Background())
	boom := errors.New("boom")
	_, err := m.RegisterListener("c", func(_ context.Context, e Event[int]) error {
		if e.Data%3 == 0 {
			return boom
		}
		return nil
	})
	require.NoError(t, err)
	ok, err := m.RegisterListener("c", func(context.Context, Event[int]) error { return nil })
	require.NoError(t, err)
	for i := range 30 {
		_ = m.EmitSync(context.Background(), "c", i)
	}
	_ = m.EmitSync(context.Background(), "nobody", 0)
	s := m.Stats()
	assert.Equal(t, uint64(31), s.Emitted)
	assert.Equal(t, uint64(60), s.Matched)
	assert.Equal(t, uint64(50), s.Delivered)
	assert.Equal(t, uint64(10), s.Failed)
	assert.Equal(t, uint64(30), ok.Stats().Delivered)
	assert.Equal(t, s.Matched, s.Delivered+s.Failed+s.Panicked+s.Skipped+s.Dropped+s.Abandoned+uint64(s.Queued)+uint64(s.Running))
}

// A sum made while a fold is under way (a stripe emptied, the wide counters
// not yet added to) waits for it to end, and then counts the stripe once.
func TestCallTallySumWaitsForFold(t *testing.T) {
	var c callTally
	c.add(7)
	c.add(5)
	// Half a fold, as fold does it, of every stripe.
	require.True(t, c.folding.CompareAndSwap(0, 1))
	var calls, delivered uint64
	for i := range c.stripes {
		v := c.stripes[i].v.Swap(0)
		calls, delivered = calls+v>>32, delivered+uint64(uint32(v))
	}
	got := make(chan [2]uint64, 1)
	go func() {
		n, d := c.sum()
		got <- [2]uint64{n, d}
	}()
	for range 1000 {
		runtime.Gosched() // let the reader run, and find the fold under way
	}
	select {
	case r := <-got:
		t.Fatalf("sum returned %v during a fold", r)
	default:
	}
	c.calls.Add(calls)
	c.delivered.Add(delivered)
	c.folding.Store(2)
	assert.Equal(t, [2]uint64{2, 12}, <-got)
}
