package sched

import "time"

// Retries. A delivery whose attempt returned Retry waits out its backoff
// (Listener.Backoff) on a timer, not on a worker, and then goes back to the
// front of its mailbox. While it waits it stays in the listener's backlog (so it counts
// against the bound) and in its Flush epoch (so Flush and Close wait for
// it); an ordered mailbox is paused meanwhile, to keep its order.

// retryTimer is a delivery waiting out its backoff, in the scheduler's
// min-heap of due times (s.retries). The heap has one time.Timer (s.retryT),
// armed for its earliest due time: a backoff costs no goroutine and no
// timer of its own, and the timer's callback moves every due delivery back
// to its mailbox in one pass under s.mu.
type retryTimer[E, C any] struct {
	due time.Duration // on s's monotonic clock (s.now)
	d   delivery[E, C]
	mb  *mailbox[E, C]
	i   int // index in s.retries
}

// retryHeap is a min-heap of retries by due time; each knows its index.
type retryHeap[E, C any] []*retryTimer[E, C]

func (h retryHeap[E, C]) less(i, j int) bool { return h[i].due < h[j].due }

func (h retryHeap[E, C]) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].i, h[j].i = i, j
}

func (h retryHeap[E, C]) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			return
		}
		h.swap(i, j)
		j = i
	}
}

func (h retryHeap[E, C]) down(i int) {
	n := len(h)
	for {
		j := 2*i + 1
		if j >= n {
			return
		}
		if r := j + 1; r < n && h.less(r, j) {
			j = r
		}
		if !h.less(j, i) {
			return
		}
		h.swap(i, j)
		i = j
	}
}

func (h *retryHeap[E, C]) push(rt *retryTimer[E, C]) {
	rt.i = len(*h)
	*h = append(*h, rt)
	h.up(rt.i)
}

// remove takes the retry at index i out of the heap.
func (h *retryHeap[E, C]) remove(i int) *retryTimer[E, C] {
	old := *h
	n := len(old) - 1
	rt := old[i]
	if i != n {
		old.swap(i, n)
	}
	old[n] = nil
	*h = old[:n]
	if i != n {
		h.down(i)
		h.up(i)
	}
	rt.i = -1
	return rt
}

// now is the scheduler's monotonic clock.
func (s *Scheduler[E, C]) now() time.Duration { return time.Since(s.born) }

// startBackoff schedules d to run again in mb after its backoff, with s.mu
// held. d.attempt counts the attempts that failed.
func (s *Scheduler[E, C]) startBackoff(mb *mailbox[E, C], d delivery[E, C]) {
	wait := mb.in.l.Backoff(d.attempt)
	// A listener unregistered while this attempt ran skips its next one:
	// queue it at once, so that Flush and Close need not wait out a
	// backoff. (Unregister sets Removed before DropRetries takes s.mu, so a
	// retry is either seen here or found in the heap by dropRetries.)
	if wait == 0 || mb.in.l.Removed() { // straight back to the front of the mailbox
		s.push(mb, d, true)
		return
	}
	if !mb.tracked {
		s.track(mb)
	}
	s.backoff++
	mb.backoffs++
	mb.in.backlog++
	rt := &retryTimer[E, C]{due: s.now() + wait, d: d, mb: mb}
	s.retries.push(rt)
	if rt.i == 0 {
		s.armRetries()
	}
}

// armRetries arms the retry timer for the earliest due time, with s.mu
// held, or stops it when no retry waits.
func (s *Scheduler[E, C]) armRetries() {
	if len(s.retries) == 0 {
		s.retryT.stop()
		return
	}
	s.retryT.reset(max(s.retries[0].due-s.now(), 0))
}

// retriesDue is the retry timer's callback: it puts every delivery whose
// backoff has ended back in its mailbox (or abandons it if Close gave up
// meanwhile), and re-arms the timer for the next one.
func (s *Scheduler[E, C]) retriesDue() {
	var lost []lostOne[E, C]
	s.mu.Lock()
	now := s.now()
	aborted := s.aborted.Load()
	for len(s.retries) > 0 && s.retries[0].due <= now {
		rt := s.retries.remove(0)
		s.endBackoff(rt)
		if !aborted {
			s.push(rt.mb, rt.d, true)
			s.makeReady(rt.mb)
			continue
		}
		s.stats.Abandoned++
		s.complete(rt.d.rec.ep)
		lost = s.observeLost(lost, rt.mb, rt.d)
		s.release(&rt.d)
		s.retire(rt.mb)
	}
	if !s.finished {
		s.armRetries()
	}
	if aborted {
		s.finish()
		s.idle = 0
		s.work.Broadcast() // the pool may have drained
	}
	s.verify()
	s.mu.Unlock()
	s.tellLost(lost, LostAbandoned, true)
}

// endBackoff takes rt out of the backoff accounting, with s.mu held; rt is
// already out of the heap.
func (s *Scheduler[E, C]) endBackoff(rt *retryTimer[E, C]) {
	s.backoff--
	rt.mb.backoffs--
	s.shrink(rt.mb.in, 1)
}

// DropRetries skips the deliveries of in that wait out a backoff, once its
// listener is unregistered (Removed reports true): their next attempt would
// be skipped anyway, and Flush and Close need not wait for them. It counts
// them with Listener.Skipped and tells Lost (LostSkipped) on the caller's
// goroutine.
func (s *Scheduler[E, C]) DropRetries(in *Inbox[E, C]) {
	var lost []lostOne[E, C]
	dropped := 0
	s.mu.Lock()
	var mine []*retryTimer[E, C]
	for _, rt := range s.retries {
		if rt.mb.in == in {
			mine = append(mine, rt)
		}
	}
	for _, rt := range mine {
		s.retries.remove(rt.i)
		dropped++
		s.endBackoff(rt)
		s.stats.Skipped++
		s.complete(rt.d.rec.ep)
		lost = s.observeLost(lost, rt.mb, rt.d)
		s.release(&rt.d)
		s.makeReady(rt.mb) // an ordered mailbox no longer waits for it
		s.retire(rt.mb)
	}
	if dropped > 0 {
		s.armRetries()
		s.finish()
		s.idle = 0
		s.work.Broadcast() // the pool may have drained
	}
	if dropped > 0 {
		in.l.Skipped(uint64(dropped)) // under s.mu: see Listener
	}
	s.verify()
	s.mu.Unlock()
	s.tellLost(lost, LostSkipped, false)
}
