package eventbus

import "time"

// The watchdog keeps waiting listeners from waiting long behind others:
// it replaces workers stuck in a handler, so that listeners that block (for
// seconds, or until released) cannot stop the others, and it bounds batches
// in time, so that a slow listener's long batch does not hide others' work.
//
// It is a timer, not a goroutine: wake arms it when a listener is ready and
// no worker is idle and none may start. When it fires it looks at every
// worker that is running a batch, and compares with its previous look (at
// least stallAfter ago):
//
//   - a worker still on the batch it had then has run it for at least
//     stallAfter: while listeners wait it yields, that is, it starts no more
//     of that batch, and the rest goes back to the front of its mailbox;
//     its listener rejoins the end of the ready list. So a ready listener
//     waits at most about two stall thresholds plus one invocation.
//   - a worker that has not even started another delivery since is stalled
//     (its handler blocks, or computes; see blocked): its unstarted
//     deliveries go back to their mailbox, and workers are started in place
//     of the stalled ones, up to maxLive unstalled and maxWorkers in all.
//
// The timer re-arms itself while a listener is still ready and no worker is
// idle. A listener holds at most its limit of workers, stalled ones
// included, so one blocked listener cannot take the workers the watchdog
// starts.

// armWatchdog arms the timer unless it is armed, with s.mu held.
func (s *scheduler[T]) armWatchdog() {
	if s.watching || s.finished {
		return
	}
	s.watching = true
	if s.watchdog == nil {
		s.watchdog = time.AfterFunc(s.stallAfter, s.watch)
		return
	}
	s.watchdog.Reset(s.stallAfter)
}

// watch is the watchdog timer's callback.
func (s *scheduler[T]) watch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watching = false
	if s.finished {
		return
	}
	waiting := s.ready.len() > 0
	for _, h := range s.hands {
		if !h.running {
			continue
		}
		n := h.next.Load()
		same, progressed := h.takes == h.seenTakes, n != h.seenNext
		h.seenTakes, h.seenNext = h.takes, n
		if !same {
			continue
		}
		if waiting {
			h.yield.Store(true)
		}
		if !h.stalled && !progressed {
			s.stall(h)
		}
	}
	for s.ready.len() > 0 && s.idle == 0 && s.workers-s.stalled < s.maxLive && s.workers < s.maxWorkers {
		s.start()
	}
	if s.ready.len() > 0 && s.idle == 0 {
		s.armWatchdog()
	}
	s.verify()
}

// stall marks h stalled and hands the deliveries of its batch that it has
// not started back to their mailbox, if another worker may run them.
func (s *scheduler[T]) stall(h *hand[T]) {
	h.stalled = true
	s.stalled++
	s.handBack(h)
}

// Idle workers. A worker that has found nothing to do for idleAfter exits,
// so an idle bus holds no goroutine; workers start again as work arrives.
// This is a timer too (s.reaper), armed while a worker is parked: when it
// fires it marks the workers parked for idleAfter (retire) and wakes them;
// a marked worker exits unless work is ready by then. It re-arms itself for
// the next parked worker's deadline.

// armReaper arms the idle timer unless it is armed, with s.mu held.
func (s *scheduler[T]) armReaper() {
	if s.reaping || s.finished {
		return
	}
	s.reaping = true
	if s.reaper == nil {
		s.reaper = time.AfterFunc(s.idleAfter, s.reap)
		return
	}
	s.reaper.Reset(s.idleAfter)
}

// reap is the idle timer's callback.
func (s *scheduler[T]) reap() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reaping = false
	if s.finished {
		return
	}
	now := s.now()
	next := time.Duration(-1)
	retired := false
	for _, h := range s.hands {
		if !h.parked || h.retire {
			continue
		}
		if left := h.idleSince + s.idleAfter - now; left > 0 {
			if next < 0 || left < next {
				next = left
			}
			continue
		}
		h.retire, retired = true, true
	}
	if retired {
		s.idle = 0
		s.work.Broadcast()
	}
	if next >= 0 {
		s.reaping = true
		s.reaper.Reset(next)
	}
}
