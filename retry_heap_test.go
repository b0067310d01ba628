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

// A listener unregistered while its failing attempt runs does not leave a
// retry waiting out its backoff: the next attempt is skipped at once, so
// Flush returns (Retry's doc: "until Unregister, which skips its next
// attempt"). Before the fix the retry was scheduled an hour out and Flush
// waited for it.
func TestUnregisterDuringAFailingAttemptSkipsItsRetryAtOnce(t *testing.T) {
	m := eventbus.New[int](eventbus.WithWorkers(2))
	defer func() { // bounded: on failure, Close would wait out the backoff
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	}()
	var l *eventbus.Listener
	var calls atomic.Int32
	l, err := m.RegisterListener("job", func(ctx context.Context, e eventbus.Event[int]) error {
		calls.Add(1)
		l.Unregister() // unregistered while this attempt runs
		return errors.New("fails")
	}, eventbus.Retry(1, time.Hour, time.Hour))
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "job", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, m.Flush(ctx), "Flush waited for the backoff of a retry whose listener is gone")
	assert.Equal(t, int32(1), calls.Load())
	st := l.Stats()
	assert.Equal(t, uint64(1), st.Skipped)
	assert.Equal(t, 0, st.Pending)
}
