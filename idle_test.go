package eventbus_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Idle workers exit after the idle period, so an idle bus holds no
// goroutine; workers start again when work comes. On 0a1e6ca they stayed
// parked until Close.
func TestIdleWorkersExit(t *testing.T) {
	base := runtime.NumGoroutine()
	const idle = 20 * time.Millisecond // the duration is the point; waits below are generous
	m := newManager[int](t, eventbus.WithWorkers(4), eventbus.WithIdleAfter(idle))
	delivered := make(chan int, 100)
	_, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
		delivered <- e.Data
		return nil
	})
	require.NoError(t, err)
	for round := range 3 {
		for i := range 100 {
			require.NoError(t, m.Emit(context.Background(), "e", i))
		}
		require.NoError(t, m.Flush(context.Background()))
		for range 100 {
			<-delivered
		}
		poll(t, func() bool { return m.Stats().Workers == 0 }, "round %d: workers still up after the bus went idle", round)
		poll(t, func() bool { return runtime.NumGoroutine() <= base }, "round %d: more goroutines than before New (%d)", round, base)
	}
	assert.Equal(t, uint64(300), m.Stats().Delivered)
	checkAccounting(t, m.Stats())
}

// poll waits, in this goroutine, until cond holds; it fails the test after
// a generous 20 s.
func poll(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
		time.Sleep(time.Millisecond)
	}
}
