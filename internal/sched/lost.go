package sched

// Lost deliveries. A delivery that will not run (dropped, abandoned, or
// skipped while it waited out a backoff) is described under s.mu, copied out
// of its record, and told to its Listener once s.mu is released.

// lostOne is a delivery that will not run, as its listener is told of it.
type lostOne[E, C any] struct {
	in      *Inbox[E, C]
	named   *C
	ev      E
	attempt int
	at      int64
	backlog int   // for a drop: the backlog it was dropped from
	err     error // for a drop: what Listener.Dropped returned, to report
}

// lostOf describes d, a delivery of in, with s.mu held, before its record
// is released.
func (s *Scheduler[E, C]) lostOf(in *Inbox[E, C], d delivery[E, C]) lostOne[E, C] {
	return lostOne[E, C]{in: in, named: d.named, ev: d.rec.ev, attempt: d.attempt, at: d.rec.at}
}

// observeLost appends d's description to lost when the scheduler is
// Observed, with s.mu held.
func (s *Scheduler[E, C]) observeLost(lost []lostOne[E, C], mb *mailbox[E, C], d delivery[E, C]) []lostOne[E, C] {
	if !s.observed {
		return lost
	}
	return append(lost, s.lostOf(mb.in, d))
}

// tellLost tells the listeners of ds, when the scheduler is Observed, that
// those deliveries will not run; onPool says the caller is one of the pool's
// own goroutines. s.mu must not be held.
func (s *Scheduler[E, C]) tellLost(ds []lostOne[E, C], why Loss, onPool bool) {
	if !s.observed {
		return
	}
	for i := range ds {
		d := &ds[i]
		d.in.l.Lost(d.named, d.ev, d.attempt, d.at, why, onPool)
	}
}
