package benchmarks

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder wraps a sink and also records which sequence numbers each
// listener received, so that a test can tell a lost event from a duplicate.
type recorder struct {
	*sink
	seen [][]atomic.Int32 // [listener][seq]
	each chan struct{}    // if not nil, receives a value after each delivery
}

func newRecorder(listeners, events int) *recorder {
	r := &recorder{sink: newSink(listeners, events), seen: make([][]atomic.Int32, listeners)}
	for i := range r.seen {
		r.seen[i] = make([]atomic.Int32, events)
	}
	return r
}

func (r *recorder) handlers() []func(int) {
	counted := r.sink.handlers()
	hs := make([]func(int), len(counted))
	for i := range hs {
		seen, count := r.seen[i], counted[i]
		hs[i] = func(seq int) {
			seen[seq].Add(1)
			count(seq)
			if r.each != nil {
				r.each <- struct{}{}
			}
		}
	}
	return hs
}

// check asserts that every listener received every event exactly once.
func (r *recorder) check(t *testing.T) {
	t.Helper()
	for l, seen := range r.seen {
		for seq := range seen {
			if n := seen[seq].Load(); n != 1 {
				assert.Failf(t, "wrong delivery count", "listener %d received event %d %d times", l, seq, n)
				return
			}
		}
	}
}

// TestAdapters drives every library through the delivery pattern of every
// scenario it takes part in, on a small scale, and checks that each
// listener receives each event exactly once.
func TestAdapters(t *testing.T) {
	const events = 2_000
	tests := []struct {
		name      string
		mode      mode
		listeners int
		events    int
		drive     func(t *testing.T, e emitter, r *recorder)
		slow      bool // the listener spins, as in the flood
		each      bool // the recorder reports each delivery
	}{
		{name: "sync/1", mode: syncMode, listeners: 1, events: events, drive: emitSyncChecked},
		{name: "sync/10", mode: syncMode, listeners: 10, events: events, drive: emitSyncChecked},
		{name: "parallel-sync", mode: syncMode, listeners: 1, events: events, drive: emitParallel},
		{name: "async/1", mode: asyncMode, listeners: 1, events: events, drive: emitAll},
		{name: "async/10", mode: asyncMode, listeners: 10, events: events, drive: emitAll},
		{name: "parallel-async", mode: asyncMode, listeners: 1, events: events, drive: emitParallel},
		{name: "one-at-a-time", mode: asyncMode, listeners: 1, events: 200, drive: emitOneAtATime, each: true},
		{name: "flood", mode: asyncMode, listeners: 1, events: 5 * queueSize, drive: emitAll, slow: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, l := range libraries() {
				newEmitter := tt.mode(l)
				if newEmitter == nil {
					continue
				}
				t.Run(l.name, func(t *testing.T) {
					r := newRecorder(tt.listeners, tt.events)
					if tt.slow {
						r.work = func() { spin(*floodSpin) }
					}
					if tt.each {
						r.each = make(chan struct{}, 1)
					}
					e := newEmitter(t, r.handlers())
					tt.drive(t, e, r)
					r.wait(t)
					require.NoError(t, e.Close())
					r.checkExact(t)
					r.check(t)
				})
			}
		})
	}
}

// emitSyncChecked emits every event and checks that each listener has
// handled it by the time Emit returns.
func emitSyncChecked(t *testing.T, e emitter, r *recorder) {
	for seq := range r.want {
		require.NoError(t, e.Emit(int(seq)))
		for l := range r.seen {
			require.EqualValues(t, 1, r.seen[l][seq].Load(), "listener %d had not handled event %d when Emit returned", l, seq)
		}
	}
}

// emitAll emits every event from one goroutine without waiting.
func emitAll(t *testing.T, e emitter, r *recorder) {
	for seq := range int(r.want) {
		require.NoError(t, e.Emit(seq))
	}
}

// emitParallel emits the events from four goroutines at once.
func emitParallel(t *testing.T, e emitter, r *recorder) {
	const emitters = 4
	var wg sync.WaitGroup
	errs := make(chan error, emitters)
	for g := range emitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := g; seq < int(r.want); seq += emitters {
				if err := e.Emit(seq); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

// emitOneAtATime emits the next event only once the listener has handled
// the previous one, as the latency scenario does.
func emitOneAtATime(t *testing.T, e emitter, r *recorder) {
	for seq := range int(r.want) {
		require.NoError(t, e.Emit(seq))
		select {
		case <-r.each:
		case <-time.After(watchdog):
			require.FailNow(t, "event lost", "event %d never reached the listener", seq)
		}
	}
}

// TestChurners drives every library's churner through the churn scenario on
// a small scale: each subscriber on a fresh topic gets exactly its one
// event, an unsubscribed one gets nothing more, and subscribers of other
// topics get nothing.
func TestChurners(t *testing.T) {
	for _, l := range libraries() {
		if l.newChurn == nil {
			continue
		}
		t.Run(l.name, func(t *testing.T) {
			c := l.newChurn(t)
			var stray atomic.Int64
			for i := range 100 {
				_, err := c.Subscribe("conn."+strconv.Itoa(i), func(int) { stray.Add(1) })
				require.NoError(t, err)
			}
			got := make(chan int, 2)
			for i := range 500 {
				topic := "req." + strconv.Itoa(i%50) // topics come back after they are gone
				unsubscribe, err := c.Subscribe(topic, func(seq int) { got <- seq })
				require.NoError(t, err)
				require.NoError(t, c.Publish(topic, i))
				select {
				case seq := <-got:
					require.Equal(t, i, seq, "event received on %s", topic)
				case <-time.After(watchdog):
					require.FailNow(t, "event lost", "event %d on %s never arrived", i, topic)
				}
				require.NoError(t, unsubscribe())
				require.NoError(t, c.Publish(topic, -1), "publish with no subscriber")
			}
			require.NoError(t, c.Close())
			assert.Empty(t, got, "nothing delivered after unsubscribe")
			assert.Zero(t, stray.Load(), "subscribers of other topics got events")
		})
	}
}
