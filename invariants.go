package eventbus

import "fmt"

// verify checks the scheduler's invariants (see sched.go) when s.check is
// set, which only tests do; s.mu must be held. It panics on a broken one,
// so that a rare race becomes a failing test with a stack.
//
// The full walk costs O(mailboxes + workers): with many busy mailboxes (an
// OrderedBy listener over thousands of keys) it runs on every 64th step.
func (s *scheduler[T]) verify() {
	if !s.check {
		return
	}
	s.checks++
	if s.tracked > 64 && s.checks%64 != 0 {
		return
	}
	if err := s.checkInvariants(); err != nil {
		panic(err)
	}
}

func (s *scheduler[T]) checkInvariants() error {
	queued, backoffs := 0, 0
	backlog := map[*inbox[T]]int{}
	active := map[*inbox[T]]int{}
	gated := map[*gate[T]]int{}
	for mb := s.busy; mb != nil; mb = mb.next {
		if !mb.tracked {
			return fmt.Errorf("eventbus: invariant: mailbox in the busy list is not tracked")
		}
		queued += mb.q.len()
		backoffs += mb.backoffs
		backlog[mb.in] += mb.q.len() + mb.backoffs
		active[mb.in] += mb.active
		if mb.active > mb.in.limit {
			return fmt.Errorf("eventbus: invariant: mailbox runs %d batches, limit %d", mb.active, mb.in.limit)
		}
		if g := mb.in.gate; g != nil && mb.active > 0 {
			gated[g]++
		}
	}
	if queued != s.queued || backoffs != s.backoff || s.backoff != len(s.timers) {
		return fmt.Errorf("eventbus: invariant: queued %d (mailboxes hold %d), backoff %d (mailboxes %d, timers %d)", s.queued, queued, s.backoff, backoffs, len(s.timers))
	}
	for in, n := range backlog {
		if in.backlog != n {
			return fmt.Errorf("eventbus: invariant: listener %q backlog %d, its mailboxes hold %d", in.e.pattern, in.backlog, n)
		}
		if in.active != active[in] {
			return fmt.Errorf("eventbus: invariant: listener %q active %d, its mailboxes run %d", in.e.pattern, in.active, active[in])
		}
	}
	for g, n := range gated {
		if g.active != n {
			return fmt.Errorf("eventbus: invariant: gate active %d, %d keys running", g.active, n)
		}
	}
	held := 0
	for _, h := range s.hands {
		held += h.held
	}
	if held != s.running {
		return fmt.Errorf("eventbus: invariant: running %d, hands hold %d", s.running, held)
	}
	pending := s.cur.pending
	for i := range s.sealed.len() {
		pending += s.sealed.buf[(s.sealed.head+i)&(len(s.sealed.buf)-1)].pending
	}
	if s.refs != s.queued+s.running+s.backoff {
		return fmt.Errorf("eventbus: invariant: records referenced %d times, queued+running+backoff %d", s.refs, s.queued+s.running+s.backoff)
	}
	if pending != s.queued+s.running+s.backoff {
		return fmt.Errorf("eventbus: invariant: epochs pending %d, queued+running+backoff %d", pending, s.queued+s.running+s.backoff)
	}
	seen := map[*mailbox[T]]bool{}
	for i := range s.ready.len() {
		mb := s.ready.buf[(s.ready.head+i)&(len(s.ready.buf)-1)]
		if seen[mb] || !mb.queued {
			return fmt.Errorf("eventbus: invariant: mailbox in the ready list twice, or not marked queued")
		}
		seen[mb] = true
	}
	if s.stalled < 0 || s.stalled > s.workers || s.workers > s.maxWorkers || len(s.hands) != s.workers {
		return fmt.Errorf("eventbus: invariant: %d workers (%d hands), %d stalled, at most %d", s.workers, len(s.hands), s.stalled, s.maxWorkers)
	}
	return nil
}
