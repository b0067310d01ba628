package eventbus

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Stats is a snapshot of an EventManager's counters. Every delivery is
// accounted for: one per emitted event and matching listener, so
//
//	Matched == Delivered + Failed + Panicked + Skipped + Dropped + Abandoned + Queued + Running
//
// The equation holds for every snapshot, even while events are emitted: the
// pool's counters are read together under its lock, and an EmitSync call
// counts each of its deliveries under its outcome as the call returns, and
// Matched as their sum, so a call in progress is in none of them yet. Every
// counter but the gauges (Queued, Running, Listeners, Workers, Stalled) only
// grows: no snapshot shows a smaller count than an earlier one, so they can
// be exported as monotonic counters.
type Stats struct {
	Emitted   uint64 // events accepted by Emit, TryEmit and EmitSync, matched or not
	Matched   uint64 // deliveries those events made: one per event and matching listener
	Delivered uint64 // deliveries whose handler returned nil
	Failed    uint64 // deliveries whose handler returned an error (after any retries)
	Panicked  uint64 // deliveries whose handler panicked (after any retries)
	Rejected  uint64 // emits refused: invalid name, type mismatch, closed, queue full or context done
	Skipped   uint64 // deliveries not run: the listener was unregistered, or a Once listener had fired
	Dropped   uint64 // deliveries dropped by a full backlog's drop policy (OverflowDropNewest, OverflowDropOldest)
	Abandoned uint64 // deliveries dropped because Close's context ended first
	// Retried counts failed attempts followed by a retry (Retry):
	// attempts, not deliveries. It counts when the retry is scheduled, so
	// a retry that Unregister skips or Close abandons counts too (its
	// delivery also counts as Skipped or Abandoned).
	Retried   uint64
	Queued    int // deliveries waiting now, including those waiting out a retry backoff
	Running   int // deliveries running now on the pool
	Listeners int // listeners registered now
	Workers   int // worker goroutines now, stalled ones included
	Stalled   int // workers whose handler has run long enough to be replaced (see WithWorkers)
}

// ListenerStats is a snapshot of one listener's counters. A delivery made
// by Emit is counted once its worker has accounted for the batch it was in,
// which is before a Flush that waits for it returns.
type ListenerStats struct {
	Name      string // the listener's name (see Name), to tell listeners apart
	Delivered uint64 // invocations that returned nil
	Failed    uint64 // deliveries that failed with an error (after any retries)
	Panicked  uint64 // deliveries that panicked (after any retries)
	Skipped   uint64 // deliveries not run because it was unregistered (or Once had fired)
	Retried   uint64 // failed attempts followed by a retry, counted when the retry is scheduled (see Stats.Retried)
	Dropped   uint64 // deliveries dropped by its overflow policy
	// Pending is the listener's backlog now: deliveries waiting to run,
	// including those waiting out a retry backoff (see WithQueueSize).
	Pending int
}

// counters are plain: EmitSync fills its own before adding them to its
// tallies in one go (the pool counts its own deliveries: sched.Counters).
type counters struct {
	emitted, delivered, failed, panicked, skipped, dropped, retried uint64
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

	// cSole, in a Listener's tallies (which count no emits), counts the
	// EmitSync calls that delivered to it as their one listener: see
	// soleDelivered.
	cSole = cEmitted
)

const (
	_stripeBits = 5
	_stripes    = 1 << _stripeBits
)

// add adds n to counter i. The uncontended case is one load of the
// stripes pointer, one load and one compare-and-swap. (It is not inlined:
// the inliner puts its cost at 108, over the budget of 80.)
func (t *tallies) add(i counter, n uint64) {
	if !t.addBase(i, n) {
		t.addStriped(i, n)
	}
}

// addBase adds n to counter i in base and reports true, unless the tallies
// are striped or another goroutine adds at the same moment. It is small
// enough to be inlined, where add is not: a caller on a hot path calls it,
// and addStriped if it fails.
func (t *tallies) addBase(i counter, n uint64) bool {
	if t.striped.Load() != nil {
		return false
	}
	x := &t.base.n[i]
	old := x.Load()
	return x.CompareAndSwap(old, old+n)
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

// read returns counter i.
func (t *tallies) read(i counter) uint64 {
	n := t.base.n[i].Load()
	if s := t.striped.Load(); s != nil {
		for j := range s {
			n += s[j].n[i].Load()
		}
	}
	return n
}

// addFailures counts what became of the deliveries of an EmitSync call
// that were not delivered (callTally counts the call and its deliveries).
func (t *tallies) addFailures(c *counters) {
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

// callTally counts EmitSync calls and their delivered deliveries (but for
// calls with one listener, which the listener counts: see soleDelivered)
// with one atomic add per call, where two counters would take two: each
// stripe holds both in one word, calls in the high half and delivered
// deliveries in the low half, and a stripe is folded into the wide counters
// by the add that takes either half past 2³¹, long before it could carry
// into the other. A goroutine adds to the stripe its stack address picks
// (as tallies do once contended), so emitters on different cores rarely
// share a line.
//
// A reader sums the wide counters and the stripes. So that it never sees a
// fold half done (the stripe emptied and the wide counters not yet added
// to: a count that went down), folds take turns on folding, a sequence
// number that is odd while one is under way, and a reader retries until it
// read everything between two loads of the same even number. Adds do not
// touch it: a fold happens once in two billion calls of a stripe.
type callTally struct {
	calls, delivered atomic.Uint64 // folded
	folding          atomic.Uint64 // odd while a fold is under way
	_                [40]byte
	stripes          [_stripes]struct {
		v atomic.Uint64
		_ [56]byte
	}
}

const _foldAt = 1 << 31

// add counts one call that delivered n deliveries.
func (t *callTally) add(n uint64) {
	var probe byte
	h := uint64(uintptr(unsafe.Pointer(&probe))>>10) * 0x9E3779B97F4A7C15
	s := &t.stripes[h>>(64-_stripeBits)].v
	if v := s.Add(1<<32 | n); v>>32 >= _foldAt || uint32(v) >= _foldAt {
		t.fold(s)
	}
}

// fold moves a stripe's counts to the wide counters, unless another add
// already has, waiting for a fold of another stripe to end first. It is
// kept out of add, which calls it once in two billion calls.
//
//go:noinline
func (t *callTally) fold(s *atomic.Uint64) {
	for {
		seq := t.folding.Load()
		if seq&1 != 0 {
			runtime.Gosched() // another fold: a few atomic operations
			continue
		}
		if v := s.Load(); v>>32 < _foldAt && uint32(v) < _foldAt {
			return
		}
		if !t.folding.CompareAndSwap(seq, seq+1) {
			continue
		}
		v := s.Swap(0)
		t.calls.Add(v >> 32)
		t.delivered.Add(uint64(uint32(v)))
		t.folding.Store(seq + 2)
		return
	}
}

// sum returns the calls and delivered deliveries counted, read while no
// fold was under way.
func (t *callTally) sum() (calls, delivered uint64) {
	for {
		seq := t.folding.Load()
		if seq&1 == 0 {
			calls, delivered = t.calls.Load(), t.delivered.Load()
			for i := range t.stripes {
				v := t.stripes[i].v.Load()
				calls += v >> 32
				delivered += uint64(uint32(v))
			}
			if t.folding.Load() == seq {
				return calls, delivered
			}
		}
		runtime.Gosched()
	}
}
