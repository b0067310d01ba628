package eventbus_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Backoffs cost no goroutine each: ten always-failing RetryForever
// listeners with thousands of deliveries backing off keep the goroutines
// within WithMaxWorkers plus a small constant (the retry timer's and the
// watchdog's callbacks). On 0a1e6ca each backoff was a time.AfterFunc, and
// the callbacks of backoffs ending together were thousands of goroutines.
func TestRetryBackoffsCostNoGoroutineEach(t *testing.T) {
	const maxWorkers, listeners, events, attempts = 8, 10, 300, 30_000
	base := runtime.NumGoroutine()
	m := newManager[int](t, eventbus.WithWorkers(2), eventbus.WithMaxWorkers(maxWorkers), eventbus.WithErrorHandler(func(error) {}))

	var tried atomic.Int64
	enough := make(chan struct{})
	var once sync.Once
	var ls []*eventbus.Listener
	for range listeners {
		l, err := m.RegisterListener("ev", func(context.Context, eventbus.Event[int]) error {
			if tried.Add(1) == attempts {
				once.Do(func() { close(enough) })
			}
			return errors.New("nack")
		}, eventbus.Retry(eventbus.RetryForever, time.Millisecond, 2*time.Millisecond))
		require.NoError(t, err)
		ls = append(ls, l)
	}

	// Sample the goroutine count until enough attempts have run.
	peak := make(chan int)
	stop := make(chan struct{})
	go func() {
		top := 0
		for {
			select {
			case <-stop:
				peak <- top
				return
			default:
			}
			top = max(top, runtime.NumGoroutine())
			runtime.Gosched()
		}
	}()
	for i := range events {
		require.NoError(t, m.Emit(context.Background(), "ev", i))
	}
	select {
	case <-enough:
	case <-time.After(60 * time.Second):
		t.Fatal("the listeners never retried enough")
	}
	close(stop)
	top := <-peak

	for _, l := range ls {
		l.Unregister() // skips the retries waiting, so Flush returns
	}
	require.NoError(t, m.Flush(context.Background()))
	// base counts the test's goroutine; +1 for the sampler; +4 for the
	// timers' callbacks and a worker starting in a stalled one's place.
	assert.LessOrEqual(t, top-base, maxWorkers+1+4, "goroutines above the test's (peak %d, base %d)", top, base)
	s := m.Stats()
	assert.Equal(t, uint64(listeners*events), s.Skipped, "every delivery ends skipped at Unregister")
	checkAccounting(t, s)
}
