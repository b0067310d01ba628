// Package sched runs deliveries on a bounded, elastic pool of workers: the
// scheduler behind the eventbus package's Emit. It imports nothing from the
// eventbus: it knows listeners through the Listener interface (run one
// delivery or, if it will, a whole batch, claiming each delivery from the
// scheduler; count or report a lost one), their
// scheduling settings through a Config read once by NewInbox, events as
// opaque values of type E, and the per-listener value an emit may attach to
// each delivery (a context, to the eventbus) as an opaque *C. Its errors
// are its own (ErrClosed, ErrReentrant, *QueueFullError); its user turns
// them into public ones.
package sched

import (
	"context"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// The scheduler.
//
// Model. Every listener has an inbox (inbox.go, made by NewInbox from its
// Config): its own bounded backlog, held in one mailbox, or one mailbox per
// key for a Keyed listener (the eventbus's OrderedBy). Accept pushes one
// delivery into the mailbox of every listener it is given, all under s.mu,
// so every mailbox sees the same accept order (admit.go). The listener is
// the unit of fairness and of the worker bound: a listener that may start a
// batch (it runs fewer batches than its limit, and has a delivery, or when
// keyed a key, that may start: queued, not running, not paused for a
// retry) waits in the ready list, once, first come first served. A worker
// (worker.go) takes one batch from the listener at the head of the list
// (from its mailbox, or from the key at the head of the listener's own
// ready list of keys), and the listener goes back to the end of the list if
// it may start another. The worker runs the batch without the lock (one
// Listener.RunBatch call for the whole batch if the listener takes it,
// batch.go; else one Listener.Deliver call per delivery), and accounts for
// it under the lock.
// So listeners take turns whatever their number of keys; a delivery never
// waits behind another listener's handler while a worker is idle; and a
// listener runs at most its limit of batches (workers) at once, stalled
// ones included: Options.Workers for a plain listener, 1 for Ordered, n for
// Concurrency n, and for Keyed one per key and n (Concurrency) or
// Options.Workers over all keys.
//
// Time. Batches are bounded in count (_batchSize) and in time: the watchdog
// (watchdog.go), armed while a listener waits for a worker, tells a worker
// that has been on one batch since its previous look (at least stallAfter)
// to yield, so the unstarted rest goes back to its mailbox and the waiting
// listener's turn comes within about two stall thresholds plus one
// invocation.
//
// Blocking. A worker whose handler has not returned since the watchdog's
// previous look is a suspect. As many suspects as runtime/metrics shows
// cannot be computing (suspects minus the process's running and runnable
// goroutines) are counted blocked, longest stuck first; one counted blocked
// at a look whose count no garbage collection can have skewed is stalled at
// the next, as is any suspect stuck for
// _computeLimit stall thresholds: the deliveries of its batch that it has
// not started go back to their mailbox, and another worker is started in
// its place, as the Go runtime hands a blocked thread's P to a new one. A
// stalled worker that returns exits if enough workers run without it. So at
// most maxLive workers run without being stalled, handlers that compute
// are not replaced (at most maxLive compute at once, one more while a
// replacement starts), and at most maxWorkers worker goroutines exist.
//
// Idle. A worker with nothing to do for idleAfter (to twice that) exits
// (watchdog.go), so an idle scheduler holds no goroutine. Retry backoffs
// wait in one min-heap with one timer (retry.go). So the pool's goroutines
// are its workers plus, at moments, the callbacks of its three timers
// (watchdog, retries, idle).
//
// Re-entrancy. A worker never waits for backlog room (admit.go): an Accept
// from any Scheduler's worker goroutine (see goid.go), whatever its type
// parameters, may use a reserve of the listener's bound again, then fails
// with a *QueueFullError. Flush, Close and Quiesce called on a worker of
// their own Scheduler that they would wait for return ErrReentrant. A
// goroutine a handler starts is not a worker: its Accept waits like any
// other.
//
// Locks. s.mu guards every field below it, and the inboxes' and mailboxes'
// mutable fields. Lock order: the user's own lock may be held when s.mu is
// taken (the eventbus holds its registry's, EventManager.mu, around
// SetClosed, to make ErrClosed final against RegisterListener), never the
// reverse. Listener methods (so handlers, observers and the error handler
// they lead to), Options.Report and timer callbacks are never called with
// s.mu held, but for Listener.Backoff and Listener.Removed, which only read.
// runtime/metrics is read with s.mu held (it takes only runtime-internal
// locks).
//
// Invariants (checked by checkInvariants in tests, after every accounting
// step, when s.check is set):
//
//   - s.queued = Σ over mailboxes of len(q);
//     s.backoff = len(s.retries) = Σ mailbox.backoffs, each retry's index
//     is its place in the heap, and the heap is ordered by due time;
//     inbox.backlog = Σ over its mailboxes of len(q) + backoffs.
//   - s.running = Σ over workers' hands of hand.held.
//   - the epochs' pending counts add up to queued + running + backoff, and
//     so do the records' refs (s.refs).
//   - inbox.active = Σ mailbox.active ≤ inbox.limit; a key mailbox runs at
//     most one batch.
//   - a listener is in the ready list at most once, marked queued, and
//     below its limit; a key is in its listener's ready list at most once,
//     marked queued, and tracked; an unkeyed mailbox is never marked queued.
//   - a mailbox is in the busy list unless idle.
//   - s.stalled ≤ s.workers ≤ s.maxWorkers; a worker marked to retire (idle
//     timer) is parked; a parked worker runs no batch; s.idle counts at
//     most the parked workers (a wake signals, with s.mu held, the worker
//     it takes out of the count).

// Scheduler runs the deliveries of events of type E to its listeners on a
// bounded, elastic pool of workers. C is the type of the value an Accept
// may attach to each delivery (see Accept). Make one with New; it starts no
// goroutine until Accept needs a worker.
type Scheduler[E, C any] struct {
	// Set at construction, then read-only.
	maxLive    int           // Options.Workers: workers that may run at once, not counting stalled ones
	maxWorkers int           // Options.MaxWorkers: every worker goroutine, stalled ones included
	queueSize  int           // Options.QueueSize: the default backlog bound
	overflow   Overflow      // Options.Overflow: the default overflow policy
	stallAfter time.Duration // how long a handler runs before its worker counts as stalled
	idleAfter  time.Duration // how long a worker stays parked with nothing to do before it exits
	report     func(error)   // Options.Report; called with no lock held
	observed   bool          // Listener.Lost is called, and Accept records when it accepted
	ctx        context.Context
	cancel     context.CancelFunc // cancels ctx, the parent of pool listeners' contexts, when Close gives up

	// closed is set once, under mu, by close; emitters read it without the
	// lock, so that once any call has seen it every later call does too.
	closed atomic.Bool
	// aborted is set once by abort (Close gave up waiting); workers read it
	// without the lock before each delivery.
	aborted atomic.Bool
	// check makes every accounting step call checkInvariants (tests only).
	check bool
	// gone counts worker goroutines and timer firings (timer.go) from their
	// start (scheduling) to their last step, so that Close can wait until
	// none is left; it synchronises itself.
	gone sync.WaitGroup

	mu   sync.Mutex
	work sync.Cond // idle workers wait here; L is &mu

	// Queues.
	ready   deque[*Inbox[E, C]] // listeners that may start a batch, in the order they became ready
	busy    *mailbox[E, C]      // head of the list of every mailbox that is not idle
	tracked int                 // mailboxes in the busy list
	checks  uint64              // verify calls (tests only)
	spare   []*mailbox[E, C]    // retired key mailboxes, for reuse

	// Retries (retry.go): deliveries waiting out a backoff, by due time,
	// and the one timer armed for the earliest while any waits.
	born    time.Time // the origin of s.now
	retries retryHeap[E, C]
	retryT  poolTimer // timer.go

	// Workers.
	hands      []*hand[E, C]    // one per worker goroutine
	workers    int              // worker goroutines started and not yet exited
	stalled    int              // workers whose handler has run past stallAfter
	idle       int              // workers waiting on work and not yet signalled
	watchdog   poolTimer        // replaces stalled workers, bounds batches in time (watchdog.go)
	suspects   []*hand[E, C]    // the watchdog's scratch list
	probe      []metrics.Sample // the watchdog's runtime metrics
	gcPrev     [2]uint64        // completed GC cycles at the watchdog's previous look and the one before ([0] the latest)
	looks      int              // the watchdog's looks, at most 2 (enough for gcPrev)
	markedPrev bool             // a GC cycle was marking at the watchdog's previous look
	reapTicks  uint64           // times the idle timer fired
	reaper     poolTimer        // retires workers parked for idleAfter (watchdog.go)

	// Accounting (see Stats).
	queued  int // deliveries in mailboxes
	running int // deliveries in workers' hands
	backoff int // deliveries waiting out a retry backoff
	stats   Counters
	refs    int          // Σ records' refs: deliveries queued, running or backing off
	free    []*record[E] // recycled records (record.go)

	// Flush epochs (flush.go).
	cur    *epoch
	sealed deque[*epoch]

	// Shutdown (shutdown.go).
	closing  chan struct{} // closed by close: releases emitters waiting for room
	done     chan struct{} // closed once closed and nothing is left (see finish)
	finished bool          // done is closed
}

// delivery is one queued invocation of one listener: its share of an
// accepted event's record (record.go).
type delivery[E, C any] struct {
	rec     *record[E]
	named   *C  // what the emit attached for this listener (see Accept); nil: nothing
	attempt int // attempts that already failed (Retry)
}

// Options configure a Scheduler.
type Options struct {
	// Workers is how many workers may run at once, not counting stalled
	// ones; the default limit of a plain or keyed listener. At least 1.
	Workers int
	// MaxWorkers bounds every worker goroutine, stalled ones included;
	// raised to Workers if smaller. 0: DefaultMaxWorkers.
	MaxWorkers int
	// QueueSize bounds each listener's backlog unless its Config says
	// otherwise. At least 1.
	QueueSize int
	// Overflow is what a full backlog does unless a listener's Config says
	// otherwise.
	Overflow Overflow
	// StallAfter is how long a handler runs before its worker counts as
	// stalled (0: DefaultStallAfter); IdleAfter how long a worker with
	// nothing to do waits before it exits (0: DefaultIdleAfter).
	StallAfter, IdleAfter time.Duration
	// Report receives the errors of failed deliveries (those Listener
	// methods return), with no lock held, on the goroutine where they
	// happen. Required.
	Report func(error)
	// Observed makes the scheduler call Listener.Lost and record when it
	// accepts each event (Listener.Deliver's accepted).
	Observed bool
	// CheckInvariants makes every accounting step check the scheduler's
	// invariants, panicking on a broken one (tests).
	CheckInvariants bool
}

const (
	// DefaultStallAfter is how long a handler may run before its worker is
	// considered stalled and replaced while other work waits.
	DefaultStallAfter = 5 * time.Millisecond
	// _computeLimit is how many stall thresholds a handler that has not
	// returned may be taken for computing, and its worker not replaced,
	// while the process has no CPU to spare (watchdog.go).
	_computeLimit = 200
	// DefaultIdleAfter is how long (to twice that) a worker with nothing to
	// do waits for work before it exits.
	DefaultIdleAfter = time.Second
	// DefaultMaxWorkers bounds the worker goroutines, stalled included,
	// when Options.MaxWorkers is 0 (or Options.Workers is larger).
	DefaultMaxWorkers = 256
	// _batchSize is how many queued deliveries of one listener a worker
	// takes at once.
	_batchSize = 64
	// _idleKeys bounds how many idle key mailboxes a keyed listener keeps,
	// and how many retired ones a pool keeps for reuse.
	_idleKeys = 1024
)

// New returns a Scheduler configured by o.
func New[E, C any](o Options) *Scheduler[E, C] {
	if o.MaxWorkers == 0 {
		o.MaxWorkers = DefaultMaxWorkers
	}
	if o.StallAfter == 0 {
		o.StallAfter = DefaultStallAfter
	}
	if o.IdleAfter == 0 {
		o.IdleAfter = DefaultIdleAfter
	}
	s := &Scheduler[E, C]{
		maxLive:    o.Workers,
		maxWorkers: max(o.MaxWorkers, o.Workers),
		queueSize:  o.QueueSize,
		overflow:   o.Overflow,
		stallAfter: o.StallAfter,
		idleAfter:  o.IdleAfter,
		report:     o.Report,
		observed:   o.Observed,
		check:      o.CheckInvariants,
		closing:    make(chan struct{}),
		done:       make(chan struct{}),
		cur:        &epoch{},
		born:       time.Now(),
	}
	s.work.L = &s.mu
	s.watchdog.f, s.reaper.f, s.retryT.f = s.watch, s.reap, s.retriesDue
	s.watchdog.live, s.reaper.live, s.retryT.live = &s.gone, &s.gone, &s.gone
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Context returns the scheduler's context, cancelled when Close gives up
// waiting: the parent of the contexts its listeners' handlers get.
func (s *Scheduler[E, C]) Context() context.Context { return s.ctx }

// Closed reports whether SetClosed has been called.
func (s *Scheduler[E, C]) Closed() bool { return s.closed.Load() }

// wake makes sure a worker will look at the ready list, with s.mu held: an
// idle one is signalled, or one is started while fewer than maxLive run
// unstalled; otherwise the watchdog is armed, so that a worker stuck in a
// handler is replaced and a long batch yields.
func (s *Scheduler[E, C]) wake() {
	switch {
	case s.idle > 0:
		s.idle--
		s.work.Signal()
	case s.workers-s.stalled < s.maxLive && s.workers < s.maxWorkers:
		s.start()
	default:
		s.armWatchdog() // replaces stalled workers, and bounds batches in time
	}
}

// start starts a worker goroutine, with s.mu held.
func (s *Scheduler[E, C]) start() {
	s.workers++
	h := &hand[E, C]{stuck: -1}
	h.view = Batch[E, C]{s: s, h: h}
	s.hands = append(s.hands, h)
	s.gone.Add(1) // run's last step counts it down
	go s.run(h)
}

// Stats returns the scheduler's counters, read together.
func (s *Scheduler[E, C]) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Counters: s.stats, Queued: s.queued + s.backoff, Running: s.running}
}

// Workers reports the worker goroutines and how many of them are stalled.
func (s *Scheduler[E, C]) Workers() (workers, stalled int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.workers, s.stalled
}
