package sched

import (
	"context"
	"runtime"
	"time"
)

// Admission and backpressure.
//
// An event is accepted whole or not at all: under s.mu, Accept checks the
// backlog of every listener it is given, then pushes one delivery into
// each. A listener whose backlog is full decides by its Overflow policy:
// wait for room (the default), fail the emit, or drop a delivery (its own
// newest or oldest) and let the event through to the others. Only the
// listeners an event goes to push back on its Accept; others are never
// delayed.
//
// Workers never wait: an Accept made on any Scheduler's worker goroutine
// may take its listeners' backlogs up to twice their bound (the reserve),
// then fails with a *QueueFullError. Waiting there could deadlock: the room
// it waits for may be freed only by the worker that waits, or by a worker
// of another Scheduler waiting on this one. An Accept that must not wait
// (wait false: the eventbus's TryEmit) needs no reserve and fails at the
// bound wherever it is called: it never reads the caller's identity (a
// stack read, goid.go). One that may wait first yields the processor
// _yieldsBeforeWait times, looking again for room each time, and reads the
// identity only if the backlog is still full: in a flood, a worker frees
// room within a yield far more often than not, and the stack read was an
// eighth of the CPU the flood took.

// caller identifies the goroutine of an Accept, lazily: finding out costs a
// stack read (goid.go), so it is done only when an Accept would otherwise
// wait, or is made while Close drains the pool (once no worker is left, an
// Accept is refused without asking).
type caller struct {
	known bool
	id    uint64 // goroutine ID
	owner any    // the scheduler whose worker it is; nil for other goroutines
}

func (c *caller) get() any {
	if !c.known {
		c.id, c.owner = workerOwner()
		c.known = true
	}
	return c.owner
}

// worker reports whether the calling goroutine is a worker of any Scheduler.
func (c *caller) worker() bool { return c.get() != nil }

// draining reports whether the caller may still emit into s although Close
// was called: it is a worker of s and Close has not given up. Follow-up
// events of running handlers are then accepted, so a graceful Close
// completes the cascade.
func (s *Scheduler[E, C]) draining(c *caller) bool {
	return !s.aborted.Load() && c.get() == any(s)
}

// Refuses reports whether an Accept would fail with ErrClosed, without
// taking s's lock. Once the pool has finished (no worker is left) the
// caller cannot be one of its workers, and its identity is not read.
func (s *Scheduler[E, C]) Refuses() bool {
	if !s.closed.Load() {
		return false
	}
	select {
	case <-s.done:
		return true
	default:
	}
	var c caller
	return !s.draining(&c)
}

// Accept queues ev for the listeners in to (in priority order), or for
// none: it fails with ErrClosed once SetClosed was called (unless the
// caller is a worker of s and Close has not given up), and with a
// *QueueFullError when a listener's backlog has no room and its policy, or
// wait false, says not to wait. keys holds the key of each keyed listener
// at its index, or is nil when none is keyed. named, when not nil, holds at
// each listener's index the value that its delivery carries (Listener
// methods get a pointer to it); Accept keeps pointers into it. wait says
// whether to wait for room (until ctx is done) rather than fail.
func (s *Scheduler[E, C]) Accept(ctx context.Context, to []*Inbox[E, C], ev E, keys []string, named []C, wait bool) error {
	var who caller
	reserve, yields := false, 0
	var at int64
	if s.observed {
		at = time.Now().UnixNano()
	}
	s.mu.Lock()
	var drops bool // a listener of to is full and its policy drops (see full)
	for {
		if s.closed.Load() && (s.workers == 0 || !s.draining(&who)) {
			s.mu.Unlock()
			return ErrClosed
		}
		var full *Inbox[E, C]
		var err error
		full, drops, err = s.full(to, reserve)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		if full == nil {
			break
		}
		switch {
		case wait && !reserve && !who.known && yields < _yieldsBeforeWait:
			// Before reading the caller's identity (a stack read) to
			// wait: room is often freed within a scheduling turn, by a
			// worker this yield lets run (see _yieldsBeforeWait). A
			// worker that yields here still never waits.
			yields++
			s.mu.Unlock()
			runtime.Gosched()
			s.mu.Lock()
		case wait && !reserve && who.worker():
			reserve = true
		case reserve:
			n := full.backlog
			s.mu.Unlock()
			return &QueueFullError{Name: full.name, Waiting: n, ReserveUsed: true}
		case !wait:
			n := full.backlog
			s.mu.Unlock()
			return &QueueFullError{Name: full.name, Waiting: n}
		default:
			if err := s.waitRoom(ctx, full); err != nil {
				s.mu.Unlock()
				return err
			}
		}
	}
	rec := s.newRecord()
	rec.ev, rec.ep, rec.at = ev, s.cur, at
	var lost []lostOne[E, C]
	var pushed int
	if keys == nil && !drops {
		pushed = s.queue(to, rec, named)
	} else {
		pushed, lost = s.queueEach(to, rec, keys, named, reserve)
	}
	rec.refs = pushed
	s.refs += pushed
	rec.ep.pending += pushed
	if pushed == 0 { // every listener dropped it
		s.recycle(rec)
	}
	s.stats.Emitted++
	s.stats.Matched += uint64(len(to))
	s.verify()
	s.mu.Unlock()
	if lost != nil {
		s.tellLost(lost, LostDropped, false)
		for _, d := range lost {
			if d.err != nil {
				s.report(d.err)
			}
		}
	}
	return nil
}

// _yieldsBeforeWait is how many times an Accept that finds a backlog full,
// and may wait, yields the processor and looks again before it reads the
// caller's identity and waits (or, on a worker, takes the reserve). In a
// flood the emitter finds the backlog full each time it has refilled the
// room a batch freed; a yield lets a worker take the next batch, which
// costs less than the stack read (about 1 µs) and the wait's hand-off.
// One yield did as well as two, four or eight in the benchmarks/ module's
// EmitAsync scenarios (2 cores); two leave room for a worker on another
// core to account its batch.
const _yieldsBeforeWait = 2

// queue queues a delivery of rec for each listener of to, with s.mu held,
// when none is keyed and each has room (Accept's common case), and returns
// how many it queued. It is push and makeReady written out, since the
// compiler does not inline them into a generic function: Emit to 10
// listeners spent a third of its emitter's instructions on those calls.
//
// It wakes a worker with s.mu held, as every other path does: a Signal
// made after unlocking could reach a worker that a Broadcast (leave,
// SetClosed) had woken meanwhile and that had parked again, counted in
// s.idle anew, which would leave s.idle counting one parked worker too
// many, and a later wake signalling nobody.
func (s *Scheduler[E, C]) queue(to []*Inbox[E, C], rec *record[E], named []C) int {
	for i, in := range to {
		d := delivery[E, C]{rec: rec}
		if named != nil {
			d.named = &named[i]
		}
		mb := in.box
		if !mb.tracked {
			s.track(mb)
		}
		q := &mb.q
		if q.n == len(q.buf) {
			q.grow()
		}
		q.buf[(q.head+q.n)&(len(q.buf)-1)] = d
		q.n++
		in.backlog++
		if !in.queued && in.active < in.limit && !mb.paused() {
			in.queued = true
			s.ready.push(in)
			s.wake()
		}
	}
	s.queued += len(to)
	return len(to)
}

// queueEach is queue for any listeners, with s.mu held: a keyed one's
// delivery goes to its key's mailbox, and a listener whose backlog is full
// and whose policy drops (full let the event through) drops a delivery,
// returned with its error for Lost and the report once s.mu is released.
func (s *Scheduler[E, C]) queueEach(to []*Inbox[E, C], rec *record[E], keys []string, named []C, reserve bool) (pushed int, lost []lostOne[E, C]) {
	for i, in := range to {
		d := delivery[E, C]{rec: rec}
		if named != nil {
			d.named = &named[i]
		}
		key := ""
		if keys != nil {
			key = keys[i]
		}
		if s.overflowing(in, reserve) {
			var room bool
			if lost, room = s.drop(in, key, d, lost); !room {
				continue
			}
		}
		mb := s.mailboxFor(in, key)
		s.push(mb, d, false)
		pushed++
		s.makeReady(mb)
	}
	return pushed, lost
}

// overflowing reports whether in's backlog has no room, with s.mu held;
// reserve doubles the bound for emits from workers.
func (s *Scheduler[E, C]) overflowing(in *Inbox[E, C], reserve bool) bool {
	bound := in.bound
	if reserve && in.overflow == OverflowWait {
		bound *= 2
	}
	return in.backlog >= bound
}

// full returns the first listener of to whose backlog has no room and whose
// policy is to wait, or the error of one whose policy is to fail; drops
// says whether a listener's backlog has no room and its policy drops.
func (s *Scheduler[E, C]) full(to []*Inbox[E, C], reserve bool) (wait *Inbox[E, C], drops bool, err error) {
	for _, in := range to {
		if !s.overflowing(in, reserve) {
			continue
		}
		switch in.overflow {
		case OverflowFail:
			return nil, false, &QueueFullError{Name: in.name, Waiting: in.backlog}
		case OverflowWait:
			if wait == nil {
				wait = in
			}
		default:
			drops = true
		}
	}
	return wait, drops, nil
}

// drop makes room in a full backlog by its drop policy, with s.mu held,
// appending what it drops to lost, and reports whether d, the new delivery,
// may be queued. DropNewest drops d. DropOldest drops the oldest deliveries
// queued for the same key, as many as it takes to make room: one, unless a
// retry or a batch handed back has taken the backlog past its bound; if
// that key runs out of queued deliveries first, it drops d too. Each
// dropped delivery is counted, by the scheduler and, with s.mu still held
// so that a Flush that returns after it finds it counted, by
// Listener.Dropped; it is returned with that error, for Lost and the report
// once s.mu is released. d's record is not released: the caller has not
// counted it yet.
func (s *Scheduler[E, C]) drop(in *Inbox[E, C], key string, d delivery[E, C], lost []lostOne[E, C]) ([]lostOne[E, C], bool) {
	if in.overflow == OverflowDropOldest {
		mb := in.box
		if in.keyed {
			mb = in.keys[key]
		}
		for mb != nil && mb.q.len() > 0 && in.backlog >= in.bound {
			old := mb.q.pop()
			victim := s.lostOf(in, old)
			s.queued--
			s.shrink(in, 1)
			s.complete(old.rec.ep)
			s.release(&old)
			lost = append(lost, s.dropped(in, victim))
		}
		if mb != nil {
			s.retire(mb)
		}
		if in.backlog < in.bound {
			return lost, true
		}
	}
	return append(lost, s.dropped(in, s.lostOf(in, d))), false
}

// dropped counts a dropped delivery, with s.mu held, and returns it with
// the backlog it was dropped from and the error Listener.Dropped returns.
func (s *Scheduler[E, C]) dropped(in *Inbox[E, C], victim lostOne[E, C]) lostOne[E, C] {
	s.stats.Dropped++
	victim.backlog = in.backlog
	victim.err = in.l.Dropped(victim.named, victim.ev, victim.attempt, in.backlog)
	return victim
}

// waitRoom waits, with s.mu held on entry and on return, until in may have
// room, Close was called, or ctx is done. Waiters are not served in order:
// whichever gets the lock first when room frees up takes it.
func (s *Scheduler[E, C]) waitRoom(ctx context.Context, in *Inbox[E, C]) error {
	if in.room == nil {
		in.room = make(chan struct{})
	}
	room := in.room
	s.mu.Unlock()
	var err error
	select {
	case <-room:
	case <-s.closing:
	case <-ctx.Done():
		err = &QueueFullError{Name: in.name, Err: ctx.Err()} // s.mu is not held: no Waiting
	}
	s.mu.Lock()
	return err
}
