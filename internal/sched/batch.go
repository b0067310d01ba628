package sched

// Batches a listener runs itself. A worker offers each batch it takes to
// its listener (Listener.RunBatch); if the listener declines, the worker
// runs the batch with one Listener.Deliver call per delivery
// (deliverEach). A listener that takes it loops over the batch with Next,
// calling its handlers directly, and tells the outcome of the deliveries
// that did not deliver with Settle. The scheduler's rules hold all the
// same, because they live in Next: each delivery is claimed (the hand's
// next counter) before it starts, so the watchdog or an idle worker may
// take back the unstarted rest at any time (handBack) and no delivery runs
// twice or is lost; a yield from the watchdog, and Close giving up, are
// honoured between deliveries (Next then claims nothing more: the rest
// goes back to the mailbox, or is abandoned, when the batch is accounted
// for); and the hand records which delivery runs and which are finished,
// so that a handler that ends the worker's goroutine (runtime.Goexit) is
// counted as Exited and the rest of the batch goes back to its mailbox
// (goexit).
//
// Positions: h.at is the delivery claimed last (-1 before the first), and
// h.ran counts the finished ones, batch[:ran], once it is brought up to
// date. Deliveries are claimed in order, so batch[at] runs while
// ran <= at, and is finished once ran == at+1. Next only moves at: a
// delivery Next returned is finished (delivered) when the next is claimed
// or the batch ends, and ran catches up then (runBatch, settle); Settle
// and abandonRunning finish the current one at once (ran = at+1), before
// anything they call may end the goroutine. A batched hand does not count
// its deliveries as delivered one by one: once it stops, those finished
// and not counted otherwise are (tally).

// Batch is a worker's batch as its listener runs it (Listener.RunBatch):
// only the worker's goroutine uses it, during RunBatch.
type Batch[E, C any] struct {
	s *Scheduler[E, C]
	h *hand[E, C]
}

// Next finishes the delivery that the previous call returned (delivered,
// unless Settle was called for it) and claims and returns the next one to
// run: what its emit attached for the listener (nil: nothing) and its
// event, which the caller must not modify (the event's other deliveries
// share it) nor keep past the next call of Next. It returns a nil event
// when the batch is over: every delivery is claimed (the watchdog may have
// taken back the rest), the watchdog told the worker to yield, or Close
// gave up; then the deliveries not claimed go back to their mailbox, or
// once Close gave up are abandoned (counted, and told to Listener.Lost)
// when the worker accounts for the batch.
//
// Next is inlined into the listener's loop (cost 77 of the compiler's
// budget of 80 with Go 1.26; TestBatchNextIsInlined keeps it so): per
// delivery, two flag loads, the claim and one store. Its results are
// pointers, not a copy of the event, and it takes no separate ok result:
// each would cost the loop instructions or the budget nodes.
func (b *Batch[E, C]) Next() (named *C, ev *E) {
	h := b.h
	if h.yield.Load() {
		return
	}
	if b.s.aborted.Load() {
		return
	}
	// len(h.batch) is h.units while the batch runs (take): comparing with
	// it spares the bounds check.
	batch := h.batch
	i := int(h.next.Add(1) - 1)
	if uint(i) >= uint(len(batch)) {
		return
	}
	h.at = i // batch[:i] is finished; batch[i] runs
	return batch[i].named, &batch[i].rec.ev
}

// Settle finishes the delivery that Next returned last with outcome r
// (Failed, Panicked or Skipped; the listener counted it) and reports err,
// if not nil, to Options.Report.
func (b *Batch[E, C]) Settle(r Result, err error) {
	h := b.h
	h.ran = h.at + 1
	h.c.count(r)
	if err != nil {
		b.s.report(err)
	}
}

// Current returns the delivery that Next returned last: what its emit
// attached for the listener, and its event (not to be modified).
func (b *Batch[E, C]) Current() (named *C, ev *E) {
	d := &b.h.batch[b.h.at]
	return d.named, &d.rec.ev
}

// tally counts the deliveries of a batched hand (its listener ran the batch) that were delivered, once
// it stopped: those finished, but for the ones counted otherwise.
func (h *hand[E, C]) tally() {
	h.c.Delivered = uint64(h.ran) - h.c.Failed - h.c.Panicked - h.c.Skipped - h.c.Abandoned
}

// abandonRunning counts batch[i] of h, which the worker claimed after Close
// gave up, as abandoned, and tells its listener when the scheduler is
// Observed. It is finished before Lost is called: if Lost ended the
// goroutine, the delivery is not counted again (goexit).
func (s *Scheduler[E, C]) abandonRunning(h *hand[E, C], d *delivery[E, C]) {
	h.c.Abandoned++
	h.ran = h.at + 1
	if s.observed {
		h.mb.in.l.Lost(d.named, d.rec.ev, d.attempt, d.rec.at, LostAbandoned, true)
	}
}
