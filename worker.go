package eventbus

import (
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

	// Owner only: what it ran, to account for under the lock.
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
			s.hands = slices.DeleteFunc(s.hands, func(v *hand[T]) bool { return v == h })
			s.workers--
			if s.workers == 0 {
				close(s.done)
			}
			s.idle = 0
			s.work.Broadcast() // the others exit too
			s.mu.Unlock()
			return
		default:
			s.idle++
			s.work.Wait()
			continue
		}
		s.mu.Unlock()

		var c counters
		for {
			u := h.next.Add(1) - 1
			if u >= h.units {
				break
			}
			s.runUnit(h, u, &c)
		}

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
			k := left
			if !v.next.CompareAndSwap(n, n+k) {
				continue // the owner claimed one meanwhile
			}
			if len(v.boxes) > 0 {
				for _, r := range v.boxes[n : n+k] {
					off := len(h.batch)
					h.batch = append(h.batch, v.batch[r.off:r.off+r.n]...)
					h.boxes = append(h.boxes, boxRun[T]{mb: r.mb, off: off, n: r.n})
				}
				h.units = int32(len(h.boxes))
			} else {
				h.batch = append(h.batch, v.batch[n:n+k]...)
				h.units = int32(len(h.batch))
			}
			return true
		}
	}
	return false
}

// runUnit runs unit u of h, without s.mu.
func (s *scheduler[T]) runUnit(h *hand[T], u int32, c *counters) {
	if len(h.boxes) > 0 {
		r := &h.boxes[u]
		r.ran = s.runBox(r.mb, h.batch[r.off:r.off+r.n], c)
		h.deliveries += r.n
	} else {
		d := &h.batch[u]
		h.retries = s.runShared(d, c, h.retries)
		h.deliveries += len(d.to)
	}
	h.done = append(h.done, u)
}

// runShared runs a shared-queue delivery for each of its listeners,
// returning those to retry.
func (s *scheduler[T]) runShared(d *delivery[T], c *counters, retries []delivery[T]) []delivery[T] {
	for _, e := range d.to {
		if s.aborted.Load() {
			c.abandoned++
			continue
		}
		if s.m.deliver(d.ctx, e, d.ev, d.attempt, c) {
			r := *d
			r.to = []*entry[T]{e}
			r.attempt++
			retries = append(retries, r)
		}
	}
	return retries
}

// runBox runs a mailbox's batch in order and returns how many deliveries are
// finished; if it stops early, batch[ran] must be retried.
func (s *scheduler[T]) runBox(mb *mailbox[T], batch []delivery[T], c *counters) (ran int) {
	for i := range batch {
		d := &batch[i]
		if s.aborted.Load() {
			c.abandoned++
			continue
		}
		if s.m.deliver(d.ctx, mb.e, d.ev, d.attempt, c) {
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
			s.finishBox(r.mb, h.batch[r.off:r.off+r.n], r.ran)
		} else {
			s.complete(h.batch[u].ep)
		}
	}
	s.running -= h.deliveries
}
