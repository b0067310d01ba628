package sched

import "context"

// Flush epochs. Every delivery belongs to the epoch that was current when it
// was accepted, and stays pending in it through retries until it is
// finished (run, skipped, dropped or abandoned). Flush seals the current
// epoch and waits until it and every older epoch have no pending delivery;
// later emits go to a new epoch, so they never hold up an earlier Flush.

// epoch groups the deliveries accepted between two Flush calls.
type epoch struct {
	pending int
	done    chan struct{} // made when sealed by Flush; closed when this and every older epoch are done
}

// complete marks one delivery of epoch ep finished, with s.mu held.
func (s *Scheduler[E, C]) complete(ep *epoch) { s.completeN(ep, 1) }

// completeN marks n deliveries of epoch ep finished, with s.mu held.
func (s *Scheduler[E, C]) completeN(ep *epoch, n int) {
	ep.pending -= n
	if ep.pending == 0 && ep.done != nil {
		s.advance()
	}
}

// advance closes the done channel of every sealed epoch that is finished
// and has no unfinished older epoch.
func (s *Scheduler[E, C]) advance() {
	for s.sealed.len() > 0 {
		ep := s.sealed.buf[s.sealed.head]
		if ep.pending > 0 {
			return
		}
		s.sealed.pop()
		close(ep.done)
	}
}

// Flush waits until every delivery accepted before the call is finished,
// or until ctx is done (it then returns ctx.Err()). On a worker of s it
// would wait for itself, so it returns ErrReentrant at once.
func (s *Scheduler[E, C]) Flush(ctx context.Context) error {
	var who caller
	if who.get() == any(s) {
		return ErrReentrant
	}
	s.mu.Lock()
	old := s.cur
	if old.pending == 0 && s.sealed.len() == 0 {
		s.mu.Unlock()
		return nil
	}
	old.done = make(chan struct{})
	s.sealed.push(old)
	s.cur = &epoch{}
	s.advance()
	s.mu.Unlock()
	select {
	case <-old.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
