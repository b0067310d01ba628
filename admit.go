package eventbus

import (
	"context"
	"fmt"
)

// Admission and backpressure.
//
// An event is accepted whole or not at all: under s.mu, accept checks the
// backlog of every listener it matches, then pushes one delivery into each.
// A listener whose backlog is full decides by its Overflow policy: wait for
// room (the default), fail the emit, or drop a delivery (its own newest or
// oldest) and let the event through to the others. Only the listeners an
// event matches push back on its emit; other names are never delayed.
//
// Workers never wait: an Emit made on any EventManager's worker goroutine
// may take its listeners' backlogs up to twice their bound (the reserve),
// then fails with ErrQueueFull. Waiting there could deadlock: the room it
// waits for may be freed only by the worker that waits, or by a worker of
// another EventManager waiting on this one. TryEmit never waits, so it needs
// no reserve and fails at the bound wherever it is called: it never reads
// the caller's identity (a stack read, goid.go).

// caller identifies the goroutine of an emit, lazily: finding out costs a
// stack read (goid.go), so it is done only when an Emit would otherwise
// wait, or is made while Close drains the pool (once no worker is left, an
// emit is refused without asking).
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

// worker reports whether the calling goroutine is a worker of any EventManager.
func (c *caller) worker() bool { return c.get() != nil }

// draining reports whether the caller may still emit into s although Close
// was called: it is a worker of s and Close has not given up. Follow-up
// events of running handlers are then accepted, so a graceful Close
// completes the cascade.
func (s *scheduler[T]) draining(c *caller) bool {
	return !s.aborted.Load() && c.get() == any(s)
}

// refuses reports whether an emit into s must fail with ErrClosed. Once the
// pool has finished (no worker is left) the caller cannot be one of its
// workers, and its identity is not read.
func (s *scheduler[T]) refuses() bool {
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

// accept queues ev for the listeners in to (in priority order); keys holds
// the OrderedBy key of each keyed listener at its index, or is nil when none
// is keyed. lctx is the context listeners will get. wait says whether to
// wait for room (until ctx is done) rather than fail with ErrQueueFull.
func (s *scheduler[T]) accept(ctx, lctx context.Context, to []*entry[T], ev Event[T], keys []string, wait bool) error {
	var who caller
	reserve := false
	at := acceptedAt(s.obs)
	// A context that carries values gets each listener's name on top: made
	// here for every listener of the event in one allocation rather than
	// one per delivery (see entry.named).
	var names []nameCtx
	if !sameContext(lctx, s.ctx) {
		names = make([]nameCtx, len(to))
	}
	s.mu.Lock()
	for {
		if s.closed.Load() && (s.workers == 0 || !s.draining(&who)) {
			s.mu.Unlock()
			return ErrClosed
		}
		full, err := s.full(to, reserve)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		if full == nil {
			break
		}
		switch {
		case wait && !reserve && who.worker():
			reserve = true
		case reserve:
			n := full.backlog
			s.mu.Unlock()
			return &queueFullError{pattern: full.e.pattern, waiting: n, reserveUsed: true}
		case !wait:
			n := full.backlog
			s.mu.Unlock()
			return &queueFullError{pattern: full.e.pattern, waiting: n}
		default:
			if err := s.waitRoom(ctx, full); err != nil {
				s.mu.Unlock()
				return err
			}
		}
	}
	rec := s.newRecord()
	rec.ev, rec.ep, rec.at = ev, s.cur, at
	var drops []*ListenerError
	var lost []Delivery
	for i, e := range to {
		in := e.in
		key := ""
		if keys != nil {
			key = keys[i]
		}
		if s.overflowing(in, reserve) {
			// Only a drop policy gets here: full() let the event through.
			lerr, d := s.drop(lctx, in, key, ev, at)
			drops = append(drops, lerr)
			if s.obs != nil {
				lost = append(lost, d)
			}
			if in.overflow == OverflowDropNewest || in.backlog >= in.bound {
				continue
			}
		}
		mb := s.mailboxFor(in, key)
		var named *nameCtx
		if names != nil {
			names[i] = nameCtx{Context: lctx, l: e.l}
			named = &names[i]
		}
		s.push(mb, delivery[T]{rec: rec, named: named}, false)
		rec.refs++
		s.refs++
		rec.ep.pending++
		s.makeReady(mb)
	}
	if rec.refs == 0 { // every listener dropped it
		s.recycle(rec)
	}
	s.stats.emitted++
	s.stats.matched += uint64(len(to))
	s.verify()
	s.mu.Unlock()
	s.tellLost(lost, OutcomeDropped)
	for _, lerr := range drops {
		s.report(lerr)
	}
	return nil
}

// overflowing reports whether in's backlog has no room, with s.mu held;
// reserve doubles the bound for emits from workers.
func (s *scheduler[T]) overflowing(in *inbox[T], reserve bool) bool {
	bound := in.bound
	if reserve && in.overflow == OverflowWait {
		bound *= 2
	}
	return in.backlog >= bound
}

// full returns the first listener of to whose backlog has no room and whose
// policy is to wait, or the error of one whose policy is to fail.
func (s *scheduler[T]) full(to []*entry[T], reserve bool) (*inbox[T], error) {
	var wait *inbox[T]
	for _, e := range to {
		in := e.in
		if !s.overflowing(in, reserve) {
			continue
		}
		switch in.overflow {
		case OverflowFail:
			return nil, &queueFullError{pattern: e.pattern, waiting: in.backlog}
		case OverflowWait:
			if wait == nil {
				wait = in
			}
		}
	}
	return wait, nil
}

// drop makes room in a full backlog by its drop policy, with s.mu held:
// DropNewest drops ev itself; DropOldest drops the oldest delivery queued
// for the same key (or ev, when that key has nothing queued). The dropped
// delivery is counted and returned as the error to report, with its
// description for the observer.
func (s *scheduler[T]) drop(ctx context.Context, in *inbox[T], key string, ev Event[T], at int64) (*ListenerError, Delivery) {
	victim, attempt := ev, 0
	if in.overflow == OverflowDropOldest {
		mb := in.box
		if in.keyFn != nil {
			mb = in.keys[key]
		}
		if mb != nil && mb.q.len() > 0 {
			d := mb.q.pop()
			victim, attempt, at, ctx = d.rec.ev, d.attempt, d.rec.at, d.context(in.e)
			s.queued--
			s.shrink(in, 1)
			s.complete(d.rec.ep)
			s.release(&d)
			s.retire(mb)
		}
	}
	s.stats.dropped++
	in.e.l.counts.add(cDropped, 1)
	lerr := in.e.failureIn(ctx, victim, attempt, fmt.Errorf("%w (%d queued, policy %v)", ErrDropped, in.backlog, in.overflow))
	lerr.Attempts = attempt
	return lerr, in.e.describe(ctx, victim, attempt, at)
}

// waitRoom waits, with s.mu held on entry and on return, until in may have
// room, Close was called, or ctx is done. Waiters are not served in order:
// whichever gets the lock first when room frees up takes it.
func (s *scheduler[T]) waitRoom(ctx context.Context, in *inbox[T]) error {
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
		err = fmt.Errorf("%w: %w", ErrQueueFull, ctx.Err())
	}
	s.mu.Lock()
	return err
}
