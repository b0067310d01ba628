package sched

import (
	"slices"
	"sync/atomic"
	"time"
)

// Workers.
//
// A worker takes a batch from the mailbox at the head of the ready list
// under s.mu (one lock round trip for up to _batchSize deliveries of one
// listener), runs it without the lock, and accounts for it under the lock.
// Its listener runs the batch if it takes it (Listener.RunBatch, batch.go);
// otherwise the worker does, with one Listener.Deliver call per delivery
// (deliverEach). Either way it claims the deliveries of
// its batch one at a time with an atomic counter before starting each, so
// that the watchdog, or an idle worker, can hand the ones it has not
// started back to the mailbox if it stalls (watchdog.go, steal); and it
// honours the watchdog's yield and Close giving up between deliveries.
// Accounting completes the finished deliveries' epochs, and releases their
// records, per run of deliveries (finishRun).

// hand is a worker's batch and state.
type hand[E, C any] struct {
	// Set under s.mu when the batch is taken, reset under s.mu when it is
	// accounted for; the owner reads them without the lock in between.
	mb    *mailbox[E, C]
	batch []delivery[E, C]
	units int32
	// next is the next delivery of batch to claim: the owner claims one at
	// a time (Add), the watchdog claims the rest of a stalled batch (Swap).
	next atomic.Int32
	// yield is set by the watchdog when the batch has run for a stall
	// threshold while other listeners wait: the owner starts no more of it,
	// and the rest goes back to the mailbox.
	yield atomic.Bool

	// Guarded by s.mu.
	goid      uint64 // the worker goroutine's ID
	running   bool   // a batch is taken and not yet accounted for
	stalled   bool   // counted in s.stalled
	held      int    // deliveries of the batch counted in s.running
	takes     uint64 // batches taken, for the watchdog
	seenTakes uint64 // takes and next at the watchdog's last look
	seenNext  int32
	stuck     time.Duration // since when (s.now) the watchdog finds this batch with no progress; -1: it progresses
	counted   bool          // the previous look counted it blocked (see stallBlocked)
	parked    bool          // idle, with nothing taken since it parked
	parkedAt  uint64        // s.reapTicks when it parked
	retire    bool          // idle for idleAfter: exits unless work is ready

	// Owner only, while running: where it is and what it ran, accounted
	// for under the lock afterwards.
	view     Batch[E, C] // the batch as its listener runs it (batch.go)
	batched  bool        // its listener runs it: delivered ones are counted by tally
	at       int         // the delivery claimed last, -1 before the first; it runs while ran <= at (batch.go)
	mayRetry bool        // what Deliver was told of batch[at] (Exited is told the same)
	ran      int         // deliveries claimed and finished: batch[:ran], but for retries
	back     int         // batch[back:] was not run and goes back to the mailbox
	retries  []int       // indexes of batch[:ran] that failed and will be retried
	c        Counters
	lost     []lostOne[E, C] // abandoned in account, for Lost (after unlock)
}

func (h *hand[E, C]) reset() {
	zero(h.batch)
	h.batch = h.batch[:0]
	h.mb = nil
	h.units = 0
	h.next.Store(0)
	h.yield.Store(false)
	h.stuck = -1
	h.running = false
	h.held = 0
	h.ran, h.back = 0, 0
	h.batched = false
	h.retries = h.retries[:0]
	h.c = Counters{}
}

// run is a worker goroutine.
func (s *Scheduler[E, C]) run(h *hand[E, C]) {
	defer s.gone.Done() // deferred first, so it runs last: Close waits for it
	id, strike := enlistWorker(s)
	defer strike()
	s.mu.Lock()
	h.goid = id
	s.mu.Unlock()
	running, returned := false, false
	defer func() {
		switch {
		case returned:
		case running: // a handler called runtime.Goexit: this goroutine ends
			s.goexit(h)
		default:
			// Something called outside a batch (Listener.Lost, so an
			// Observer, after account) ran runtime.Goexit: the worker
			// leaves the pool as if it had returned.
			s.mu.Lock()
			if h.stalled {
				h.stalled = false
				s.stalled--
			}
			s.leave(h)
			if s.ready.len() > 0 {
				s.wake()
			}
			s.mu.Unlock()
		}
	}()
	s.mu.Lock()
	for {
		if s.ready.len() == 0 && s.steal() {
			continue
		}
		if s.ready.len() == 0 {
			if (s.closed.Load() && s.drained()) || h.retire {
				s.leave(h) // closed and drained, or idle for idleAfter
				s.mu.Unlock()
				returned = true
				return
			}
			if !h.parked {
				h.parked, h.parkedAt = true, s.reapTicks
				s.armReaper()
			}
			s.idle++
			s.work.Wait()
			continue
		}
		h.parked, h.retire = false, false
		if !s.take(h) {
			continue
		}
		s.mu.Unlock()

		running = true
		s.runBatch(h)
		running = false

		s.countDelivered(h)
		s.mu.Lock()
		s.account(h)
		if len(h.lost) > 0 {
			lost := h.lost
			h.lost = nil
			s.mu.Unlock()
			s.tellLost(lost, LostAbandoned, true)
			s.mu.Lock()
		}
		if h.stalled {
			h.stalled = false
			s.stalled--
			if s.workers-s.stalled > s.maxLive {
				s.leave(h) // a worker took this one's place meanwhile
				s.mu.Unlock()
				returned = true
				return
			}
		}
	}
}

// drained reports whether nothing is left to run, with s.mu held.
func (s *Scheduler[E, C]) drained() bool {
	return s.queued == 0 && s.running == 0 && s.backoff == 0
}

// take takes a batch from the listener at the head of the ready list, with
// s.mu held; it reports false when that listener could not start after all.
// The listener goes back to the end of the list if it may start another
// batch, so listeners take turns whatever their number of keys or backlog;
// so do the keys of a keyed listener inside it. An ordered mailbox
// gives up to _batchSize deliveries (they run in turn anyway); one that
// runs several batches at once gives its fair share among them, so that its
// limit's worth of workers can share its backlog.
func (s *Scheduler[E, C]) take(h *hand[E, C]) bool {
	in := s.ready.pop()
	in.queued = false
	mb := in.box
	if in.keyed {
		for {
			if in.ready.len() == 0 {
				return false
			}
			mb = in.ready.pop()
			mb.queued = false
			in.ready.release() // after a burst of keys, the memory comes back
			if mb.q.len() > 0 && mb.active == 0 && !mb.paused() {
				break
			}
			s.retire(mb) // emptied meanwhile (OverflowDropOldest)
		}
	} else if mb.q.len() == 0 || mb.paused() {
		return false
	}
	n := mb.q.len()
	if !in.keyed && in.limit > 1 {
		n = (n + in.limit - 1) / in.limit
	}
	n = min(n, in.batch)
	if n == 1 { // the common case of a keyed or shared listener, and of a quiet bus: no call
		h.batch = append(h.batch, mb.q.pop())
	} else {
		h.batch = mb.q.popTo(h.batch, n)
	}
	h.mb, h.units, h.at = mb, int32(n), -1
	h.running, h.held = true, n
	h.takes++
	mb.active++
	in.active++
	s.queued -= n
	s.running += n
	s.shrink(in, n)
	s.offer(in) // it may start another batch, behind the other ready listeners
	s.verify()
	return true
}

// steal hands back to their mailbox the deliveries that another worker
// has taken but not started, when another batch of that mailbox may run
// (see handBack), so that the idle worker calling it, with s.mu held, can
// take them. It reports whether it found any.
func (s *Scheduler[E, C]) steal() bool {
	for _, h := range s.hands {
		if h.running && s.handBack(h) {
			return true
		}
	}
	return false
}

// handBack puts the deliveries of h's batch that its owner has not started
// back at the front of their mailbox, in order, with s.mu held, and reports
// whether there were any. It does so only when that helps and keeps the
// bound: when the mailbox may run another batch now, and the deliveries fit
// in its listener's backlog.
func (s *Scheduler[E, C]) handBack(h *hand[E, C]) bool {
	mb, in := h.mb, h.mb.in
	if mb.keyed || in.active >= in.limit {
		return false // only this batch may run the mailbox now
	}
	for {
		k := h.next.Load()
		if k >= h.units || in.backlog+int(h.units-k) > in.bound {
			return false
		}
		if h.next.CompareAndSwap(k, h.units) {
			for i := h.units - 1; i >= k; i-- {
				s.push(mb, h.batch[i], true)
			}
			n := int(h.units - k)
			h.held -= n
			s.running -= n
			s.makeReady(mb)
			return true
		}
	}
}

// runBatch runs h's batch in order, without s.mu: through its listener's
// RunBatch if the listener takes it (batch.go), else with one
// Listener.Deliver call per delivery. It stops at a delivery to retry if
// the mailbox is ordered, when the watchdog tells it to yield, and when it
// runs out of claimed deliveries (the rest may have been handed back by the
// watchdog).
func (s *Scheduler[E, C]) runBatch(h *hand[E, C]) {
	l := h.mb.in.l
	h.batched = true // before the call: a handler may end the goroutine
	if l.RunBatch(&h.view) {
		h.ran = h.at + 1 // the last delivery claimed is finished
		h.tally()
	} else {
		h.batched = false
		s.deliverEach(h, l)
	}
	// Claim what is left, if the loop stopped early, to give it back.
	h.back = int(min(h.next.Swap(h.units), h.units))
}

// deliverEach runs h's batch with one call of l.Deliver per delivery.
func (s *Scheduler[E, C]) deliverEach(h *hand[E, C], l Listener[E, C]) {
	ordered := h.mb.in.ordered
	for !h.yield.Load() {
		i := h.next.Add(1) - 1
		if i >= h.units {
			break
		}
		h.at = int(i)
		d := &h.batch[i]
		if s.aborted.Load() {
			s.abandonRunning(h, d)
			continue
		}
		h.mayRetry = !s.aborted.Load()
		r, err := l.Deliver(d.named, d.rec.ev, d.attempt, d.rec.at, h.mayRetry)
		h.ran = int(i) + 1
		if r == Delivered {
			h.c.Delivered++
			continue
		}
		h.c.count(r)
		if err != nil {
			s.report(err)
		}
		if r == Retry {
			h.retries = append(h.retries, int(i))
			if ordered {
				break
			}
		}
	}
}

// account finishes what h ran, with s.mu held: finished deliveries complete
// their epoch, failed ones start their backoff, and those not run go back to
// the front of the mailbox in order (or are abandoned if Close gave up).
func (s *Scheduler[E, C]) account(h *hand[E, C]) {
	mb, in := h.mb, h.mb.in
	s.stats.add(&h.c)
	aborted := s.aborted.Load()
	// What was not run goes back first, so that a retry queued at once
	// (Retry(n, 0, 0)) lands in front of it, keeping an ordered mailbox's
	// order.
	for i := int(h.units) - 1; i >= h.back && i >= h.ran; i-- {
		d := h.batch[i]
		if aborted {
			s.stats.Abandoned++
			s.complete(d.rec.ep)
			h.lost = s.observeLost(h.lost, mb, d)
			s.release(&d)
			continue
		}
		s.push(mb, d, true)
	}
	// The rest ran and is finished (finishRan), but for retries. A batch of
	// one, as a Concurrency n > 1 listener takes, is finished here.
	if h.ran == 1 && len(h.retries) == 0 {
		d := &h.batch[0]
		s.complete(d.rec.ep)
		s.release(d)
	} else {
		s.finishRan(h, aborted)
	}
	s.running -= h.held
	mb.active--
	in.active--
	if in.active == 0 && in.quiet != nil {
		close(in.quiet)
		in.quiet = nil
	}
	s.makeReady(mb)
	s.retire(mb)
	h.reset()
	s.finish()
	s.verify()
}

// finishRan finishes the deliveries h ran, batch[:ran], with s.mu held:
// those to retry start their backoff (or are abandoned if Close gave up,
// aborted), the runs between them are finished (finishRun).
func (s *Scheduler[E, C]) finishRan(h *hand[E, C], aborted bool) {
	mb := h.mb
	start := 0
	for _, i := range h.retries {
		s.finishRun(h.batch[start:i])
		start = i + 1
		d := &h.batch[i]
		if !aborted {
			retry := *d
			retry.attempt++
			s.startBackoff(mb, retry)
			continue
		}
		s.stats.Abandoned++ // Close gave up while it ran: no retry
		h.lost = s.observeLost(h.lost, mb, *d)
		s.finishRun(h.batch[i:start])
	}
	s.finishRun(h.batch[start:h.ran])
}

// finishRun finishes ds, deliveries of a batch that ran or were abandoned
// and will not be retried, with s.mu held: each completes its epoch and
// releases its record. A batch's deliveries mostly share an epoch, so
// epochs are completed per run of deliveries, and the records' total
// (s.refs) once.
func (s *Scheduler[E, C]) finishRun(ds []delivery[E, C]) {
	if len(ds) == 0 {
		return
	}
	ep, start := ds[0].rec.ep, 0
	for i := range ds {
		r := ds[i].rec
		if r.ep != ep {
			s.completeN(ep, i-start)
			ep, start = r.ep, i
		}
		if r.refs--; r.refs <= 0 {
			if r.refs < 0 {
				s.overReleased()
				continue
			}
			s.recycle(r) // inlined: one call less per event
		}
	}
	s.completeN(ep, len(ds)-start)
	s.refs -= len(ds)
}

// goexit runs on a worker whose goroutine is ending because something it
// called ran runtime.Goexit: a handler (Listener.Exited settles it as a
// failed attempt: retried if the listener retries, else counted failed and
// its error reported) or Options.Report (the delivery was already
// counted). The worker's batch is then accounted for
// as if it had stopped there: the rest goes back to the mailbox, and
// another worker takes over if work is waiting, so nothing is lost and
// Flush and Close do not wait forever. The accounting is deferred so that
// it runs even if Options.Report calls Goexit again while the failure is
// reported; the report comes first, as for any failed delivery, so that
// Flush returns after it.
func (s *Scheduler[E, C]) goexit(h *hand[E, C]) {
	defer s.settle(h)
	if h.ran <= h.at { // batch[at] was running: its handler ended the goroutine
		d := h.batch[h.at]
		r, err := h.mb.in.l.Exited(d.named, d.rec.ev, d.attempt, h.mayRetry && !h.batched)
		h.c.count(r)
		if err != nil {
			s.report(err)
		}
		if r == Retry { // a failed attempt, as any other: account backs it off
			h.retries = append(h.retries, h.at)
		}
	}
}

// countDelivered tells h's listener how many deliveries of its batch were
// delivered, once per batch rather than once per delivery, before the
// batch is accounted for; s.mu must not be held.
func (s *Scheduler[E, C]) countDelivered(h *hand[E, C]) {
	if h.c.Delivered != 0 {
		h.mb.in.l.Delivered(h.c.Delivered)
	}
}

// settle is goexit's accounting.
func (s *Scheduler[E, C]) settle(h *hand[E, C]) {
	h.ran = h.at + 1
	if h.batched {
		h.tally()
	}
	h.retries = slices.DeleteFunc(h.retries, func(i int) bool { return i >= h.ran })
	h.back = int(min(h.next.Swap(h.units), h.units))
	s.countDelivered(h)
	s.mu.Lock()
	s.account(h)
	if h.stalled {
		h.stalled = false
		s.stalled--
	}
	s.leave(h)
	if s.ready.len() > 0 {
		s.wake() // starts a worker in this one's place if none is idle
	}
	lost := h.lost // the rest of the batch, abandoned if Close gave up
	h.lost = nil
	s.mu.Unlock()
	s.tellLost(lost, LostAbandoned, true)
}

// leave takes a worker whose goroutine is ending out of the pool, with s.mu
// held, and wakes the others to look again (on Close, they exit too).
func (s *Scheduler[E, C]) leave(h *hand[E, C]) {
	s.hands = slices.DeleteFunc(s.hands, func(v *hand[E, C]) bool { return v == h })
	s.workers--
	s.finish()
	s.idle = 0
	s.work.Broadcast()
}
