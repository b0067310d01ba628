package eventbus

import (
	"sync/atomic"
	"unsafe"
)

// Stats is a snapshot of an EventManager's counters. Every delivery is
// accounted for: one per emitted event and matching listener, so
//
//	Matched == Delivered + Failed + Panicked + Skipped + Dropped + Abandoned + Queued + Running
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
	Dropped   uint64 // deliveries dropped by a full backlog's drop policy (OverflowDropNewest, OverflowDropOldest)
	Abandoned uint64 // deliveries dropped because Close's context ended first
	Retried   uint64 // failed attempts that were run again (Retry); not deliveries
	Queued    int    // deliveries waiting now, including those waiting out a retry backoff
	Running   int    // deliveries running now on the pool
	Listeners int    // listeners registered now
	Workers   int    // worker goroutines now, stalled ones included
	Stalled   int    // workers whose handler has run long enough to be replaced (see WithWorkers)
}

// ListenerStats is a snapshot of one listener's counters.
type ListenerStats struct {
	Name      string // the listener's name (see Name), to tell listeners apart
	Delivered uint64 // invocations that returned nil
	Failed    uint64 // deliveries that failed with an error (after any retries)
	Panicked  uint64 // deliveries that panicked (after any retries)
	Skipped   uint64 // deliveries not run because it was unregistered (or Once had fired)
	Retried   uint64 // failed attempts that were run again
	Dropped   uint64 // deliveries dropped by its overflow policy
	// Pending is the listener's backlog now: deliveries waiting to run,
	// including those waiting out a retry backoff (see WithQueueSize).
	Pending int
}

// counters are plain: the pool's are guarded by its mutex, and a worker or
// EmitSync fills its own before adding them in one go.
type counters struct {
	emitted, matched, delivered, failed, panicked, skipped, dropped, abandoned, retried uint64
}

func (c *counters) add(o *counters) {
	c.emitted += o.emitted
	c.matched += o.matched
	c.delivered += o.delivered
	c.failed += o.failed
	c.panicked += o.panicked
	c.skipped += o.skipped
	c.dropped += o.dropped
	c.abandoned += o.abandoned
	c.retried += o.retried
}

// deliveredTo counts a delivery to l that succeeded.
func (c *counters) deliveredTo(l *Listener) {
	c.delivered++
	l.counts.add(cDelivered, 1)
}

// tallies are atomic counters that spread over cache lines once they are
// contended. They start as one line (base); the first time an add finds
// another goroutine adding at the same moment (a failed compare-and-swap),
// they switch to _stripes lines, each goroutine adding to the one its stack
// address picks, so that goroutines on different cores rarely write the same
// line. Readers sum base and the stripes.
type tallies struct {
	base    tally
	striped atomic.Pointer[[_stripes]tally]
}

// tally is one cache line of counters.
type tally struct {
	n [_counters]atomic.Uint64
	_ [64 - 8*_counters]byte
}

type counter int

const (
	cEmitted counter = iota
	cDelivered
	cFailed
	cPanicked
	cSkipped
	cRetried
	cRejected
	cDropped
	_counters
)

const (
	_stripeBits = 5
	_stripes    = 1 << _stripeBits
)

// add adds n to counter i. The uncontended case is small enough to be
// inlined: one load of the stripes pointer, one compare-and-swap.
func (t *tallies) add(i counter, n uint64) {
	if t.striped.Load() == nil {
		x := &t.base.n[i]
		if old := x.Load(); x.CompareAndSwap(old, old+n) {
			return
		}
	}
	t.addStriped(i, n)
}

// addStriped adds n to counter i in the stripe of the calling goroutine,
// making the stripes first if they are not there.
func (t *tallies) addStriped(i counter, n uint64) {
	s := t.striped.Load()
	if s == nil {
		t.striped.CompareAndSwap(nil, new([_stripes]tally))
		s = t.striped.Load()
	}
	var probe byte                                                        // goroutine stacks are separate, so its address tells goroutines apart
	h := uint64(uintptr(unsafe.Pointer(&probe))>>10) * 0x9E3779B97F4A7C15 // Fibonacci hashing
	s[h>>(64-_stripeBits)].n[i].Add(n)
}

// addCall counts an EmitSync call and what its deliveries became.
func (t *tallies) addCall(c *counters) {
	t.add(cEmitted, 1)
	if c.delivered != 0 {
		t.add(cDelivered, c.delivered)
	}
	if c.failed != 0 {
		t.add(cFailed, c.failed)
	}
	if c.panicked != 0 {
		t.add(cPanicked, c.panicked)
	}
	if c.skipped != 0 {
		t.add(cSkipped, c.skipped)
	}
}

// sum reads every counter.
func (t *tallies) sum() (c counters, rejected uint64) {
	var n [_counters]uint64
	read := func(l *tally) {
		for i := range l.n {
			n[i] += l.n[i].Load()
		}
	}
	read(&t.base)
	if s := t.striped.Load(); s != nil {
		for i := range s {
			read(&s[i])
		}
	}
	c = counters{emitted: n[cEmitted], delivered: n[cDelivered], failed: n[cFailed],
		panicked: n[cPanicked], skipped: n[cSkipped], retried: n[cRetried], dropped: n[cDropped]}
	return c, n[cRejected]
}
