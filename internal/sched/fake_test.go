package sched

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// ev is the fake event: which emitter sent it, its sequence number there,
// and an id unique over the test.
type ev struct {
	id, emitter, seq int
	key              string
}

// tag is what an emit attaches to a delivery (a context, to the eventbus).
type tag struct{ emit int }

// fake is a listener that records what it runs. run, when set, decides each
// attempt's result; it runs in the worker.
type fake struct {
	name string
	run  func(e ev, attempt int) (Result, error)

	mu   sync.Mutex
	seen map[int]int    // id → deliveries that ended (delivered, failed or skipped)
	last map[[2]any]int // (key, emitter) → last seq run, for order checks
	bad  []string       // order violations

	delivered, skipped, dropped, exited atomic.Uint64
	removed                             atomic.Bool
	lost                                sync.Map // why → *atomic.Int64
}

func newFake(name string) *fake {
	return &fake{name: name, seen: map[int]int{}, last: map[[2]any]int{}}
}

func (f *fake) Deliver(named *tag, e ev, attempt int, _ int64, mayRetry bool) (Result, error) {
	r, err := Delivered, error(nil)
	if f.run != nil {
		r, err = f.run(e, attempt)
	}
	if r == Retry && !mayRetry {
		r = Failed
	}
	if r == Retry {
		return r, nil
	}
	f.mu.Lock()
	f.seen[e.id]++
	if named != nil && named.emit != e.emitter {
		f.bad = append(f.bad, f.name+": a delivery carries another emit's value")
	}
	f.mu.Unlock()
	return r, err
}

// checkOrder records that e starts now, and a violation if an earlier event
// of the same key and emitter starts after it.
func (f *fake) checkOrder(e ev) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := [2]any{e.key, e.emitter}
	if last, ok := f.last[k]; ok && e.seq <= last {
		f.bad = append(f.bad, f.name+": out of order")
	}
	f.last[k] = e.seq
}

func (f *fake) Delivered(n uint64) { f.delivered.Add(n) }
func (f *fake) Skipped(n uint64)   { f.skipped.Add(n) }
func (f *fake) Dropped(_ *tag, _ ev, _ int, _ int) error {
	f.dropped.Add(1)
	return errors.New("dropped")
}
func (f *fake) Exited(*tag, ev, int, bool) (Result, error) {
	f.exited.Add(1)
	return Failed, errors.New("exited")
}
func (f *fake) Lost(_ *tag, _ ev, _ int, _ int64, why Loss, _ bool) {
	n, _ := f.lost.LoadOrStore(why, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
}
func (f *fake) Backoff(attempt int) time.Duration {
	return time.Duration(attempt) * 10 * time.Microsecond
}
func (f *fake) Removed() bool { return f.removed.Load() }

// RunBatch declines: the worker runs the fake's batches through Deliver
// (batcher runs them itself).
func (f *fake) RunBatch(*Batch[ev, tag]) bool { return false }

// newSched returns a scheduler with its invariant checker on, closed when
// the test ends, and a channel that collects the errors it reports.
func newSched(t *testing.T, o Options) (*Scheduler[ev, tag], *reports) {
	t.Helper()
	r := &reports{}
	o.Report = r.add
	o.CheckInvariants = true
	if o.QueueSize == 0 {
		o.QueueSize = 1024
	}
	s := New[ev, tag](o)
	t.Cleanup(func() {
		s.SetClosed()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, _, err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, r
}

// reports collects the errors a scheduler reports.
type reports struct {
	mu   sync.Mutex
	errs []error
}

func (r *reports) add(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *reports) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs)
}

// flush is Flush with a generous deadline.
func flush(t *testing.T, s *Scheduler[ev, tag]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// gate blocks handlers until opened.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate() *gate  { return &gate{ch: make(chan struct{})} }
func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }
func (g *gate) wait() { <-g.ch }

// waitFor polls cond, a handshake on the scheduler's state, for up to a
// minute (a generous allowance: it returns as soon as cond holds).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func recordMax(peak *atomic.Int32, v int32) {
	for {
		p := peak.Load()
		if v <= p || peak.CompareAndSwap(p, v) {
			return
		}
	}
}

// batcher is a fake that runs its batches itself (RunBatch): it
// claims each delivery with Next, runs it as fake.Deliver does (a Retry is
// a failure: a listener that runs its batches does not retry), and settles those that did
// not deliver. It counts the batches it ran.
type batcher struct {
	*fake
	batches atomic.Int64
}

func newBatcher(name string) *batcher { return &batcher{fake: newFake(name)} }

func (b *batcher) RunBatch(bt *Batch[ev, tag]) bool {
	b.batches.Add(1)
	for {
		named, e := bt.Next()
		if e == nil {
			return true
		}
		if cn, ce := bt.Current(); cn != named || ce != e {
			b.mu.Lock()
			b.bad = append(b.bad, b.name+": Current is not the delivery Next returned")
			b.mu.Unlock()
		}
		if r, err := b.Deliver(named, *e, 0, 0, false); r != Delivered {
			bt.Settle(r, err)
		}
	}
}

// emitFrom accepts perEmitter events from each of emitters goroutines at
// once into to, whose listener at keyedAt is keyed (over keys keys); one
// event in three carries a value for every listener. It returns once every
// emit has returned.
func emitFrom(t *testing.T, s *Scheduler[ev, tag], to []*Inbox[ev, tag], emitters, perEmitter, keys, keyedAt int) {
	t.Helper()
	var wg sync.WaitGroup
	for em := range emitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range perEmitter {
				e := ev{id: em*perEmitter + seq, emitter: em, seq: seq, key: "k" + strconv.Itoa(seq%keys)}
				ks := make([]string, len(to))
				ks[keyedAt] = e.key
				var named []tag
				if seq%3 == 0 {
					named = make([]tag, len(to))
					for i := range named {
						named[i] = tag{emit: em}
					}
				}
				if err := s.Accept(context.Background(), to, e, ks, named, true); err != nil {
					t.Errorf("accept: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// checkRunOnce checks that each fake ran each of the events once, and saw
// no order or value broken, and returns the deliveries they counted as
// delivered in all.
func checkRunOnce(t *testing.T, fakes []*fake, events int) (delivered uint64) {
	t.Helper()
	for _, f := range fakes {
		f.mu.Lock()
		if len(f.seen) != events {
			t.Errorf("%s: %d events run, want %d", f.name, len(f.seen), events)
		}
		for id, n := range f.seen {
			if n != 1 {
				t.Errorf("%s: event %d run %d times", f.name, id, n)
			}
		}
		for _, b := range f.bad {
			t.Error(b)
		}
		f.mu.Unlock()
		delivered += f.delivered.Load()
	}
	return delivered
}
