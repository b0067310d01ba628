package eventbus

import (
	"sync/atomic"
	"unsafe"
)

// Stats is a snapshot of an EventManager's counters. Every delivery is
// accounted for: one per emitted event and matching listener, so
//
//	Matched == Delivered + Failed + Panicked + Skipped + Abandoned + Queued + Running
//
// The pool's counters are read together under its lock and EmitSync adds its
// counts when it returns, so the equation holds for every snapshot taken
// while no EmitSync is in progress (and in particular after Flush or Close).
type Stats struct {
	Emitted   uint64 // events accepted by Emit, TryEmit and EmitSync, matched or not
	Matched   uint64 // deliveries those events made: one per event and matching listener
	Delivered uint64 // deliveries whose handler returned nil
	Failed    uint64 // deliveries whose handler returned an error (after any retries)
	Panicked  uint64 // deliveries whose handler panicked (after any retries)
	Rejected  uint64 // emits refused: invalid name, closed, queue full or context done
	Skipped   uint64 // deliveries not run: the listener was unregistered, or a Once listener had fired
	Abandoned uint64 // deliveries dropped because Close's context ended first
	Retried   uint64 // failed attempts that were run again (Retry); not deliveries
	Queued    int    // deliveries waiting now, including those waiting out a retry backoff
	Running   int    // deliveries running now on the pool
	Listeners int    // listeners registered now
}

// ListenerStats is a snapshot of one listener's counters.
type ListenerStats struct {
	Delivered uint64 // invocations that returned nil
	Failed    uint64 // deliveries that failed with an error (after any retries)
	Panicked  uint64 // deliveries that panicked (after any retries)
	Skipped   uint64 // deliveries not run because it was unregistered (or Once had fired)
	Retried   uint64 // failed attempts that were run again
	// Pending counts deliveries waiting in the listener's own mailbox
	// (Ordered, OrderedBy, Concurrency), including one waiting out a retry
	// backoff. Deliveries to other listeners wait in the shared queue and
	// show only in Stats.Queued, so for them Pending is 0.
	Pending int
}

// counters are plain: the pool's are guarded by its mutex, and a worker or
// EmitSync fills its own before adding them in one go.
type counters struct {
	emitted, matched, delivered, failed, panicked, skipped, abandoned, retried uint64
}

func (c *counters) add(o *counters) {
	c.emitted += o.emitted
	c.matched += o.matched
	c.delivered += o.delivered
	c.failed += o.failed
	c.panicked += o.panicked
	c.skipped += o.skipped
	c.abandoned += o.abandoned
	c.retried += o.retried
}

// tallies are atomic counters striped over cache lines, so that goroutines
// counting at once on different cores rarely write the same line: each adds
// to the stripe its stack address picks, and a reader sums the stripes.
type tallies struct{ s *[_stripes]tally }

// tally is one stripe, one cache line.
type tally struct {
	emitted, delivered, failed, panicked, skipped, retried, rejected atomic.Uint64
	_                                                                [8]byte
}

const (
	_stripeBits = 3
	_stripes    = 1 << _stripeBits
)

func newTallies() tallies { return tallies{s: new([_stripes]tally)} }

// mine returns the stripe of the calling goroutine. Goroutine stacks are
// separate allocations, so the stack address tells goroutines apart (a
// stack that grows may move to another stripe, which is harmless).
func (t tallies) mine() *tally {
	var probe byte
	h := uint64(uintptr(unsafe.Pointer(&probe))>>10) * 0x9E3779B97F4A7C15 // Fibonacci hashing
	return &t.s[h>>(64-_stripeBits)]
}

// add counts an EmitSync call (or an emit that matched nothing) and what
// its deliveries became.
func (t tallies) add(c *counters) {
	s := t.mine()
	s.emitted.Add(1)
	if c.delivered != 0 {
		s.delivered.Add(c.delivered)
	}
	if c.failed|c.panicked|c.skipped != 0 {
		s.failed.Add(c.failed)
		s.panicked.Add(c.panicked)
		s.skipped.Add(c.skipped)
	}
}

// sum reads every stripe.
func (t tallies) sum() (c counters, rejected uint64) {
	for i := range t.s {
		s := &t.s[i]
		c.emitted += s.emitted.Load()
		c.delivered += s.delivered.Load()
		c.failed += s.failed.Load()
		c.panicked += s.panicked.Load()
		c.skipped += s.skipped.Load()
		c.retried += s.retried.Load()
		rejected += s.rejected.Load()
	}
	return c, rejected
}
