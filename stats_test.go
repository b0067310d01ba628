package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
