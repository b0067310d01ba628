package sched

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Batches run by their listener (RunBatch) keep the scheduler's
// guarantees: every delivery runs exactly once and in order where the
// listener is ordered (per key when keyed), each outcome is counted once,
// and the value an emit attaches reaches its delivery.
func TestBatchesRunByTheirListenersRunEveryDeliveryOnce(t *testing.T) {
	const emitters, perEmitter, keys = 4, 1000, 16
	s, reps := newSched(t, Options{Workers: 4, QueueSize: 64})

	plain := newBatcher("plain")
	ordered := newBatcher("ordered")
	keyed := newBatcher("keyed")
	conc := newBatcher("concurrency")
	failing := newBatcher("failing") // fails some deliveries, skips others
	declines := newFake("declines")  // runs its batches through Deliver
	ordered.run = func(e ev, _ int) (Result, error) { ordered.checkOrder(e); return Delivered, nil }
	keyed.run = func(e ev, _ int) (Result, error) { keyed.checkOrder(e); return Delivered, nil }
	var failed, skipped atomic.Uint64
	failing.run = func(e ev, _ int) (Result, error) {
		switch {
		case e.id%5 == 0:
			failed.Add(1)
			return Failed, errors.New("failed")
		case e.id%7 == 0:
			skipped.Add(1)
			return Skipped, nil
		}
		return Delivered, nil
	}
	batchers := []*batcher{plain, ordered, keyed, conc, failing}
	fakes := []*fake{plain.fake, ordered.fake, keyed.fake, conc.fake, failing.fake, declines}
	to := []*Inbox[ev, tag]{
		s.NewInbox(plain, Config{Name: "plain"}),
		s.NewInbox(ordered, Config{Name: "ordered", Ordered: true}),
		s.NewInbox(keyed, Config{Name: "keyed", Keyed: true}),
		s.NewInbox(conc, Config{Name: "concurrency", Concurrency: 3}),
		s.NewInbox(failing, Config{Name: "failing"}),
		s.NewInbox(declines, Config{Name: "declines"}),
	}
	const keyedAt = 2

	emitFrom(t, s, to, emitters, perEmitter, keys, keyedAt)
	flush(t, s)

	const events = emitters * perEmitter
	delivered := checkRunOnce(t, fakes, events)
	for _, b := range batchers {
		if b.batches.Load() == 0 {
			t.Errorf("%s: ran no batch itself", b.name)
		}
	}
	if got, want := failing.delivered.Load(), events-failed.Load()-skipped.Load(); got != want {
		t.Errorf("failing: Delivered counted %d, want %d", got, want)
	}
	if want := uint64(len(fakes)-1)*events + events - failed.Load() - skipped.Load(); delivered != want {
		t.Errorf("Delivered counted %d in all, want %d", delivered, want)
	}
	st := s.Stats()
	want := Stats{Counters: Counters{Emitted: events, Matched: events * uint64(len(to)), Delivered: delivered, Failed: failed.Load(), Skipped: skipped.Load()}}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	if n := reps.len(); uint64(n) != failed.Load() {
		t.Errorf("%d failures reported, want %d", n, failed.Load())
	}
}

// A handler of a batch that its listener runs can end the worker's
// goroutine (runtime.Goexit) at any position of the batch: that delivery
// is counted as failed (Exited) and reported, the deliveries before it as
// delivered, and the rest of the batch goes back to the mailbox and runs on
// another worker, each once.
func TestGoexitInABatchRunByItsListenerLosesNothing(t *testing.T) {
	const events = 8
	for at := range events {
		t.Run("at "+strconv.Itoa(at), func(t *testing.T) {
			s, reps := newSched(t, Options{Workers: 1})
			b := newBatcher("goexit")
			g := newGate()
			t.Cleanup(g.open)
			b.run = func(e ev, _ int) (Result, error) {
				if e.id == at {
					runtime.Goexit()
				}
				return Delivered, nil
			}
			// One worker, held by another listener while the batch queues,
			// takes all of it at once.
			hold := newFake("hold")
			held := make(chan struct{})
			hold.run = func(ev, int) (Result, error) { close(held); g.wait(); return Delivered, nil }
			hin := s.NewInbox(hold, Config{Name: "hold"})
			in := s.NewInbox(b, Config{Name: "goexit"})
			if err := s.Accept(context.Background(), []*Inbox[ev, tag]{hin}, ev{id: -1}, nil, nil, true); err != nil {
				t.Fatal(err)
			}
			<-held
			for id := range events {
				if err := s.Accept(context.Background(), []*Inbox[ev, tag]{in}, ev{id: id}, nil, nil, true); err != nil {
					t.Fatal(err)
				}
			}
			g.open()
			flush(t, s)
			b.mu.Lock()
			if len(b.seen) != events-1 || b.seen[at] != 0 {
				t.Errorf("%d events delivered (event %d: %d), want every one but %d", len(b.seen), at, b.seen[at], at)
			}
			for id, n := range b.seen {
				if n != 1 {
					t.Errorf("event %d run %d times", id, n)
				}
			}
			b.mu.Unlock()
			st := s.Stats()
			if b.exited.Load() != 1 || st.Failed != 1 || st.Delivered != events || b.delivered.Load() != events-1 || reps.len() != 1 {
				t.Errorf("exited %d, listener delivered %d, stats %+v, reported %d; want 1 failed, %d delivered", b.exited.Load(), b.delivered.Load(), st, reps.len(), events-1)
			}
			if at < events-1 && b.batches.Load() < 2 {
				t.Errorf("%d batches: the rest of the first did not run in another", b.batches.Load())
			}
		})
	}
}

// The deliveries of a batch that its listener runs and has not started go
// to an idle worker while the one running blocks (hand-back, see steal):
// each runs once, none waits for the blocked handler.
func TestBatchRunByItsListenerHandsBackWhatItHasNotStarted(t *testing.T) {
	const events = 40
	s, _ := newSched(t, Options{Workers: 2, StallAfter: time.Millisecond})
	b := newBatcher("blocks")
	var others atomic.Int32
	rest := make(chan struct{})
	b.run = func(e ev, _ int) (Result, error) {
		if e.id == 0 {
			select { // blocks until every other delivery ran: on another worker
			case <-rest:
			case <-time.After(time.Minute):
				return Failed, errors.New("the rest of the batch waited for its first delivery")
			}
		} else if others.Add(1) == events-1 {
			close(rest)
		}
		return Delivered, nil
	}
	in := s.NewInbox(b, Config{Name: "blocks"})
	for id := range events {
		if err := s.Accept(context.Background(), []*Inbox[ev, tag]{in}, ev{id: id}, nil, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, s)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) != events {
		t.Errorf("%d events run, want %d", len(b.seen), events)
	}
	for id, n := range b.seen {
		if n != 1 {
			t.Errorf("event %d run %d times", id, n)
		}
	}
	if st := s.Stats(); st.Delivered != events || st.Failed != 0 {
		t.Errorf("stats %+v, want %d delivered", st, events)
	}
}

// Close giving up while a batch runs: the deliveries its listener has not
// claimed are abandoned (Next claims no more; the worker abandons the
// rest when it accounts for the batch) and told to Lost; the one running ends
// normally.
func TestBatchRunByItsListenerAbandonsOnceCloseGivesUp(t *testing.T) {
	const events = 10
	s := New[ev, tag](Options{Workers: 1, QueueSize: 64, Report: func(error) {}, Observed: true, CheckInvariants: true})
	b := newBatcher("abandoned")
	g := newGate()
	started := make(chan struct{})
	b.run = func(e ev, _ int) (Result, error) {
		if e.id == 0 {
			close(started)
			g.wait()
		}
		return Delivered, nil
	}
	in := s.NewInbox(b, Config{Name: "abandoned"})
	for id := range events {
		if err := s.Accept(context.Background(), []*Inbox[ev, tag]{in}, ev{id: id}, nil, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	<-started
	s.SetClosed()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // give up at once
	if _, _, err := s.Close(ctx); err == nil {
		t.Fatal("Close with a done context returned nil while a handler blocked")
	}
	g.open()
	waitFor(t, "the batch to be accounted for", func() bool { return s.Stats().Running == 0 })
	st := s.Stats()
	if st.Delivered != 1 || st.Abandoned != events-1 || st.Queued != 0 {
		t.Errorf("stats %+v, want 1 delivered and %d abandoned", st, events-1)
	}
	n, _ := b.lost.Load(LostAbandoned)
	if n == nil || n.(*atomic.Int64).Load() != events-1 {
		t.Errorf("Lost(abandoned) told %v times, want %d", n, events-1)
	}
	waitFor(t, "the worker to exit", func() bool { w, _ := s.Workers(); return w == 0 })
}
