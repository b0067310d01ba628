package eventbus_test

import (
	"context"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/require"
)

// Emit allocates nothing per event, whatever the number of listeners: the
// event's record and its deliveries are recycled. Flush allocates a little
// per call (its epoch, a channel), so a run of 1,000 events may allocate a
// handful of objects, never one per event.
func TestEmitAllocatesNothingPerEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts need a warm pool")
	}
	for _, listeners := range []int{1, 10} {
		m := eventbus.New[int]()
		for range listeners {
			_, err := m.RegisterListener("alloc", func(context.Context, eventbus.Event[int]) error { return nil })
			require.NoError(t, err)
		}
		const events = 1000
		run := func() {
			for i := range events {
				if err := m.Emit(context.Background(), "alloc", i); err != nil {
					t.Fatal(err)
				}
			}
			if err := m.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		run() // warm up: rings, records, workers
		allocs := testing.AllocsPerRun(20, run)
		require.Less(t, allocs, float64(events)/10, "%d listeners: %.1f allocations per %d events", listeners, allocs, events)
		require.NoError(t, m.Close(context.Background()))
	}
}
