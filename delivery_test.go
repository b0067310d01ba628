package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type step struct{ Key, Seq int }

func TestOrderedByKeepsPerKeyOrderAndRunsKeysConcurrently(t *testing.T) {
	const keys, perKey, emitters = 200, 50, 4
	m := newManager[step](t, eventbus.WithWorkers(4), eventbus.WithQueueSize(256))
	var mu sync.Mutex
	last := map[int]int{}
	var inFlight, maxInFlight atomic.Int32
	var bad atomic.Int32
	_, err := m.RegisterListener("step", func(_ context.Context, e eventbus.Event[step]) error {
		n := inFlight.Add(1)
		for {
			old := maxInFlight.Load()
			if n <= old || maxInFlight.CompareAndSwap(old, n) {
				break
			}
		}
		mu.Lock()
		if last[e.Data.Key] != e.Data.Seq-1 {
			bad.Add(1)
		}
		last[e.Data.Key] = e.Data.Seq
		mu.Unlock()
		time.Sleep(10 * time.Microsecond) // give other keys a chance to overlap
		inFlight.Add(-1)
		return nil
	}, eventbus.OrderedBy(func(e eventbus.Event[step]) string { return fmt.Sprint(e.Data.Key) }))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range emitters { // each emitter owns a set of keys
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 1; seq <= perKey; seq++ {
				for k := g; k < keys; k += emitters {
					assert.NoError(t, m.Emit(context.Background(), "step", step{Key: k, Seq: seq}))
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, m.Flush(context.Background()))
	assert.Zero(t, bad.Load(), "every key's sequence arrives in order")
	for k := range keys {
		assert.Equal(t, perKey, last[k], "key %d complete", k)
	}
	assert.Greater(t, maxInFlight.Load(), int32(1), "different keys ran concurrently")
	checkAccounting(t, m.Stats())
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
