package sched

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Thousands of deliveries from concurrent emitters to plain, ordered, keyed,
// concurrent and retrying fake listeners, with the invariant checker on
// after every accounting step: every delivery runs exactly once (a retried
// one once to its end), ordered and keyed listeners see each emitter's
// events in order (per key), the value an emit attaches reaches its
// deliveries, and the counters add up.
func TestEveryDeliveryRunsExactlyOnce(t *testing.T) {
	const emitters, perEmitter, keys = 4, 1000, 16
	s, reps := newSched(t, Options{Workers: 4, QueueSize: 64})

	plain := newFake("plain")
	ordered := newFake("ordered")
	keyed := newFake("keyed")
	conc := newFake("concurrency")
	retrying := newFake("retrying")
	orderedRetry := newFake("ordered-retry")
	var retries atomic.Int64
	failFirst := func(f *fake, order bool) func(ev, int) (Result, error) {
		return func(e ev, attempt int) (Result, error) {
			if e.id%7 == 0 && attempt < 2 {
				retries.Add(1)
				return Retry, nil
			}
			if order {
				f.checkOrder(e)
			}
			return Delivered, nil
		}
	}
	ordered.run = func(e ev, _ int) (Result, error) { ordered.checkOrder(e); return Delivered, nil }
	keyed.run = func(e ev, _ int) (Result, error) { keyed.checkOrder(e); return Delivered, nil }
	retrying.run = failFirst(retrying, false)
	orderedRetry.run = failFirst(orderedRetry, true)

	fakes := []*fake{plain, ordered, keyed, conc, retrying, orderedRetry}
	to := []*Inbox[ev, tag]{
		s.NewInbox(plain, Config{Name: "plain"}),
		s.NewInbox(ordered, Config{Name: "ordered", Ordered: true}),
		s.NewInbox(keyed, Config{Name: "keyed", Keyed: true}),
		s.NewInbox(conc, Config{Name: "concurrency", Concurrency: 3}),
		s.NewInbox(retrying, Config{Name: "retrying"}),
		s.NewInbox(orderedRetry, Config{Name: "ordered-retry", Ordered: true}),
	}
	const keyedAt = 2

	emitFrom(t, s, to, emitters, perEmitter, keys, keyedAt)
	flush(t, s)

	const events = emitters * perEmitter
	sum := checkRunOnce(t, fakes, events)
	for _, f := range fakes {
		if got := f.delivered.Load(); got != events {
			t.Errorf("%s: Delivered counted %d, want %d", f.name, got, events)
		}
	}
	st := s.Stats()
	want := Stats{Counters: Counters{Emitted: events, Matched: events * uint64(len(to)), Delivered: sum, Retried: uint64(retries.Load())}}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	if reps.len() != 0 {
		t.Errorf("%d failures reported", reps.len())
	}
}

// The value an emit attaches reaches each of its deliveries, and nil when
// it attaches none.
func TestNamedValueReachesItsDelivery(t *testing.T) {
	s, _ := newSched(t, Options{Workers: 2})
	got := make(chan *tag, 2)
	f := &checkTag{got: got}
	in := s.NewInbox(f, Config{Name: "tagged"})
	if err := s.Accept(context.Background(), []*Inbox[ev, tag]{in}, ev{id: 1}, nil, []tag{{emit: 7}}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Accept(context.Background(), []*Inbox[ev, tag]{in}, ev{id: 2}, nil, nil, true); err != nil {
		t.Fatal(err)
	}
	flush(t, s)
	a, b := <-got, <-got
	if a == nil || a.emit != 7 || b != nil {
		t.Errorf("deliveries carried %v and %v, want emit 7 and nil", a, b)
	}
}

type checkTag struct{ got chan *tag }

func (c *checkTag) Deliver(named *tag, _ ev, _ int, _ int64, _ bool) (Result, error) {
	c.got <- named
	return Delivered, nil
}
func (c *checkTag) Delivered(uint64)                           {}
func (c *checkTag) Skipped(uint64)                             {}
func (c *checkTag) Dropped(*tag, ev, int, int) error           { return nil }
func (c *checkTag) Exited(*tag, ev, int, bool) (Result, error) { return Failed, nil }
func (c *checkTag) Lost(*tag, ev, int, int64, Loss, bool)      {}
func (c *checkTag) Backoff(int) time.Duration                  { return 0 }
func (c *checkTag) Removed() bool                              { return false }
func (c *checkTag) RunBatch(*Batch[ev, tag]) bool              { return false }

// A listener runs at most its limit of deliveries at once, stalled workers
// included: its Concurrency, or for a keyed listener without one
// Options.Workers, whatever its number of keys. While its handlers block,
// the watchdog declares their workers stalled and starts others, which
// serve another listener but never one more invocation of the limited one.
func TestListenerHoldsAtMostItsLimitOfWorkers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		limit int
	}{
		{"concurrency", Config{Name: "limited", Concurrency: 3}, 3},
		{"keyed", Config{Name: "limited", Keyed: true}, 2},
		{"ordered", Config{Name: "limited", Ordered: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const events = 300
			s, _ := newSched(t, Options{Workers: 2, MaxWorkers: 16, StallAfter: time.Millisecond})
			g := newGate()
			t.Cleanup(g.open) // before Close, should the test fail
			var running, peak atomic.Int32
			limited := newFake("limited")
			limited.run = func(ev, int) (Result, error) {
				recordMax(&peak, running.Add(1))
				g.wait()
				running.Add(-1)
				return Delivered, nil
			}
			other := newFake("other")
			ran := make(chan struct{})
			other.run = func(ev, int) (Result, error) { close(ran); return Delivered, nil }
			lin := s.NewInbox(limited, tc.cfg)
			oin := s.NewInbox(other, Config{Name: "other"})
			for i := range events {
				var ks []string
				if tc.cfg.Keyed {
					ks = []string{strconv.Itoa(i)}
				}
				if err := s.Accept(context.Background(), []*Inbox[ev, tag]{lin}, ev{id: i}, ks, nil, true); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "the limited listener to run its limit", func() bool { return int(peak.Load()) >= tc.limit })
			if err := s.Accept(context.Background(), []*Inbox[ev, tag]{oin}, ev{id: events}, nil, nil, true); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ran:
			case <-time.After(time.Minute):
				t.Fatal("another listener did not run while the limited one blocked")
			}
			if p := int(peak.Load()); p != tc.limit {
				t.Errorf("peak %d invocations at once while blocked, want %d", p, tc.limit)
			}
			// With as many workers as Options.Workers blocked, another could
			// only run on a replacement.
			if w, stalled := s.Workers(); w > 16 || (tc.limit >= 2 && stalled == 0) {
				t.Errorf("%d workers, %d stalled; want some stalled, at most MaxWorkers 16", w, stalled)
			}
			g.open()
			flush(t, s)
			if p := int(peak.Load()); p != tc.limit {
				t.Errorf("peak %d invocations at once, want %d", p, tc.limit)
			}
			if n := limited.delivered.Load(); n != events {
				t.Errorf("delivered %d, want %d", n, events)
			}
		})
	}
}

// Accept's refusals are the scheduler's own errors: a full backlog under
// OverflowFail, or with wait false, is a *QueueFullError naming the
// listener; a wait for room that its context ends carries the context's
// error; after SetClosed, Accept fails with ErrClosed, and Refuses says so.
func TestAcceptRefusals(t *testing.T) {
	s, _ := newSched(t, Options{Workers: 2, QueueSize: 1})
	g := newGate()
	t.Cleanup(g.open)
	started := make(chan struct{}, 1)
	f := newFake("stuck")
	f.run = func(ev, int) (Result, error) {
		started <- struct{}{}
		g.wait()
		return Delivered, nil
	}
	in := s.NewInbox(f, Config{Name: "stuck", Ordered: true})
	failIn := s.NewInbox(newFake("fail"), Config{Name: "fail", Overflow: OverflowFail, OverflowSet: true, QueueSize: 1})
	to := []*Inbox[ev, tag]{in}
	accept := func(to []*Inbox[ev, tag], ctx context.Context, wait bool) error {
		return s.Accept(ctx, to, ev{}, nil, nil, wait)
	}
	if err := accept(to, context.Background(), true); err != nil {
		t.Fatal(err)
	}
	<-started // the first runs; the second fills the backlog
	if err := accept(to, context.Background(), true); err != nil {
		t.Fatal(err)
	}
	var q *QueueFullError
	if err := accept(to, context.Background(), false); !errors.As(err, &q) || q.Name != "stuck" || q.Waiting != 1 || q.ReserveUsed || q.Err != nil {
		t.Errorf("TryEmit-like accept on a full backlog: %v, want a *QueueFullError for stuck, 1 waiting", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := accept(to, ctx, true); !errors.As(err, &q) || !errors.Is(err, context.Canceled) {
		t.Errorf("accept waiting with a cancelled context: %v, want a *QueueFullError carrying context.Canceled", err)
	}
	if err := accept([]*Inbox[ev, tag]{failIn}, context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if err := accept([]*Inbox[ev, tag]{failIn, in}, context.Background(), true); !errors.As(err, &q) || q.Name != "fail" {
		t.Errorf("accept under OverflowFail: %v, want a *QueueFullError for fail", err)
	}
	if s.Pending(in) != 1 {
		t.Errorf("pending %d, want 1", s.Pending(in))
	}
	if s.Refuses() {
		t.Error("Refuses before SetClosed")
	}
	s.SetClosed()
	if !s.Refuses() || !s.Closed() {
		t.Error("not Refuses or not Closed after SetClosed")
	}
	if err := accept(to, context.Background(), true); err != ErrClosed {
		t.Errorf("accept after SetClosed: %v, want ErrClosed", err)
	}
	g.open()
}

// Flush, Close and Quiesce on a worker that they would wait for return
// ErrReentrant at once; a handler's Accept while Close drains is accepted.
func TestReentrantCalls(t *testing.T) {
	s, _ := newSched(t, Options{Workers: 2})
	f := newFake("reentrant")
	follow := newFake("follow-up")
	var in, fin *Inbox[ev, tag]
	errs := make(chan error, 4)
	closing := make(chan struct{})
	f.run = func(e ev, _ int) (Result, error) {
		if e.id == 0 {
			errs <- s.Flush(context.Background())
			errs <- s.Quiesce(context.Background(), in)
			return Delivered, nil
		}
		<-closing
		_, _, err := s.Close(context.Background())
		errs <- err
		errs <- s.Accept(context.Background(), []*Inbox[ev, tag]{fin}, ev{id: 2}, nil, nil, true)
		return Delivered, nil
	}
	in = s.NewInbox(f, Config{Name: "reentrant"})
	fin = s.NewInbox(follow, Config{Name: "follow-up"})
	for id := range 2 {
		if err := s.Accept(context.Background(), []*Inbox[ev, tag]{in}, ev{id: id}, nil, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	s.SetClosed()
	close(closing)
	got := map[error]int{}
	for range 4 {
		got[<-errs]++
	}
	if got[ErrReentrant] != 3 || got[nil] != 1 {
		t.Errorf("Flush, Quiesce, Close and Accept from handlers returned %v, want ErrReentrant 3 times and nil once", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := follow.delivered.Load(); n != 1 {
		t.Errorf("follow-up delivered %d times during a graceful Close, want 1", n)
	}
}

// Overflow drop policies: DropNewest drops the new delivery, DropOldest the
// oldest queued; each drop is counted, reported and told to Lost.
func TestDropPolicies(t *testing.T) {
	for _, policy := range []Overflow{OverflowDropNewest, OverflowDropOldest} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			s, reps := newSched(t, Options{Workers: 1, QueueSize: 2, Observed: true})
			g := newGate()
			t.Cleanup(g.open)
			started := make(chan struct{}, 1)
			f := newFake("drops")
			f.run = func(e ev, _ int) (Result, error) {
				if e.id == 0 {
					started <- struct{}{}
					g.wait()
				}
				return Delivered, nil
			}
			in := s.NewInbox(f, Config{Name: "drops", Ordered: true, Overflow: policy, OverflowSet: true})
			for id := range 5 {
				if err := s.Accept(context.Background(), []*Inbox[ev, tag]{in}, ev{id: id}, nil, nil, true); err != nil {
					t.Fatal(err)
				}
				if id == 0 {
					<-started
				}
			}
			g.open()
			flush(t, s)
			want := map[Overflow][]int{OverflowDropNewest: {0, 1, 2}, OverflowDropOldest: {0, 3, 4}}[policy]
			f.mu.Lock()
			for _, id := range want {
				if f.seen[id] != 1 {
					t.Errorf("event %d delivered %d times, want 1", id, f.seen[id])
				}
			}
			if len(f.seen) != len(want) {
				t.Errorf("delivered %v, want %v", f.seen, want)
			}
			f.mu.Unlock()
			n, _ := f.lost.Load(LostDropped)
			if f.dropped.Load() != 2 || s.Stats().Dropped != 2 || reps.len() != 2 || n == nil || n.(*atomic.Int64).Load() != 2 {
				t.Errorf("dropped %d, stats %d, reported %d, lost %v; want 2 each", f.dropped.Load(), s.Stats().Dropped, reps.len(), n)
			}
		})
	}
}

// A delivery waiting out a backoff when its listener is removed is skipped
// by DropRetries: counted, told to Lost, and Flush does not wait for it.
func TestDropRetriesSkipsBackoffs(t *testing.T) {
	s, _ := newSched(t, Options{Workers: 2, Observed: true})
	f := newFake("failing")
	failed := make(chan struct{}, 1)
	f.run = func(ev, int) (Result, error) {
		select {
		case failed <- struct{}{}:
		default:
		}
		return Retry, nil
	}
	lf := &longBackoff{fake: f}
	in := s.NewInbox(lf, Config{Name: "failing"})
	if err := s.Accept(context.Background(), []*Inbox[ev, tag]{in}, ev{id: 1}, nil, nil, true); err != nil {
		t.Fatal(err)
	}
	<-failed
	waitFor(t, "the retry to back off", func() bool { return s.Stats().Retried == 1 && s.Stats().Running == 0 })
	f.removed.Store(true)
	s.DropRetries(in)
	flush(t, s)
	n, _ := f.lost.Load(LostSkipped)
	if st := s.Stats(); st.Skipped != 1 || st.Queued != 0 || f.skipped.Load() != 1 || n == nil {
		t.Errorf("stats %+v, listener skipped %d, lost %v; want one skipped", st, f.skipped.Load(), n)
	}
}

// longBackoff backs off for an hour: only DropRetries or Close ends it.
type longBackoff struct{ *fake }

func (*longBackoff) Backoff(int) time.Duration { return time.Hour }

// A handler that ends its goroutine (runtime.Goexit, as t.FailNow does) is
// counted as failed through Listener.Exited and reported; the rest of its
// batch goes back to the mailbox and runs on another worker, so nothing is
// lost and Flush returns.
func TestGoexitInAHandlerLosesNothing(t *testing.T) {
	const events = 200
	s, reps := newSched(t, Options{Workers: 2})
	f := newFake("goexit")
	f.run = func(e ev, _ int) (Result, error) {
		if e.id == 50 {
			runtime.Goexit()
		}
		return Delivered, nil
	}
	in := s.NewInbox(f, Config{Name: "goexit", Ordered: true})
	for id := range events {
		if err := s.Accept(context.Background(), []*Inbox[ev, tag]{in}, ev{id: id, seq: id}, nil, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, s)
	f.mu.Lock()
	if len(f.seen) != events-1 || f.seen[50] != 0 {
		t.Errorf("%d events delivered (event 50: %d), want every one but 50", len(f.seen), f.seen[50])
	}
	f.mu.Unlock()
	st := s.Stats()
	if f.exited.Load() != 1 || st.Failed != 1 || st.Delivered != events-1 || reps.len() != 1 {
		t.Errorf("exited %d, stats %+v, reported %d; want 1 failed, %d delivered", f.exited.Load(), st, reps.len(), events-1)
	}
}

// Workers with nothing to do exit after IdleAfter (to twice that), so an
// idle scheduler holds no goroutine, and start again when work comes.
func TestIdleWorkersExit(t *testing.T) {
	s, _ := newSched(t, Options{Workers: 4, IdleAfter: 5 * time.Millisecond})
	f := newFake("plain")
	in := s.NewInbox(f, Config{Name: "plain"})
	for round := range 2 {
		for id := range 100 {
			if err := s.Accept(context.Background(), []*Inbox[ev, tag]{in}, ev{id: round*100 + id}, nil, nil, true); err != nil {
				t.Fatal(err)
			}
		}
		flush(t, s)
		waitFor(t, "idle workers to exit", func() bool { w, _ := s.Workers(); return w == 0 })
	}
	if n := f.delivered.Load(); n != 200 {
		t.Errorf("delivered %d, want 200", n)
	}
}
