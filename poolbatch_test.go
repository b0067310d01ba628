package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A plain pool listener (no Retry, Once, Observer or CancelWithEmitter)
// runs each batch a worker takes of it under one deferred recover
// (entry.RunBatch). These tests hold the only worker while a batch of
// batchEvents queues, so that the worker takes the whole batch at once,
// and put a panic, a runtime.Goexit or an Unregister at each position of
// it.

const batchEvents = 8

// queueBatch holds m's workers (workers of them) on another listener while
// n events are emitted to "e", then lets them go and flushes: with one
// worker, it takes them as one batch.
func queueBatch(t *testing.T, m *eventbus.EventManager[int], workers, n int) {
	t.Helper()
	g := newGate()
	t.Cleanup(g.open)
	_, err := m.RegisterListener("hold", g.handler)
	require.NoError(t, err)
	for i := range workers {
		require.NoError(t, m.Emit(context.Background(), "hold", i))
	}
	g.waitEntered(t, workers)
	for i := range n {
		require.NoError(t, m.Emit(context.Background(), "e", i))
	}
	g.open()
	require.NoError(t, m.Flush(context.Background()))
}

// calls counts the calls of a handler per event.
type calls struct {
	mu sync.Mutex
	n  map[int]int
}

func (c *calls) add(e eventbus.Event[int]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[int]int{}
	}
	c.n[e.Data]++
}

// once asserts that every event of 0..n-1 was handled once.
func (c *calls) once(t *testing.T, n int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range n {
		assert.Equal(t, 1, c.n[i], "calls of event %d", i)
	}
}

// panicky is a handler that panics for the events in at; its method is
// named so that its frames can be counted in a PanicError's stack.
type panicky struct {
	calls
	at  map[int]bool
	ran func()
}

func (p *panicky) handle(_ context.Context, e eventbus.Event[int]) error {
	p.add(e)
	p.ran()
	if p.at[e.Data] {
		panic(fmt.Sprintf("panic %d", e.Data))
	}
	return nil
}

// A panic at any position of a pool batch, or several, is the delivery's:
// counted as panicked and reported once, as a *ListenerError whose stack
// shows that panic only (the batch resumes in a fresh call after each),
// while every other delivery of the batch runs once and is counted. The
// batch goes on after a panic: the rest of it runs before the turn of
// another listener of the same events.
func TestPoolBatchPanicAtEveryPosition(t *testing.T) {
	cases := map[string]map[int]bool{"every": {}, "alternate": {}}
	for i := range batchEvents {
		cases[fmt.Sprintf("at %d", i)] = map[int]bool{i: true}
		cases["every"][i] = true
		if i%2 == 1 {
			cases["alternate"][i] = true
		}
	}
	for name, at := range cases {
		t.Run(name, func(t *testing.T) {
			sink := &errorSink{}
			m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithErrorHandler(sink.handle))
			var mu sync.Mutex
			var order []string // which listener ran, in order
			p := &panicky{at: at, ran: func() { mu.Lock(); order = append(order, "p"); mu.Unlock() }}
			l, err := m.RegisterListener("e", p.handle)
			require.NoError(t, err)
			_, err = m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
				mu.Lock()
				order = append(order, "other")
				mu.Unlock()
				return nil
			})
			require.NoError(t, err)
			queueBatch(t, m, 1, batchEvents)
			mu.Lock()
			assert.Equal(t, strings.Repeat("p", batchEvents), strings.Join(order[:batchEvents], ""), "the panicking listener's batch ran in one go: %v", order)
			mu.Unlock()

			p.once(t, batchEvents)
			errs := sink.all()
			require.Len(t, errs, len(at), "one report per panic")
			seen := map[int]int{}
			for _, err := range errs {
				var lerr *eventbus.ListenerError
				require.ErrorAs(t, err, &lerr)
				var perr *eventbus.PanicError
				require.ErrorAs(t, err, &perr)
				d := lerr.Data.(int)
				seen[d]++
				assert.True(t, at[d], "event %d reported, did not panic", d)
				assert.Equal(t, fmt.Sprintf("panic %d", d), perr.Value)
				assert.Equal(t, 1, lerr.Attempts)
				stack := string(perr.Stack)
				assert.Equal(t, 1, strings.Count(stack, "(*panicky).handle"), "the handler's frames once: %s", stack)
				assert.Equal(t, 1, strings.Count(stack, "\npanic("), "one panic in the stack: %s", stack)
			}
			for d := range at {
				assert.Equal(t, 1, seen[d], "reports of event %d", d)
			}
			ls := l.Stats()
			assert.Equal(t, uint64(len(at)), ls.Panicked, "listener's panicked: %+v", ls)
			assert.Equal(t, uint64(batchEvents-len(at)), ls.Delivered, "listener's delivered: %+v", ls)
			s := m.Stats()
			assert.Equal(t, uint64(len(at)), s.Panicked)
			assert.Equal(t, uint64(2*batchEvents-len(at)+1), s.Delivered) // and the other's, and the holder's
			checkAccounting(t, s)
		})
	}
}

// panic(nil) in a pool handler is a *runtime.PanicNilError, counted as a
// panic; under GODEBUG=panicnil=1 it recovers as nil and counts as
// delivered, as on EmitSync, and the batch goes on (checked in a child
// process, since GODEBUG is read at start).
func TestPoolBatchPanicNil(t *testing.T) {
	child := os.Getenv("EVENTBUS_PANICNIL_CHILD") == "1"
	sink := &errorSink{}
	m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithErrorHandler(sink.handle))
	var c calls
	l, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
		c.add(e)
		if e.Data%2 == 0 {
			panic(nil)
		}
		return nil
	})
	require.NoError(t, err)
	queueBatch(t, m, 1, batchEvents)
	c.once(t, batchEvents)
	ls := l.Stats()
	if child {
		assert.Equal(t, uint64(batchEvents), ls.Delivered, "panicnil=1: %+v", ls)
		s := m.Stats()
		assert.Equal(t, uint64(batchEvents+1), s.Delivered, "panicnil=1: %+v", s) // and the holder's
		assert.Zero(t, s.Panicked+s.Skipped+s.Failed, "panicnil=1: %+v", s)
		assert.Empty(t, sink.all())
	} else {
		assert.Equal(t, uint64(batchEvents/2), ls.Panicked, "%+v", ls)
		for _, err := range sink.all() {
			var pn *runtime.PanicNilError
			assert.ErrorAs(t, err, &pn)
		}
	}
	checkAccounting(t, m.Stats())
	if child {
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestPoolBatchPanicNil$", "-test.count", "1")
	cmd.Env = append(os.Environ(), "EVENTBUS_PANICNIL_CHILD=1", "GODEBUG=panicnil=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "under GODEBUG=panicnil=1:\n%s", out)
	assert.Contains(t, string(out), "PASS")
}

// A handler that calls runtime.Goexit at any position of a pool batch ends
// its worker: that delivery is counted as failed and reported, and the rest
// of the batch runs on another worker, each delivery once; Flush returns.
func TestPoolBatchGoexitAtEveryPosition(t *testing.T) {
	for at := range batchEvents {
		t.Run(fmt.Sprintf("at %d", at), func(t *testing.T) {
			sink := &errorSink{}
			m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithErrorHandler(sink.handle))
			var c calls
			l, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
				c.add(e)
				if e.Data == at {
					runtime.Goexit()
				}
				return nil
			})
			require.NoError(t, err)
			queueBatch(t, m, 1, batchEvents)

			c.once(t, batchEvents)
			errs := sink.all()
			require.Len(t, errs, 1)
			var lerr *eventbus.ListenerError
			require.ErrorAs(t, errs[0], &lerr)
			assert.Equal(t, at, lerr.Data)
			assert.Contains(t, lerr.Error(), "Goexit")
			ls := l.Stats()
			assert.Equal(t, uint64(1), ls.Failed, "%+v", ls)
			assert.Equal(t, uint64(batchEvents-1), ls.Delivered, "%+v", ls)
			checkAccounting(t, m.Stats())
		})
	}
}

// A listener unregistered by its own handler at any position of a pool
// batch: the deliveries after it in the batch are skipped, not run.
func TestPoolBatchUnregisterAtEveryPosition(t *testing.T) {
	for at := range batchEvents {
		t.Run(fmt.Sprintf("at %d", at), func(t *testing.T) {
			m := newManager[int](t, eventbus.WithWorkers(1))
			var c calls
			var self atomic.Pointer[eventbus.Listener]
			l, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
				c.add(e)
				if e.Data == at {
					self.Load().Unregister()
				}
				return nil
			})
			require.NoError(t, err)
			self.Store(l)
			queueBatch(t, m, 1, batchEvents)

			c.once(t, at+1)
			c.mu.Lock()
			assert.Len(t, c.n, at+1, "calls after the unregistering one")
			c.mu.Unlock()
			ls := l.Stats()
			assert.Equal(t, uint64(at+1), ls.Delivered, "%+v", ls)
			assert.Equal(t, uint64(batchEvents-at-1), ls.Skipped, "%+v", ls)
			checkAccounting(t, m.Stats())
		})
	}
}

// While a handler of a pool batch blocks, the deliveries of the batch it
// has not started go to another worker: each runs once, and none waits for
// the blocked one. (The two workers take half the backlog each; the first
// delivery blocks until every other ran, so half of its batch must be
// handed back.)
func TestPoolBatchHandsBackWhatItHasNotStarted(t *testing.T) {
	const events = 40
	m := newManager[int](t, eventbus.WithWorkers(2), eventbus.WithStallAfter(time.Millisecond))
	var c calls
	var others atomic.Int32
	rest := make(chan struct{})
	l, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
		c.add(e)
		if e.Data == 0 {
			select { // until every other delivery ran: on another worker
			case <-rest:
			case <-time.After(time.Minute):
				return errors.New("the rest of the batch waited for its first delivery")
			}
		} else if others.Add(1) == events-1 {
			close(rest)
		}
		return nil
	})
	require.NoError(t, err)
	queueBatch(t, m, 2, events)
	c.once(t, events)
	ls := l.Stats()
	assert.Equal(t, uint64(events), ls.Delivered, "%+v", ls)
	checkAccounting(t, m.Stats())
}
