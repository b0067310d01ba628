package sched

import "context"

// Inboxes: each listener's scheduling state. Adding a delivery mode means
// giving NewInbox a new configuration of limit, ordered and keyed, and
// nothing else: admission, workers, retries and shutdown treat every inbox
// alike.
//
// The listener is the unit of fairness and of the worker bound: the
// scheduler's ready list holds listeners (inboxes), each at most once, and a
// worker takes one batch from the listener at its head, which goes back to
// the end of the list if it may start another. Inside a keyed
// listener, keys wait in the listener's own ready list (in.ready) and take
// turns the same way, one batch per key at a time. A listener runs at most
// in.limit batches at once, whatever its number of keys, stalled workers
// included.

// Inbox is one listener's state in the scheduler: make it with NewInbox,
// and pass it to Accept for every event the listener gets. Its
// configuration is set by NewInbox and never changes; the rest is guarded
// by the scheduler's mu.
type Inbox[E, C any] struct {
	l        Listener[E, C]
	name     string   // Config.Name, for errors
	limit    int      // batches (so invocations, and workers) the listener runs at once
	batch    int      // deliveries a worker takes at once, at most
	ordered  bool     // a retry pauses the mailbox, to keep its order
	keyed    bool     // a mailbox per key
	bound    int      // backlog bound (Options.QueueSize, Config.QueueSize)
	overflow Overflow // what a full backlog does to an emit

	box  *mailbox[E, C]            // unkeyed listeners: the one mailbox
	keys map[string]*mailbox[E, C] // keyed: the mailboxes of keys seen lately
	peak int                       // the most keys held since keys was made (see retire)

	queued  bool                  // in the scheduler's ready list
	ready   deque[*mailbox[E, C]] // keyed: keys that may start a batch, in the order they became ready
	backlog int                   // deliveries queued in its mailboxes or waiting out a backoff
	active  int                   // batches running, over all its mailboxes
	room    chan struct{}         // made by a waiting emitter; closed when backlog < bound
	quiet   chan struct{}         // made by Quiesce; closed when active is 0
}

// mailbox holds the queued deliveries of one listener, or of one key of a
// keyed listener.
type mailbox[E, C any] struct {
	in       *Inbox[E, C]
	key      string
	keyed    bool
	q        deque[delivery[E, C]]
	active   int  // batches running from it: at most 1 for a key, in.limit otherwise
	queued   bool // a key in its listener's ready list (keyed mailboxes only)
	backoffs int  // its deliveries waiting out a retry backoff

	// busy list links: every mailbox that is not idle is in it.
	tracked    bool
	prev, next *mailbox[E, C]
}

// NewInbox makes l's scheduling state from its configuration and s's
// defaults. A plain listener runs up to Options.Workers invocations at
// once; Ordered (or Concurrency 1) one; Concurrency n n; Keyed one per key
// and, over all its keys, n under Concurrency n, else Options.Workers. It
// does not take s's lock: the inbox is s's once passed to Accept.
func (s *Scheduler[E, C]) NewInbox(l Listener[E, C], cfg Config) *Inbox[E, C] {
	in := &Inbox[E, C]{l: l, name: cfg.Name, limit: s.maxLive, batch: _batchSize, bound: s.queueSize, overflow: s.overflow, keyed: cfg.Keyed}
	if cfg.QueueSize > 0 {
		in.bound = cfg.QueueSize
	}
	if cfg.OverflowSet {
		in.overflow = cfg.Overflow
	}
	switch {
	case cfg.Keyed:
		in.ordered = true
		if cfg.Concurrency > 0 {
			in.limit = cfg.Concurrency
		}
	case cfg.Ordered:
		in.limit, in.ordered = 1, true
	case cfg.Concurrency > 0:
		in.limit, in.ordered = cfg.Concurrency, cfg.Concurrency == 1
		if cfg.Concurrency > 1 {
			// One at a time, so that n invocations run whenever n
			// deliveries wait, and Pending counts every one not started.
			in.batch = 1
		}
	}
	if !cfg.Keyed {
		in.box = &mailbox[E, C]{in: in}
	}
	return in
}

// Ordered reports whether the listener runs its deliveries (of a key) one
// at a time in order, so that a retry pauses the ones behind it.
func (in *Inbox[E, C]) Ordered() bool { return in.ordered }

// paused reports whether mb must wait for a retry before starting anything:
// an ordered mailbox keeps its order by running the retry first.
func (mb *mailbox[E, C]) paused() bool { return mb.in.ordered && mb.backoffs > 0 }

func (mb *mailbox[E, C]) idle() bool {
	return mb.q.len() == 0 && mb.active == 0 && mb.backoffs == 0 && !mb.queued
}

// mailboxFor returns the mailbox of in for an event with the given key.
func (s *Scheduler[E, C]) mailboxFor(in *Inbox[E, C], key string) *mailbox[E, C] {
	if !in.keyed {
		return in.box
	}
	mb := in.keys[key]
	if mb == nil {
		if n := len(s.spare); n > 0 {
			mb = s.spare[n-1]
			s.spare[n-1] = nil
			s.spare = s.spare[:n-1]
		} else {
			mb = &mailbox[E, C]{keyed: true}
		}
		mb.in, mb.key = in, key
		if in.keys == nil {
			in.keys = map[string]*mailbox[E, C]{}
		}
		in.keys[key] = mb
		in.peak = max(in.peak, len(in.keys))
	}
	return mb
}

// makeReady offers mb's listener to the workers if mb may start a batch
// now: a key joins its listener's ready list, and the listener joins the
// scheduler's. s.mu must be held.
func (s *Scheduler[E, C]) makeReady(mb *mailbox[E, C]) {
	in := mb.in
	if mb.keyed && !mb.queued && mb.q.len() > 0 && mb.active == 0 && !mb.paused() {
		mb.queued = true
		in.ready.push(mb)
	}
	s.offer(in)
}

// offer puts in at the end of the ready list if it may start a batch: it
// runs fewer than its limit and has a key (or, unkeyed, a delivery) that
// may start. s.mu must be held.
func (s *Scheduler[E, C]) offer(in *Inbox[E, C]) {
	if in.queued || in.active >= in.limit {
		return
	}
	if in.keyed {
		if in.ready.len() == 0 {
			return
		}
	} else if mb := in.box; mb.q.len() == 0 || mb.paused() {
		return
	}
	in.queued = true
	s.ready.push(in)
	s.wake()
}

// push queues d in mb, with s.mu held: at the back, or at the front for a
// delivery that comes back (a retry, or the rest of a stalled batch).
func (s *Scheduler[E, C]) push(mb *mailbox[E, C], d delivery[E, C], front bool) {
	if !mb.tracked {
		s.track(mb)
	}
	if front {
		mb.q.pushFront(d)
	} else {
		mb.q.push(d)
	}
	mb.in.backlog++
	s.queued++
}

// shrink records that n deliveries left in's backlog, with s.mu held, and
// releases the emitters waiting for its room once there is some.
func (s *Scheduler[E, C]) shrink(in *Inbox[E, C], n int) {
	in.backlog -= n
	if in.room != nil && in.backlog < in.bound {
		close(in.room)
		in.room = nil
	}
}

// retire takes an idle mailbox off the busy list, with s.mu held. A keyed
// listener keeps the idle mailboxes of up to _idleKeys keys, so that keys
// that come back (an order's next event) find theirs; past that, an idle
// key's mailbox is dropped, so keys do not accumulate, and kept for reuse
// while there are fewer than _idleKeys spares.
func (s *Scheduler[E, C]) retire(mb *mailbox[E, C]) {
	if !mb.idle() || !mb.tracked {
		return
	}
	s.untrack(mb)
	if !mb.keyed {
		return
	}
	if len(mb.q.buf) > 8 {
		mb.q = deque[delivery[E, C]]{} // do not keep a burst's buffer
	}
	in := mb.in
	if len(in.keys) <= _idleKeys {
		return // kept for the key's next event
	}
	delete(in.keys, mb.key)
	if in.peak > 4*_idleKeys && len(in.keys) <= in.peak/4 {
		// A Go map never shrinks: after a burst of keys, make a new one
		// of the size in use, so the memory comes back (amortized O(1):
		// at most one copy per 3/4 of the peak's keys retired).
		keys := make(map[string]*mailbox[E, C], len(in.keys))
		for k, v := range in.keys {
			keys[k] = v
		}
		in.keys, in.peak = keys, len(keys)
	}
	mb.in, mb.key = nil, ""
	mb.q = deque[delivery[E, C]]{}
	if len(s.spare) < _idleKeys {
		s.spare = append(s.spare, mb)
	}
}

// track adds mb to the busy list.
func (s *Scheduler[E, C]) track(mb *mailbox[E, C]) {
	s.tracked++
	mb.tracked = true
	mb.prev, mb.next = nil, s.busy
	if s.busy != nil {
		s.busy.prev = mb
	}
	s.busy = mb
}

// untrack removes mb from the busy list.
func (s *Scheduler[E, C]) untrack(mb *mailbox[E, C]) {
	s.tracked--
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

// Pending counts the deliveries waiting for in: queued, or waiting out a
// retry backoff.
func (s *Scheduler[E, C]) Pending(in *Inbox[E, C]) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return in.backlog
}

// Quiesce waits until no batch of in is running, or ctx is done (it then
// returns ctx.Err()). On a worker running one of in's batches it would wait
// for itself: it returns ErrReentrant.
func (s *Scheduler[E, C]) Quiesce(ctx context.Context, in *Inbox[E, C]) error {
	s.mu.Lock()
	if in.active == 0 {
		s.mu.Unlock()
		return nil
	}
	var who caller
	if who.get() == any(s) && s.runsOn(who.id, in) {
		s.mu.Unlock()
		return ErrReentrant
	}
	if in.quiet == nil {
		in.quiet = make(chan struct{})
	}
	quiet := in.quiet
	s.mu.Unlock()
	select {
	case <-quiet:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runsOn reports whether the worker with goroutine ID id is running a batch
// of in, with s.mu held.
func (s *Scheduler[E, C]) runsOn(id uint64, in *Inbox[E, C]) bool {
	for _, h := range s.hands {
		if h.goid == id {
			return h.running && h.mb.in == in
		}
	}
	return false
}
