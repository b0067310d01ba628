package sched

import "context"

// Shutdown.
//
// close sets closed under s.mu, so that every emit that takes the lock
// after it sees it, and wakes the emitters waiting for room (they then fail
// with ErrClosed) and the idle workers (they exit once nothing is left).
// While closed but not aborted, the pool drains: workers keep running what
// is queued and accept the emits of the handlers they run (admit.go), so a
// cascade of follow-up events completes; retries keep their timers. When
// nothing is queued, running or backing off, the last worker to leave
// closes done (finish). If Close's context ends first, abort drops what is
// left and cancels the running listeners' contexts.

// Close waits, after SetClosed, until every accepted delivery is finished
// and every worker goroutine and timer callback has taken its last step
// (s.gone), or until ctx is done: then it abandons what
// has not started, tells Lost (LostAbandoned) on the caller's goroutine,
// and returns ctx.Err() with how many deliveries it abandoned and how many
// were in workers' hands. On a worker of s it does not wait (it would wait
// for itself): it returns ErrReentrant.
func (s *Scheduler[E, C]) Close(ctx context.Context) (abandoned uint64, running int, err error) {
	var who caller
	if who.get() == any(s) {
		return 0, 0, ErrReentrant
	}
	select {
	case <-s.done: // finished, even after a Close that gave up: nothing to abandon
	default:
		if s.finishing() {
			// Nothing is left to abandon, and the workers leave without
			// running anything: done, whatever ctx says. (A select on
			// both channels picked either at random when ctx was done
			// already.)
			<-s.done
			break
		}
		select {
		case <-s.done:
		case <-ctx.Done():
			n, running, lost := s.abort()
			s.tellLost(lost, LostAbandoned, false)
			return n, running, ctx.Err()
		}
	}
	// Nothing is left and every worker has left the pool; wait for their
	// goroutines' last steps (and any timer callback still running), so
	// that none is left when Close returns.
	s.gone.Wait()
	return 0, 0, nil
}

// finishing reports whether s, closed, has nothing left to run: no
// delivery queued, running or backing off, and Close has not given up.
// Then no code of the listeners (nor of an Observer, nor Options.Report)
// runs again on the pool: each worker, parked or done with its last batch,
// leaves as soon as it takes the lock, and done is closed, or about to be,
// whatever Close's context says.
func (s *Scheduler[E, C]) finishing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed.Load() && !s.aborted.Load() && s.drained()
}

// SetClosed marks s closed: from then on Accept fails with ErrClosed but
// on s's workers while Close has not given up. The caller may hold its own
// lock (the eventbus holds its registry's: lock order, that lock, then
// s.mu), to make the closing final against its own registrations.
func (s *Scheduler[E, C]) SetClosed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed.Load() {
		s.closed.Store(true)
		close(s.closing)
		s.finish()
		s.idle = 0
		s.work.Broadcast()
	}
}

// abort drops everything queued or backing off, counts it as abandoned and
// cancels the contexts of running listeners. Workers abandon the rest of the
// batch in their hands, so the count it returns is a lower bound; Stats has
// the final one.
func (s *Scheduler[E, C]) abort() (abandoned uint64, running int, lost []lostOne[E, C]) {
	s.aborted.Store(true)
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.stats.Abandoned
	for s.ready.len() > 0 {
		s.ready.pop().queued = false
	}
	for mb := s.busy; mb != nil; mb = mb.next {
		for in := mb.in; in.ready.len() > 0; {
			in.ready.pop().queued = false
		}
	}
	for mb := s.busy; mb != nil; mb = mb.next {
		for mb.q.len() > 0 {
			d := mb.q.pop()
			s.queued--
			s.shrink(mb.in, 1)
			s.stats.Abandoned++
			s.complete(d.rec.ep)
			lost = s.observeLost(lost, mb, d)
			s.release(&d)
		}
	}
	for len(s.retries) > 0 {
		rt := s.retries.remove(len(s.retries) - 1)
		s.endBackoff(rt)
		s.stats.Abandoned++
		s.complete(rt.d.rec.ep)
		lost = s.observeLost(lost, rt.mb, rt.d)
		s.release(&rt.d)
	}
	s.armRetries() // stops the timer
	for mb := s.busy; mb != nil; {
		next := mb.next
		s.retire(mb)
		mb = next
	}
	s.finish()
	s.idle = 0
	s.work.Broadcast()
	s.verify()
	return s.stats.Abandoned - before, s.running, lost
}

// finish closes done, once, when Close has been called and nothing is left:
// no worker, and no delivery queued, running or backing off. s.mu must be
// held. (Workers can all be gone with a retry still backing off, after a
// handler called runtime.Goexit; the retry then starts a new one.)
func (s *Scheduler[E, C]) finish() {
	if s.closed.Load() && !s.finished && s.workers == 0 && s.drained() {
		s.finished = true
		close(s.done)
		s.watchdog.stop()
		s.retryT.stop()
		s.reaper.stop()
	}
}
