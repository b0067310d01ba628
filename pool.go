package eventbus

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The worker pool.
//
// Emit turns an event into deliveries and queues them under one mutex: one
// delivery in the shared queue for all the route's plain listeners, run in
// priority order by whichever worker takes it, and one delivery in the
// mailbox of each listener that has a delivery mode (Ordered, OrderedBy,
// Concurrency). Pushing into a mailbox at accept time is what makes its
// order the accept order; a mailbox runs at most `limit` deliveries at once,
// and a mailbox that may start one sits in the ready list, so no worker ever
// parks waiting for a listener's turn.
//
// Workers take deliveries in batches (see worker.go); an idle worker steals
// what another has taken but not started. The bound (capacity) counts
// queued deliveries, shared and mailbox alike; a worker's batch in hand is
// not counted, so memory is bounded by capacity + workers × _batchSize
// deliveries.

// delivery is one unit of queued work.
type delivery[T any] struct {
	ctx     context.Context
	ev      Event[T]
	to      []*entry[T] // shared queue: the listeners to run; mailbox: nil
	ep      *epoch
	attempt int // attempts that already failed (Retry)
}

// epoch groups the deliveries accepted between two Flush calls.
type epoch struct {
	pending int
	done    chan struct{} // made when sealed by Flush; closed when this and every older epoch are done
}

// mailbox holds the deliveries of one listener with a delivery mode (or of
// one key of an OrderedBy listener).
type mailbox[T any] struct {
	e        *entry[T]
	key      string
	keyed    bool
	q        deque[delivery[T]]
	active   int
	limit    int
	queued   bool // in the ready list or in the gate's waiting list
	backoffs int  // its deliveries waiting out a retry backoff

	// busy list links: every mailbox that is not idle is in it.
	tracked    bool
	prev, next *mailbox[T]
}

func (mb *mailbox[T]) idle() bool {
	return mb.q.len() == 0 && mb.active == 0 && mb.backoffs == 0 && !mb.queued
}

// paused reports whether mb must wait for a retry before starting anything:
// an ordered mailbox (limit 1) keeps its order by running the retry first;
// a Concurrency(n > 1) mailbox, which promises no order, does not pause.
func (mb *mailbox[T]) paused() bool {
	return mb.limit == 1 && mb.backoffs > 0
}

// gate limits the keys of an OrderedBy listener that run at once.
type gate[T any] struct {
	limit   int // 0: no limit
	active  int
	waiting deque[*mailbox[T]]
}

type scheduler[T any] struct {
	m *EventManager[T]

	// ctx is the parent of every listener context on the pool; cancel is
	// called when Close gives up waiting.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	work     sync.Cond // idle workers wait here
	shared   deque[delivery[T]]
	ready    deque[*mailbox[T]]
	capacity int
	units    int // queued deliveries, counted against capacity
	queued   int // queued deliveries, one per listener
	running  int // deliveries being run, one per listener
	backoff  int // deliveries waiting out a retry backoff
	timers   map[*retryTimer[T]]struct{}

	maxWorkers int
	workers    int // started and not yet exited
	idle       int // waiting on work and not yet signalled

	roomWaiters int
	room        chan struct{} // closed when room frees up for waiting emitters

	closed   bool
	closing  chan struct{} // closed by Close: wakes emitters waiting for room
	aborted  atomic.Bool   // Close gave up waiting: drop instead of run
	busy     *mailbox[T]   // head of the list of mailboxes that are not idle
	spare    []*mailbox[T] // retired key mailboxes, for reuse
	done     chan struct{} // closed once closed and every worker has exited (see finish)
	finished bool          // done is closed

	hands []*hand[T] // the batches of the workers, for stealing

	cur    *epoch
	sealed deque[*epoch]

	stats counters // deliveries made by the pool; guarded by mu
}

type retryTimer[T any] struct {
	t  *time.Timer
	d  delivery[T]
	mb *mailbox[T] // nil for a shared-queue delivery
}

func newScheduler[T any](m *EventManager[T], o *options) *scheduler[T] {
	s := &scheduler[T]{
		m:          m,
		capacity:   o.queueSize,
		maxWorkers: o.workers,
		closing:    make(chan struct{}),
		done:       make(chan struct{}),
		cur:        &epoch{},
		timers:     map[*retryTimer[T]]struct{}{},
	}
	s.work.L = &s.mu
	s.ctx, s.cancel = context.WithCancel(context.WithValue(context.Background(), reentryKey{}, m))
	return s
}

// accept queues ev for the listeners of rt; keys holds the OrderedBy key of
// each of rt.boxed (nil when none is keyed). wait says whether to wait for
// room (until ctx is done) rather than fail with ErrQueueFull when there is no
// room. An emit from inside a listener of this EventManager (see reentrant)
// may use the reserve and never waits.
func (s *scheduler[T]) accept(ctx, lctx context.Context, rt *route[T], ev Event[T], keys []string, wait bool) error {
	need := len(rt.boxed)
	if len(rt.plain) > 0 {
		need++
	}
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		if s.units+need <= s.capacity || s.units == 0 {
			break
		}
		if s.m.reentrant(ctx) {
			if s.units+need <= 2*s.capacity {
				break
			}
			units := s.units
			s.mu.Unlock()
			return fmt.Errorf("%w: %d deliveries queued, reserve for emits from listeners used up", ErrQueueFull, units)
		}
		if !wait {
			units := s.units
			s.mu.Unlock()
			return fmt.Errorf("%w: %d deliveries queued", ErrQueueFull, units)
		}
		if err := s.waitRoom(ctx); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	ep := s.cur
	if len(rt.plain) > 0 {
		s.shared.push(delivery[T]{ctx: lctx, ev: ev, to: rt.plain, ep: ep})
		ep.pending++
		s.units++
		s.queued += len(rt.plain)
		s.wake()
	}
	for i, e := range rt.boxed {
		mb := e.box
		if e.keyFn != nil {
			mb = s.keyBox(e, keys[i])
		}
		if !mb.tracked {
			s.track(mb)
		}
		mb.q.push(delivery[T]{ctx: lctx, ev: ev, ep: ep})
		ep.pending++
		s.units++
		s.queued++
		s.makeReady(mb)
	}
	s.stats.emitted++
	s.stats.matched += uint64(len(rt.all))
	s.mu.Unlock()
	return nil
}

// waitRoom waits, with s.mu held on entry and on return, until room may have
// freed up, Close was called, or ctx is done.
func (s *scheduler[T]) waitRoom(ctx context.Context) error {
	if s.room == nil {
		s.room = make(chan struct{})
	}
	room := s.room
	s.roomWaiters++
	s.mu.Unlock()
	var err error
	select {
	case <-room:
	case <-s.closing:
	case <-ctx.Done():
		err = fmt.Errorf("%w: %w", ErrQueueFull, ctx.Err())
	}
	s.mu.Lock()
	s.roomWaiters--
	return err
}

// freed is called with s.mu held after units went down.
func (s *scheduler[T]) freed() {
	if s.roomWaiters > 0 && s.room != nil {
		close(s.room)
		s.room = nil
	}
}

// wake makes sure a worker will look at the queues: an idle one is
// signalled, or a new one started while under the limit.
func (s *scheduler[T]) wake() {
	switch {
	case s.idle > 0:
		s.idle--
		s.work.Signal()
	case s.workers < s.maxWorkers:
		s.workers++
		go s.run()
	}
}

func (s *scheduler[T]) keyBox(e *entry[T], key string) *mailbox[T] {
	mb := e.keys[key]
	if mb == nil {
		if n := len(s.spare); n > 0 {
			mb = s.spare[n-1]
			s.spare[n-1] = nil
			s.spare = s.spare[:n-1]
		} else {
			mb = &mailbox[T]{keyed: true, limit: 1}
		}
		mb.e, mb.key = e, key
		if e.keys == nil {
			e.keys = map[string]*mailbox[T]{}
		}
		e.keys[key] = mb
	}
	return mb
}

// makeReady queues mb for a worker if it can start a delivery now, or in
// its gate's waiting list if only the gate stops it.
func (s *scheduler[T]) makeReady(mb *mailbox[T]) {
	if mb.queued || mb.paused() || mb.q.len() == 0 || mb.active >= mb.limit {
		return
	}
	mb.queued = true
	if g := mb.e.gate; g != nil && g.limit > 0 && g.active >= g.limit {
		g.waiting.push(mb)
		return
	}
	s.ready.push(mb)
	s.wake()
}

// retire takes an idle mailbox off the busy list. A keyed listener keeps
// the idle mailboxes of up to _idleKeys keys, so that keys that come back
// (an order's next event) find theirs; past that, an idle key's mailbox is
// dropped, so keys do not accumulate, and kept for reuse while there are
// fewer than _idleKeys spares.
func (s *scheduler[T]) retire(mb *mailbox[T]) {
	if !mb.idle() || !mb.tracked {
		return
	}
	s.untrack(mb)
	if !mb.keyed {
		return
	}
	if len(mb.q.buf) > 8 {
		mb.q = deque[delivery[T]]{} // do not keep a burst's buffer
	}
	if len(mb.e.keys) <= _idleKeys {
		return // kept for the key's next event
	}
	delete(mb.e.keys, mb.key)
	mb.e, mb.key = nil, ""
	if len(s.spare) < _idleKeys {
		s.spare = append(s.spare, mb)
	}
}

// track adds mb to the busy list.
func (s *scheduler[T]) track(mb *mailbox[T]) {
	mb.tracked = true
	mb.prev, mb.next = nil, s.busy
	if s.busy != nil {
		s.busy.prev = mb
	}
	s.busy = mb
}

// untrack removes mb from the busy list.
func (s *scheduler[T]) untrack(mb *mailbox[T]) {
	if mb.prev != nil {
		mb.prev.next = mb.next
	} else {
		s.busy = mb.next
	}
	if mb.next != nil {
		mb.next.prev = mb.prev
	}
	mb.tracked, mb.prev, mb.next = false, nil, nil
}

// finishBox accounts for a mailbox batch, with s.mu held. Deliveries from
// batch[ran] on were not finished: the first is retried after a backoff,
// and the rest go back to the front of the mailbox, in order, behind it
// (unless Close gave up meanwhile: then they are abandoned). Without retry
// they all go back, none retried.
func (s *scheduler[T]) finishBox(mb *mailbox[T], batch []delivery[T], ran int, retry bool) {
	for i := range ran {
		s.complete(batch[i].ep)
	}
	switch {
	case ran == len(batch):
	case retry && s.aborted.Load():
		// Close gave up while this batch ran: the failed delivery is not
		// retried and the rest is not queued again.
		for i := ran; i < len(batch); i++ {
			s.stats.abandoned++
			s.complete(batch[i].ep)
		}
	default:
		back := batch[ran:]
		if retry {
			back = batch[ran+1:]
		}
		for i := len(back) - 1; i >= 0; i-- {
			mb.q.pushFront(back[i])
			s.units++
			s.queued++
		}
		if retry {
			d := batch[ran]
			d.attempt++
			mb.backoffs++
			s.startBackoff(d, mb)
		}
	}
	mb.active--
	if g := mb.e.gate; g != nil && mb.active == 0 {
		g.active--
		if g.waiting.len() > 0 {
			w := g.waiting.pop()
			w.queued = false
			s.makeReady(w)
		}
	}
	s.makeReady(mb)
	s.retire(mb)
}

// startBackoff schedules d to run again after its backoff, with s.mu held.
// The delivery stays pending (Flush and Close wait for it).
func (s *scheduler[T]) startBackoff(d delivery[T], mb *mailbox[T]) {
	s.backoff++
	e := mb.entry(d)
	rt := &retryTimer[T]{d: d, mb: mb}
	s.timers[rt] = struct{}{}
	rt.t = time.AfterFunc(e.retry.backoff(d.attempt), func() { s.retryDue(rt) })
}

// entry returns the listener that d is for: the mailbox's, or the one
// listener of a shared-queue retry when mb is nil.
func (mb *mailbox[T]) entry(d delivery[T]) *entry[T] {
	if mb != nil {
		return mb.e
	}
	return d.to[0]
}

func (s *scheduler[T]) retryDue(rt *retryTimer[T]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.timers[rt]; !ok {
		return // abort stopped it
	}
	delete(s.timers, rt)
	s.backoff--
	if s.aborted.Load() {
		s.abandon(rt.d, false)
		if rt.mb != nil {
			rt.mb.backoffs--
			s.retire(rt.mb)
		}
		s.finish()
		s.idle = 0
		s.work.Broadcast() // the pool may have drained
		return
	}
	if rt.mb != nil {
		rt.mb.backoffs--
		rt.mb.q.pushFront(rt.d)
		s.units++
		s.queued++
		s.makeReady(rt.mb)
		return
	}
	s.requeue(rt.d)
	s.wake()
}

// complete marks one delivery of epoch ep finished, with s.mu held.
func (s *scheduler[T]) complete(ep *epoch) {
	ep.pending--
	if ep.pending == 0 && ep.done != nil {
		s.advance()
	}
}

// advance closes the done channel of every sealed epoch that is finished
// and has no unfinished older epoch.
func (s *scheduler[T]) advance() {
	for s.sealed.len() > 0 {
		ep := s.sealed.buf[s.sealed.head]
		if ep.pending > 0 {
			return
		}
		s.sealed.pop()
		close(ep.done)
	}
}

// flush waits until every delivery accepted before the call is finished.
func (s *scheduler[T]) flush(ctx context.Context) error {
	s.mu.Lock()
	old := s.cur
	if old.pending == 0 && s.sealed.len() == 0 {
		s.mu.Unlock()
		return nil
	}
	old.done = make(chan struct{})
	s.sealed.push(old)
	s.cur = &epoch{}
	s.advance()
	s.mu.Unlock()
	select {
	case <-old.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("eventbus: flush: %w", ctx.Err())
	}
}

// close stops accepting, waits until every accepted delivery is finished and
// every worker has exited, or until ctx is done: then it abandons what is
// still queued, cancels the listeners' contexts and reports how many
// deliveries it abandoned.
func (s *scheduler[T]) close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
		s.finish()
		s.idle = 0
		s.work.Broadcast()
	}
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
	}
	n, running := s.abort()
	return fmt.Errorf("eventbus: close: %w: %d deliveries abandoned, %d in workers' hands (abandoned unless already running)", ctx.Err(), n, running)
}

// abort drops everything queued or backing off, counts it as abandoned and
// cancels the contexts of running listeners. Workers abandon the rest of the
// batch in their hands, so the count it returns is a lower bound; Stats has
// the final one.
func (s *scheduler[T]) abort() (abandoned uint64, running int) {
	s.aborted.Store(true)
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.stats.abandoned
	for s.shared.len() > 0 {
		s.abandon(s.shared.pop(), true)
	}
	for s.ready.len() > 0 {
		s.ready.pop().queued = false
	}
	for mb := s.busy; mb != nil; mb = mb.next {
		for mb.q.len() > 0 {
			s.abandon(mb.q.pop(), true)
		}
		if g := mb.e.gate; g != nil {
			for g.waiting.len() > 0 {
				g.waiting.pop().queued = false
			}
		}
	}
	for rt := range s.timers {
		if rt.t.Stop() {
			delete(s.timers, rt)
			s.backoff--
			s.abandon(rt.d, false)
			if rt.mb != nil {
				rt.mb.backoffs--
			}
		}
	}
	for mb := s.busy; mb != nil; {
		next := mb.next
		s.retire(mb)
		mb = next
	}
	s.finish()
	s.idle = 0
	s.work.Broadcast()
	return s.stats.abandoned - before, s.running
}

// finish closes done, once, when Close has been called and nothing is left:
// no worker, and no delivery queued, running or backing off. s.mu must be
// held. (Workers can all be gone with a retry still backing off, after a
// handler called runtime.Goexit; the retry then starts a new one.)
func (s *scheduler[T]) finish() {
	if s.closed && !s.finished && s.workers == 0 && s.units == 0 && s.running == 0 && s.backoff == 0 {
		s.finished = true
		close(s.done)
	}
}

// abandon counts the deliveries of d as abandoned, with s.mu held; queued
// says d was in a queue (rather than waiting out a backoff).
func (s *scheduler[T]) abandon(d delivery[T], queued bool) {
	n := 1
	if d.to != nil {
		n = len(d.to)
	}
	s.stats.abandoned += uint64(n)
	if queued {
		s.units--
		s.queued -= n
	}
	s.complete(d.ep)
}

// snapshot returns the pool's counters, read together.
func (s *scheduler[T]) snapshot() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &s.stats
	return Stats{
		Emitted:   c.emitted,
		Matched:   c.matched,
		Delivered: c.delivered,
		Failed:    c.failed,
		Panicked:  c.panicked,
		Skipped:   c.skipped,
		Abandoned: c.abandoned,
		Retried:   c.retried,
		Queued:    s.queued + s.backoff,
		Running:   s.running,
	}
}

// pendingFor counts the deliveries waiting in e's mailboxes, including one
// waiting out a retry backoff.
func (s *scheduler[T]) pendingFor(e *entry[T]) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	if e.box != nil {
		n += e.box.q.len()
		n += e.box.backoffs
	}
	for _, mb := range e.keys {
		n += mb.q.len()
		n += mb.backoffs
	}
	return n
}
