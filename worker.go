package eventbus

import (
	"errors"
	"slices"
	"sync/atomic"
)

// Workers.
//
// A worker takes a batch of work under the scheduler's lock (one lock round
// trip for up to _batchSize deliveries), runs it without the lock, and then
// accounts for it under the lock. The batch is made of units: one
// shared-queue delivery (an event for all its plain listeners), or the run
// of deliveries taken from one mailbox. The worker claims its units one at a
// time with an atomic counter, so that an idle worker can steal the units
// not yet started: a unit never waits behind a slow handler of another unit
// while a worker is free to run it.

// hand is a worker's batch. Its contents change only under the scheduler's
// lock, when the batch is taken (or stolen into) and when it is reset; the
// owner reads them without the lock while it runs the batch, and thieves
// read them under the lock.
type hand[T any] struct {
	batch []delivery[T]
	boxes []boxRun[T] // the units when the batch is from mailboxes
	units int32
	next  atomic.Int32 // the next unit not yet claimed

	// Owner only: what it ran, to account for under the lock, and where
	// it is (unit cur, delivery or listener at within it, and whether that
	// handler has returned).
	cur, at    int
	called     bool
	done       []int32
	retries    []delivery[T]
	deliveries int
}

// boxRun is the part of a batch taken from one mailbox: n deliveries from
// batch[off], of which the first ran finished.
type boxRun[T any] struct {
	mb          *mailbox[T]
	off, n, ran int
}

func (h *hand[T]) reset() {
	clear(h.batch)
	h.batch = h.batch[:0]
	clear(h.boxes)
	h.boxes = h.boxes[:0]
	h.units = 0
	h.next.Store(0)
	h.done = h.done[:0]
	clear(h.retries)
	h.retries = h.retries[:0]
	h.deliveries = 0
}

// run is a worker goroutine.
func (s *scheduler[T]) run() {
	h := &hand[T]{batch: make([]delivery[T], 0, _batchSize)}
	var fromBox bool // alternate between mailboxes and the shared queue
	var c counters
	running := false
	defer func() {
		if running { // a handler called runtime.Goexit: this goroutine ends
			s.goexit(h, &c)
		}
	}()
	s.mu.Lock()
	s.hands = append(s.hands, h)
	for {
		switch {
		case s.ready.len() > 0 && (fromBox || s.shared.len() == 0):
			s.takeBoxes(h)
			if h.units == 0 {
				continue
			}
			fromBox = !fromBox
		case s.shared.len() > 0:
			s.takeShared(h)
			fromBox = !fromBox
		case s.steal(h):
		case s.closed && s.units == 0 && s.running == 0 && s.backoff == 0:
			s.leave(h)
			s.mu.Unlock()
			return
		default:
			s.idle++
			s.work.Wait()
			continue
		}
		s.mu.Unlock()

		c = counters{}
		running = true
		for {
			u := h.next.Add(1) - 1
			if u >= h.units {
				break
			}
			s.runUnit(h, u, &c)
		}
		running = false

		s.mu.Lock()
		s.stats.add(&c)
		s.account(h)
		h.reset()
	}
}

// takeShared takes a fair share of the shared queue among the workers, with
// s.mu held.
func (s *scheduler[T]) takeShared(h *hand[T]) {
	share := min(_batchSize, (s.shared.len()+s.workers-1)/max(1, s.workers))
	deliveries := 0
	for s.shared.len() > 0 && len(h.batch) < share {
		d := s.shared.pop()
		deliveries += len(d.to)
		h.batch = append(h.batch, d)
	}
	h.units = int32(len(h.batch))
	s.taken(len(h.batch), deliveries)
}

// takeBoxes takes deliveries from ready mailboxes, with s.mu held: from
// several mailboxes (up to a fair share of the ready ones among the
// workers), so that many keys with one delivery each cost one lock round
// trip, not one each.
func (s *scheduler[T]) takeBoxes(h *hand[T]) {
	share := max(1, s.ready.len()/max(1, s.workers))
	for s.ready.len() > 0 && len(h.boxes) < share && len(h.batch) < _batchSize {
		mb := s.ready.pop()
		mb.queued = false
		if g := mb.e.gate; g != nil && g.limit > 0 && mb.active == 0 && g.active >= g.limit {
			s.makeReady(mb) // the gate filled up meanwhile
			continue
		}
		n := 1
		if mb.limit == 1 {
			n = min(mb.q.len(), _batchSize-len(h.batch))
		}
		off := len(h.batch)
		for range n {
			h.batch = append(h.batch, mb.q.pop())
		}
		if mb.active == 0 && mb.e.gate != nil {
			mb.e.gate.active++
		}
		mb.active++
		s.makeReady(mb) // a Concurrency(n > 1) mailbox may start more
		h.boxes = append(h.boxes, boxRun[T]{mb: mb, off: off, n: n})
	}
	h.units = int32(len(h.boxes))
	s.taken(len(h.batch), len(h.batch))
}

// taken moves units and deliveries from queued to running, with s.mu held.
func (s *scheduler[T]) taken(units, deliveries int) {
	s.units -= units
	s.queued -= deliveries
	s.running += deliveries
	s.freed()
}

// steal claims every unit that another worker has not started yet and
// copies them into h, with s.mu held; it reports whether it found any.
// Taking them all (rather than half) keeps workers from stealing back and
// forth, which measurably slowed keyed delivery. Stolen deliveries are
// already counted as running.
func (s *scheduler[T]) steal(h *hand[T]) bool {
	for _, v := range s.hands {
		if v == h {
			continue
		}
		for {
			n := v.next.Load()
			left := v.units - n
			if left <= 0 {
				break
			}
			if !v.next.CompareAndSwap(n, v.units) {
				continue // the owner claimed one meanwhile
			}
			if len(v.boxes) > 0 {
				for _, r := range v.boxes[n:v.units] {
					off := len(h.batch)
					h.batch = append(h.batch, v.batch[r.off:r.off+r.n]...)
					h.boxes = append(h.boxes, boxRun[T]{mb: r.mb, off: off, n: r.n})
				}
				h.units = int32(len(h.boxes))
			} else {
				h.batch = append(h.batch, v.batch[n:v.units]...)
				h.units = int32(len(h.batch))
			}
			return true
		}
	}
	return false
}

// runUnit runs unit u of h, without s.mu.
func (s *scheduler[T]) runUnit(h *hand[T], u int32, c *counters) {
	h.cur = int(u)
	if len(h.boxes) > 0 {
		r := &h.boxes[u]
		r.ran = s.runBox(h, r.mb, h.batch[r.off:r.off+r.n], c)
		h.deliveries += r.n
	} else {
		d := &h.batch[u]
		s.runShared(h, d, c)
		h.deliveries += len(d.to)
	}
	h.done = append(h.done, u)
}

// runShared runs a shared-queue delivery for each of its listeners, adding
// those to retry to h.retries as it goes.
func (s *scheduler[T]) runShared(h *hand[T], d *delivery[T], c *counters) {
	for i, e := range d.to {
		h.at, h.called = i, false
		if s.aborted.Load() {
			c.abandoned++
			continue
		}
		if s.m.deliver(d.ctx, e, d.ev, d.attempt, c, &h.called) {
			r := *d
			r.to = []*entry[T]{e}
			r.attempt++
			h.retries = append(h.retries, r)
		}
	}
}

// runBox runs a mailbox's batch in order and returns how many deliveries are
// finished; if it stops early, batch[ran] must be retried.
func (s *scheduler[T]) runBox(h *hand[T], mb *mailbox[T], batch []delivery[T], c *counters) (ran int) {
	for i := range batch {
		h.at, h.called = i, false
		d := &batch[i]
		if s.aborted.Load() {
			c.abandoned++
			continue
		}
		if s.m.deliver(d.ctx, mb.e, d.ev, d.attempt, c, &h.called) {
			return i
		}
	}
	return len(batch)
}

// account finishes what h's owner ran, with s.mu held.
func (s *scheduler[T]) account(h *hand[T]) {
	if s.aborted.Load() {
		// Close gave up while these ran: no retry is scheduled.
		s.stats.abandoned += uint64(len(h.retries))
	} else {
		for _, d := range h.retries { // before completing, so Flush waits for them
			d.ep.pending++
			s.startBackoff(d, nil)
		}
	}
	for _, u := range h.done {
		if len(h.boxes) > 0 {
			r := h.boxes[u]
			s.finishBox(r.mb, h.batch[r.off:r.off+r.n], r.ran, true)
		} else {
			s.complete(h.batch[u].ep)
		}
	}
	s.running -= h.deliveries
}

// errGoexit is the failure reported for a handler that called
// runtime.Goexit (as t.FailNow does).
var errGoexit = errors.New("eventbus: handler called runtime.Goexit")

// goexit runs on a worker whose goroutine is ending because something it
// called ran runtime.Goexit: a handler (reported as a failed delivery) or
// the error handler (the delivery was already counted). Then settle
// accounts for what the worker finished, puts back what it had not and
// lets another worker take over, so that nothing is lost and Flush and
// Close do not wait forever. settle is deferred so that it runs even if
// the error handler calls Goexit again while the failure is reported; the
// report comes first, as for any failed delivery, so that Flush returns
// after it.
func (s *scheduler[T]) goexit(h *hand[T], c *counters) {
	var d delivery[T]
	var e *entry[T]
	if len(h.boxes) > 0 {
		r := &h.boxes[h.cur]
		e, d = r.mb.e, h.batch[r.off+h.at]
		r.ran = h.at + 1
	} else {
		d = h.batch[h.cur]
		e = d.to[h.at]
	}
	defer s.settle(h, c)
	if !h.called {
		c.failed++
		e.l.counts.add(cFailed, 1)
		s.m.report(&ListenerError{Event: d.ev.Name, Pattern: e.pattern, Attempts: d.attempt + 1, Err: errGoexit})
	}
}

// settle is goexit's accounting.
func (s *scheduler[T]) settle(h *hand[T], c *counters) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := min(h.next.Swap(h.units), h.units) // nobody may steal the rest now
	s.stats.add(c)
	s.account(h)
	if len(h.boxes) > 0 {
		r := h.boxes[h.cur]
		s.finishBox(r.mb, h.batch[r.off:r.off+r.n], r.ran, false)
		s.running -= r.n
		for _, r := range h.boxes[next:] {
			s.finishBox(r.mb, h.batch[r.off:r.off+r.n], 0, false)
			s.running -= r.n
		}
	} else {
		cur := h.batch[h.cur]
		if rest := cur.to[h.at+1:]; len(rest) > 0 {
			cur.ep.pending++
			s.requeue(delivery[T]{ctx: cur.ctx, ev: cur.ev, to: rest, ep: cur.ep, attempt: cur.attempt})
		}
		s.complete(cur.ep)
		s.running -= len(cur.to)
		for _, d := range h.batch[next:] {
			s.requeue(d)
			s.running -= len(d.to)
		}
	}
	h.reset()
	s.leave(h)
	if s.units > 0 {
		s.wake() // starts a worker in this one's place if none is idle
	}
}

// leave takes a worker whose goroutine is ending out of the pool, with s.mu
// held, and wakes the others to look again (on Close, they exit too).
func (s *scheduler[T]) leave(h *hand[T]) {
	s.hands = slices.DeleteFunc(s.hands, func(v *hand[T]) bool { return v == h })
	s.workers--
	s.finish()
	s.idle = 0
	s.work.Broadcast()
}

// requeue puts a shared-queue delivery back at the front, with s.mu held.
func (s *scheduler[T]) requeue(d delivery[T]) {
	s.shared.pushFront(d)
	s.units++
	s.queued += len(d.to)
}
