package sched

import "fmt"

// Event records. An event accepted for n listeners is written once, in a
// record that its n deliveries share; each listener's mailbox holds only a
// small delivery (the record, the listener's own context when the emit's
// carries values, and its attempt count). Accept's cost per listener is
// then a 24-byte store into that listener's ring instead of a 64-byte one
// (for an eventbus Event[int]): profiling Emit to 10 listeners put 38% of
// the CPU on that store, one cache-line transfer per delivery from the
// worker that had emptied the ring. A record is recycled, not collected: it counts the
// deliveries not yet finished (refs, guarded by s.mu), and the last one to
// finish (run, skipped, dropped or abandoned; a retry keeps its delivery's
// reference) puts it back in the scheduler's free list, cleared so that it
// holds no event data.

// record is an accepted event, shared by its deliveries.
type record[E any] struct {
	ev   E
	ep   *epoch // the Flush epoch it was accepted in
	at   int64  // when accepted, in Unix nanoseconds, if observed (else 0)
	refs int    // its deliveries not yet finished; guarded by s.mu
}

// The free list keeps every record that was ever needed: their number is
// the most that were in use at once, which the listeners' backlog bounds
// (each record is referenced by a delivery queued, running or backing off),
// as the mailboxes' rings keep the capacity they grew to. Trimming it when
// the pool drains made a backlog that empties and refills (an emitter
// descheduled for a moment) allocate a record per event again.

// newRecord returns a cleared record, with s.mu held.
func (s *Scheduler[E, C]) newRecord() *record[E] {
	if n := len(s.free); n > 0 {
		r := s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
		return r
	}
	return &record[E]{}
}

// recycle keeps a record that no delivery refers to, with s.mu held.
func (s *Scheduler[E, C]) recycle(r *record[E]) {
	*r = record[E]{}
	s.free = append(s.free, r)
}

// release finishes d's share of its record, with s.mu held: call it once
// per delivery, when the delivery is finished, after the last use of
// d.rec. The last share recycles the record (no call but recycle's,
// inlined).
func (s *Scheduler[E, C]) release(d *delivery[E, C]) {
	r := d.rec
	s.refs--
	if r.refs--; r.refs <= 0 {
		if r.refs < 0 {
			s.overReleased()
			return
		}
		s.recycle(r)
	}
}

// overReleased reports a record released more times than it was delivered
// (tests only: a broken invariant).
func (s *Scheduler[E, C]) overReleased() {
	if s.check {
		panic(fmt.Errorf("sched: invariant: record released more times than it was delivered"))
	}
}
