package benchmarks

import (
	"sync/atomic"
	"testing"
	"time"
)

// topic is the event name every library emits and listens on.
const topic = "bench.event"

// emitter is the adapter each library is measured through. A handler, as
// passed to the constructors below, receives the sequence number given to
// Emit.
type emitter interface {
	// Emit hands one event to the library's listeners.
	Emit(seq int) error
	// Close returns once every handler call has returned and the library
	// has stopped every goroutine it started.
	Close() error
}

// library is one contender. Its constructors register one listener per
// handler on topic; a nil constructor means the library has no such mode,
// and it is then absent from the scenarios that need it.
type library struct {
	name string
	// newSync builds an emitter whose Emit runs every handler in the
	// calling goroutine before it returns.
	newSync func(tb testing.TB, handlers []func(seq int)) emitter
	// newAsync builds an emitter whose Emit queues the event and returns;
	// handlers run on other goroutines.
	newAsync func(tb testing.TB, handlers []func(seq int)) emitter
	// newChurn builds a churner, for the scenarios whose subscriptions come
	// and go.
	newChurn func(tb testing.TB) churner
}

// churner is the adapter of the churn scenarios: subscriptions that come
// and go, each on a topic of its own, as one per connection or per request
// does. Each library delivers the way it is used elsewhere here: eventbus
// and asaskevich in the publishing goroutine, cskr and watermill on a
// goroutine per subscription.
type churner interface {
	// Subscribe registers h for the events published on topic and returns
	// the function that unsubscribes it. Once that function has returned,
	// h is not called again and nothing the subscription started is still
	// running.
	Subscribe(topic string, h func(seq int)) (unsubscribe func() error, err error)
	// Publish hands seq to the subscribers of topic.
	Publish(topic string, seq int) error
	// Close stops the library, unsubscribing what is left; it returns once
	// every goroutine the library or the adapter started has stopped.
	Close() error
}

// libraries lists the contenders in the order they appear in results: the
// two baselines first, then eventbus, then its peers.
func libraries() []library {
	return []library{
		directLibrary(),
		channelLibrary(),
		eventbusLibrary(),
		asaskevichLibrary(),
		cskrLibrary(),
		watermillLibrary(),
	}
}

// counter is an atomic counter on its own cache line, so that listeners
// counting side by side do not slow each other down through false sharing.
type counter struct {
	n atomic.Int64
	_ [56]byte
}

// sink gives each listener a handler that counts its deliveries, and closes
// done once every listener has counted want of them. It is the only
// synchronisation the scenarios use to learn that delivery has finished:
// every delivery is counted, nothing sleeps.
type sink struct {
	counts  []counter
	want    int64
	pending atomic.Int64 // listeners that have not yet counted want deliveries
	done    chan struct{}
	work    func() // extra work each delivery does first, if not nil
}

func newSink(listeners, want int) *sink {
	s := &sink{
		counts: make([]counter, listeners),
		want:   int64(want),
		done:   make(chan struct{}),
	}
	s.pending.Store(int64(listeners))
	return s
}

// handlers returns one handler per listener.
func (s *sink) handlers() []func(int) {
	hs := make([]func(int), len(s.counts))
	for i := range hs {
		c := &s.counts[i]
		hs[i] = func(int) {
			if s.work != nil {
				s.work()
			}
			if c.n.Add(1) == s.want && s.pending.Add(-1) == 0 {
				close(s.done)
			}
		}
	}
	return hs
}

// watchdog bounds how long wait waits for deliveries that may never come.
// It is no timing assertion: only a library that loses events ever meets
// it, and it turns that hang into a failure that says what was lost.
const watchdog = 2 * time.Minute

// wait returns once every listener has counted want deliveries.
func (s *sink) wait(tb testing.TB) {
	tb.Helper()
	select {
	case <-s.done:
		return
	default:
	}
	t := time.NewTimer(watchdog)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		tb.Fatalf("events lost: listeners delivered %v of %d each", s.delivered(), s.want)
	}
}

// delivered returns each listener's count.
func (s *sink) delivered() []int64 {
	out := make([]int64, len(s.counts))
	for i := range s.counts {
		out[i] = s.counts[i].n.Load()
	}
	return out
}

// checkExact fails tb unless every listener counted exactly want
// deliveries: call it after Close, when no more can arrive.
func (s *sink) checkExact(tb testing.TB) {
	tb.Helper()
	for i, n := range s.delivered() {
		if n != s.want {
			tb.Fatalf("listener %d handled %d events, want %d", i, n, s.want)
		}
	}
}

// mustClose closes e and fails tb if that fails.
func mustClose(tb testing.TB, e emitter) {
	tb.Helper()
	if err := e.Close(); err != nil {
		tb.Fatalf("close: %v", err)
	}
}
