package sched

import (
	"cmp"
	"runtime/metrics"
	"slices"
)

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
func (s *Scheduler[E, C]) armWatchdog() {
	if !s.finished {
		s.watchdog.arm(s.stallAfter)
	}
}

// watch is the watchdog timer's callback.
func (s *Scheduler[E, C]) watch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchdog.fired()
	if s.finished {
		return
	}
	waiting := s.ready.len() > 0
	suspects := s.suspects[:0]
	for _, h := range s.hands {
		if !h.running {
			continue
		}
		n := h.next.Load()
		same, progressed := h.takes == h.seenTakes, n != h.seenNext
		h.seenTakes, h.seenNext = h.takes, n
		if !same || progressed {
			h.stuck, h.counted = -1, false
		}
		if !same {
			continue
		}
		if waiting {
			h.yield.Store(true)
		}
		if !h.stalled && !progressed {
			if h.stuck < 0 {
				h.stuck = s.now()
			}
			suspects = append(suspects, h)
		}
	}
	busy, gcs, marking, ok := s.sample()
	if len(suspects) > 0 {
		trusted := ok && s.looks == 2 && gcs == s.gcPrev[1] && !marking && !s.markedPrev
		s.stallBlocked(suspects, busy, trusted, ok)
	}
	s.gcPrev[0], s.gcPrev[1] = gcs, s.gcPrev[0]
	s.markedPrev = marking
	s.looks = min(s.looks+1, 2)
	clear(suspects)
	s.suspects = suspects[:0]
	for s.ready.len() > 0 && s.idle == 0 && s.workers-s.stalled < s.maxLive && s.workers < s.maxWorkers {
		s.start()
	}
	if s.ready.len() > 0 && s.idle == 0 {
		s.armWatchdog()
	}
	s.verify()
}

// stallBlocked stalls the suspects (workers whose handler has not returned
// since the previous look) that are blocked, not computing. It cannot see
// which goroutine is which, so it counts, as the Go runtime's own scheduler
// would: every goroutine of the process that is running or runnable
// (runtime/metrics, less the watchdog's own goroutine: busy) may be a
// computing suspect, so at least len(suspects) minus that many suspects are
// blocked, and that many are counted blocked, longest stuck first.
//
// The count is an instant's, and a handler that allocates waits for the
// garbage collector at times (GC assist), when the metrics count it
// waiting, neither running nor runnable: with the count of one look, 16
// allocating handlers ran 4-5 at once under Options.Workers 2. So a suspect
// counted blocked is stalled at the next look, and only if no GC cycle
// completed between the look before the one that counted it and this one,
// and none was marking at either look (trusted): a cycle starting when it
// was counted (goroutines waiting for its first pause) is marking or done
// by now, and a mark phase in progress then would still be marking or have
// completed. (The marking check alone, stalling at once on a look outside a
// mark phase, let allocating handlers run 6-7 at once under
// Options.Workers 4; the cycle check alone overshot once in 36 runs under
// the whole test suite, whose larger heap makes mark phases longer.) Requiring
// several looks in a row to agree instead made a blocked handler wait up to
// the computeLimit whenever other goroutines computed in bursts. So
// handlers that compute are not replaced (at most Options.Workers of them
// run at once, one more while a replacement starts, as the metrics are
// approximate), while blocked ones are replaced a look after the process
// had a goroutine's worth of CPU for them, when no collection ran around it.
//
// A suspect stuck for computeLimit (200 stall thresholds: a second, by
// default) is stalled in any case: a process whose CPU stays saturated by
// other goroutines, or that collects garbage without pause, cannot hold a
// blocked listener's worker for ever. Without the metrics (ok false: a Go
// toolchain older than 1.26), every suspect is stalled.
func (s *Scheduler[E, C]) stallBlocked(suspects []*hand[E, C], busy int, trusted, ok bool) {
	slices.SortFunc(suspects, func(a, b *hand[E, C]) int { return cmp.Compare(a.stuck, b.stuck) })
	blocked := len(suspects)
	if ok {
		blocked = max(blocked-busy, 0)
	}
	now := s.now()
	for i, h := range suspects {
		if !ok || (h.counted && trusted) || now-h.stuck >= _computeLimit*s.stallAfter {
			s.stall(h)
		}
		h.counted = i < blocked
	}
}

// sample reads, from runtime/metrics, how many goroutines of the process
// run or wait to run, not counting the caller, how many GC cycles have
// completed, and whether one is marking: each completed cycle counts two
// stop-the-world pauses, so more pauses than twice the cycles means one has
// begun (the metrics may lag a pause at a cycle's end: taken as marking
// too). ok is false when the toolchain does not provide them.
func (s *Scheduler[E, C]) sample() (busy int, gcs uint64, marking, ok bool) {
	if s.probe == nil {
		s.probe = []metrics.Sample{
			{Name: "/sched/goroutines/running:goroutines"},
			{Name: "/sched/goroutines/runnable:goroutines"},
			{Name: "/gc/cycles/total:gc-cycles"},
			{Name: "/sched/pauses/total/gc:seconds"},
		}
	}
	metrics.Read(s.probe)
	for _, m := range s.probe[:3] {
		if m.Value.Kind() != metrics.KindUint64 {
			return 0, 0, false, false
		}
	}
	busy = int(s.probe[0].Value.Uint64() + s.probe[1].Value.Uint64())
	gcs = s.probe[2].Value.Uint64()
	if s.probe[3].Value.Kind() == metrics.KindFloat64Histogram {
		var pauses uint64
		for _, n := range s.probe[3].Value.Float64Histogram().Counts {
			pauses += n
		}
		marking = pauses != 2*gcs
	}
	return max(busy-1, 0), gcs, marking, true
}

// stall marks h stalled and hands the deliveries of its batch that it has
// not started back to their mailbox, if another worker may run them.
func (s *Scheduler[E, C]) stall(h *hand[E, C]) {
	h.stalled = true
	s.stalled++
	s.handBack(h)
}

// Idle workers. A worker that has found nothing to do for idleAfter (to
// 2·idleAfter) exits, so an idle bus holds no goroutine; workers start again
// as work arrives. This is a timer too (s.reaper), armed while a worker is
// parked, that ticks every idleAfter: a worker parked before the previous
// tick has been idle for a whole period, and is marked to retire and woken;
// it exits unless work is ready by then. Parking costs no clock read.

// armReaper arms the idle timer unless it is armed, with s.mu held.
func (s *Scheduler[E, C]) armReaper() {
	if !s.finished {
		s.reaper.arm(s.idleAfter)
	}
}

// reap is the idle timer's callback.
func (s *Scheduler[E, C]) reap() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reaper.fired()
	if s.finished {
		return
	}
	s.reapTicks++
	retired, parked := false, false
	for _, h := range s.hands {
		switch {
		case !h.parked || h.retire:
		case h.parkedAt+1 < s.reapTicks:
			h.retire, retired = true, true
		default:
			parked = true
		}
	}
	if retired {
		s.idle = 0
		s.work.Broadcast()
	}
	if parked {
		s.armReaper()
	}
}
