package eventbus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Where "never deadlocks" ends (README, Guarantees): an emit from the
// handler's own goroutine never waits, but one from a goroutine the handler
// starts and waits for is an ordinary Emit, which waits for room in a full
// backlog, here one only the waiting handler's listener could free. It
// waits until its context ends.
func TestEmitFromAGoroutineAHandlerStartsIsNotAWorkers(t *testing.T) {
	m := newManager[int](t, eventbus.WithQueueSize(1))
	type result struct{ own, started error }
	results := make(chan result, 1)
	_, err := m.RegisterListener("e", func(ctx context.Context, e eventbus.Event[int]) error {
		if e.Data != 0 {
			return nil
		}
		var r result
		r.own = m.Emit(ctx, "e", 1) // fills the backlog (bound 1)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond) // the duration is the point
			defer cancel()
			r.started = m.Emit(ctx, "e", 2)
		}()
		wg.Wait()
		results <- r
		return nil
	}, eventbus.Ordered())
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 0))
	r := <-results
	assert.NoError(t, r.own, "the handler's own goroutine never waits")
	assert.ErrorIs(t, r.started, eventbus.ErrQueueFull, "a goroutine it starts is not a worker: it waited for room")
	assert.ErrorIs(t, r.started, context.DeadlineExceeded)
	require.NoError(t, m.Flush(context.Background()))
	checkAccounting(t, m.Stats())
}
