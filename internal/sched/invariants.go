package sched

import "fmt"

// verify checks the scheduler's invariants (see sched.go) when s.check is
// set, which only tests do; s.mu must be held. It panics on a broken one,
// so that a rare race becomes a failing test with a stack.
//
// The full walk costs O(mailboxes + workers): with many busy mailboxes (an
// keyed listener over thousands of keys) it runs on every 64th step.
func (s *Scheduler[E, C]) verify() {
	if s.check {
		s.verifyNow()
	}
}

// verifyNow is verify's walk, out of line so that verify inlines: with
// checks off, an accounting step pays a load and a branch.
func (s *Scheduler[E, C]) verifyNow() {
	s.checks++
	if s.tracked > 64 && s.checks%64 != 0 {
		return
	}
	if err := s.checkInvariants(); err != nil {
		panic(err)
	}
}

func (s *Scheduler[E, C]) checkInvariants() error {
	queued, backoffs := 0, 0
	backlog := map[*Inbox[E, C]]int{}
	active := map[*Inbox[E, C]]int{}
	for mb := s.busy; mb != nil; mb = mb.next {
		if !mb.tracked {
			return fmt.Errorf("sched: invariant: mailbox in the busy list is not tracked")
		}
		in := mb.in
		queued += mb.q.len()
		backoffs += mb.backoffs
		backlog[in] += mb.q.len() + mb.backoffs
		active[in] += mb.active
		if mb.keyed && mb.active > 1 {
			return fmt.Errorf("sched: invariant: key %q of listener %q runs %d batches", mb.key, in.name, mb.active)
		}
		if !mb.keyed && mb.queued {
			return fmt.Errorf("sched: invariant: unkeyed mailbox marked queued")
		}
	}
	if queued != s.queued || backoffs != s.backoff || s.backoff != len(s.retries) {
		return fmt.Errorf("sched: invariant: queued %d (mailboxes hold %d), backoff %d (mailboxes %d, retries %d)", s.queued, queued, s.backoff, backoffs, len(s.retries))
	}
	for i, rt := range s.retries {
		if rt.i != i || (i > 0 && s.retries.less(i, (i-1)/2)) {
			return fmt.Errorf("sched: invariant: retry heap broken at %d", i)
		}
	}
	for in, n := range backlog {
		if in.backlog != n {
			return fmt.Errorf("sched: invariant: listener %q backlog %d, its mailboxes hold %d", in.name, in.backlog, n)
		}
		if in.active != active[in] || in.active > in.limit {
			return fmt.Errorf("sched: invariant: listener %q active %d, its mailboxes run %d, limit %d", in.name, in.active, active[in], in.limit)
		}
		keys := map[*mailbox[E, C]]bool{}
		for i := range in.ready.len() {
			mb := in.ready.buf[(in.ready.head+i)&(len(in.ready.buf)-1)]
			if keys[mb] || !mb.queued || !mb.keyed || mb.in != in || !mb.tracked {
				return fmt.Errorf("sched: invariant: listener %q: key in its ready list twice, not marked, or not its own", in.name)
			}
			keys[mb] = true
		}
	}
	held, parked := 0, 0
	for _, h := range s.hands {
		held += h.held
		if h.parked {
			parked++
		}
		if (h.retire && !h.parked) || (h.parked && h.running) {
			return fmt.Errorf("sched: invariant: worker parked %v, retiring %v, running %v", h.parked, h.retire, h.running)
		}
	}
	if s.idle > parked {
		// Each worker counted in s.idle waits on s.work and is marked
		// parked; a wake takes one out of the count as it signals it
		// (with s.mu held), a Broadcast takes them all.
		return fmt.Errorf("sched: invariant: %d idle workers counted, %d parked", s.idle, parked)
	}
	if held != s.running {
		return fmt.Errorf("sched: invariant: running %d, hands hold %d", s.running, held)
	}
	pending := s.cur.pending
	for i := range s.sealed.len() {
		pending += s.sealed.buf[(s.sealed.head+i)&(len(s.sealed.buf)-1)].pending
	}
	if s.refs != s.queued+s.running+s.backoff {
		return fmt.Errorf("sched: invariant: records referenced %d times, queued+running+backoff %d", s.refs, s.queued+s.running+s.backoff)
	}
	if pending != s.queued+s.running+s.backoff {
		return fmt.Errorf("sched: invariant: epochs pending %d, queued+running+backoff %d", pending, s.queued+s.running+s.backoff)
	}
	seen := map[*Inbox[E, C]]bool{}
	for i := range s.ready.len() {
		in := s.ready.buf[(s.ready.head+i)&(len(s.ready.buf)-1)]
		if seen[in] || !in.queued || in.active >= in.limit {
			return fmt.Errorf("sched: invariant: listener %q in the ready list twice, not marked queued, or at its limit (%d of %d)", in.name, in.active, in.limit)
		}
		seen[in] = true
	}
	if s.stalled < 0 || s.stalled > s.workers || s.workers > s.maxWorkers || len(s.hands) != s.workers {
		return fmt.Errorf("sched: invariant: %d workers (%d hands), %d stalled, at most %d", s.workers, len(s.hands), s.stalled, s.maxWorkers)
	}
	return nil
}
