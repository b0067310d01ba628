package eventbus

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/eventbus-go/eventbus/internal/registry"
	"github.com/eventbus-go/eventbus/internal/sched"
)

// Listener is a registered handler, returned by RegisterListener. Its
// methods are safe for concurrent use, including from inside any handler.
type Listener struct {
	pattern  string
	name     string      // set before the listener is published, then read-only
	removed  atomic.Bool // Unregister was called
	unlinked atomic.Bool // out of the registry: unregistered, or a Once that fired
	fired    atomic.Bool // Once: the one delivery has started
	owner    owner       // the entry, which knows its EventManager
	counts   tallies
	// Sole deliveries (sole.go): soleIdx is its index in
	// EventManager.soles while registered; soleOut is set once it is
	// unregistered, and soleMoved counts those moved to soleGone since.
	// soleIdx and soleMoved are guarded by EventManager.mu.
	soleIdx   int
	soleOut   atomic.Bool
	soleMoved uint64
}

// Pattern returns the pattern the listener was registered with.
func (l *Listener) Pattern() string { return l.pattern }

// Name returns the listener's name: the one given with Name, or its pattern
// and registration number ("order.created#3").
func (l *Listener) Name() string { return l.name }

// Ordered reports whether Emit keeps an order for this listener that a
// retry holds back: true for a listener registered with Ordered or
// Concurrency(1), whose deliveries run one at a time in the order Emit
// accepted them, and for one registered with OrderedBy, whose order is kept
// per key (a retry holds back only the later events of its key); false for
// every other listener, including Concurrency(n) with n > 1. It is fixed at
// registration, so it may be read from any goroutine at any time. Code that
// delivers events by itself (EmitSyncTo) and retries them uses it to hold
// back later events for ordered listeners only, as Retry does.
func (l *Listener) Ordered() bool { return l.owner.ordered() }

// Unregister removes the listener. It is idempotent and safe to call
// concurrently and from inside any handler, including the listener's own.
// Once it returns, the listener's handler is not called again: deliveries
// already queued for it are skipped (and counted in Stats.Skipped), while an
// invocation already running is not interrupted. This holds behind
// middleware too (Use, WithMiddleware): middleware entered before
// Unregister returned may still run, but when it calls the next handler
// after that, the listener's handler is not called and next returns
// ErrUnregistered (the delivery counts as skipped). Unregister does not wait
// for running invocations; UnregisterAndWait does.
func (l *Listener) Unregister() {
	if l.removed.Swap(true) {
		return
	}
	l.unlink()
	l.owner.dropRetries()
}

// UnregisterAndWait unregisters the listener, as Unregister does, then waits
// until no invocation of its handler is running on the pool, so that what
// the handler uses can be released safely once it returns nil. Deliveries
// still queued or waiting for a retry are skipped, not waited for; that
// includes the pending retry of a Once listener that has fired. Invocations
// made by EmitSync run in their callers' goroutines and are not waited for.
//
// If ctx ends first it returns an error matching ctx's error; the listener
// stays unregistered. Called from the listener's own handler on the pool it
// would wait for itself: it returns at once with an error matching
// ErrReentrant, the listener unregistered.
func (l *Listener) UnregisterAndWait(ctx context.Context) error {
	l.Unregister()
	return l.owner.quiesce(ctx)
}

// unlink takes the listener out of the registry, once.
func (l *Listener) unlink() {
	if l.unlinked.Swap(true) {
		return
	}
	l.owner.unregister()
}

// owner is what a Listener needs of its entry, without its type parameter.
type owner interface {
	unregister()
	pending() int
	quiesce(ctx context.Context) error
	dropRetries()
	ordered() bool
}

// Stats returns a snapshot of the listener's counters. They keep counting
// deliveries that were queued before Unregister, as skipped.
func (l *Listener) Stats() ListenerStats {
	c, _ := l.counts.sum()
	return ListenerStats{
		Delivered: c.delivered + c.emitted, // cSole: see soleDelivered
		Failed:    c.failed,
		Panicked:  c.panicked,
		Skipped:   c.skipped,
		Retried:   c.retried,
		Dropped:   c.dropped,
		Pending:   l.owner.pending(),
		Name:      l.name,
	}
}

// entry is a listener as the registry and the pool see it: the pool's
// scheduler knows it as a sched.Listener (pool.go). It is immutable once
// registered; the scheduler's state for it is in its inbox.
type entry[T any] struct {
	m        *EventManager[T]
	l        *Listener
	h        Handler[T] // with middleware and timeout applied
	pattern  string
	priority int
	seq      uint64 // registration order
	once     bool
	retry    *retryPolicy
	keyFn    func(Event[T]) string           // OrderedBy: its key function
	overflow Overflow                        // its overflow policy, for the errors of its drops
	in       *sched.Inbox[Event[T], nameCtx] // the scheduler's per-listener state (pool.go)
	obs      Observer                        // the manager's, or nil
	guarded  bool                            // h stops at ErrUnregistered (see unlessUnregistered)
	tied     bool                            // CancelWithEmitter
	plain    bool                            // neither once nor observed: EmitSync's short path (runSync)
	lean     bool                            // plain, and neither tied nor retried: the pool runs its batches itself (RunBatch)

	prev, next *entry[T] // in EventManager.live, guarded by EventManager.mu

	// The contexts its handler gets when the emit's has no values, made
	// once so that naming the listener in them costs nothing (see named).
	bgCtx, poolCtx *nameCtx
}

func (e *entry[T]) unregister() {
	e.m.remove(e)
	e.m.version.Add(1) // after the change is published; see Topic.rebind
}

func (e *entry[T]) pending() int { return e.m.pool.Pending(e.in) }

func (e *entry[T]) quiesce(ctx context.Context) error {
	return quiesceError(e.m.pool.Quiesce(ctx, e.in))
}

func (e *entry[T]) dropRetries() { e.m.pool.DropRetries(e.in) }

func (e *entry[T]) ordered() bool { return e.in.Ordered() }

// RegisterListener registers h for every event whose name matches pattern
// (see [ValidatePattern]: '*' matches one token, a final '>' one or more) and
// returns the Listener, whose Unregister removes it. It is safe for
// concurrent use, including from inside a handler; an Emit that starts after
// RegisterListener returns delivers to the new listener.
//
// It fails with ErrNilHandler, ErrInvalidPattern, ErrInvalidOption (an
// option out of range, or a generic option of another data type), or, after
// Close, ErrClosed.
func (m *EventManager[T]) RegisterListener(pattern string, h Handler[T], opts ...ListenerOption) (*Listener, error) {
	if h == nil {
		return nil, fmt.Errorf("register %q: %w", pattern, ErrNilHandler)
	}
	if err := ValidatePattern(pattern); err != nil {
		return nil, err
	}
	cfg := listenerConfigOf(opts)
	return m.register(pattern, h, &cfg)
}

// register registers h, configured by cfg, for a valid pattern.
func (m *EventManager[T]) register(pattern string, h Handler[T], cfg *listenerConfig) (*Listener, error) {
	e, err := newEntry(pattern, h, cfg, &m.opts)
	if err != nil {
		return nil, fmt.Errorf("register %q: %w", pattern, err)
	}
	l := cfg.listener()
	l.pattern, l.name = pattern, cfg.name
	e.l = l
	e.m = m
	l.owner = e
	e.bgCtx = &nameCtx{Context: context.Background(), l: l}
	e.poolCtx = &nameCtx{Context: m.pool.Context(), l: l}
	e.in = m.pool.NewInbox(e, schedConfig(pattern, cfg, e.keyFn != nil))

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pool.Closed() {
		return nil, fmt.Errorf("register %q: %w", pattern, ErrClosed)
	}
	m.seq++
	e.seq = m.seq
	if l.name == "" {
		l.name = pattern + "#" + strconv.FormatUint(e.seq, 10)
	}
	m.reg.Update(e.pattern, func(list []*entry[T]) []*entry[T] { return registry.AppendCopy(list, e) })
	m.live.add(e)
	m.soleJoin(l)
	m.listeners.Add(1)
	m.version.Add(1) // after the change is published; see Topic.rebind
	return l, nil
}

func newEntry[T any](pattern string, h Handler[T], cfg *listenerConfig, o *options) (*entry[T], error) {
	if cfg.err != nil {
		return nil, cfg.err
	}
	h, err := handlerFor(h, cfg, o.middleware)
	if err != nil {
		return nil, err
	}
	e := &entry[T]{h: h, pattern: pattern, priority: cfg.priority, once: cfg.once, retry: cfg.retry, obs: o.observer, guarded: cfg.guarded, tied: cfg.tied, overflow: o.overflow}
	if cfg.overflowSet {
		e.overflow = cfg.overflow
	}
	e.plain = !e.once && e.obs == nil
	e.lean = e.plain && !e.tied && e.retry == nil
	switch {
	case cfg.key != nil:
		var ok bool
		if e.keyFn, ok = cfg.key.(func(Event[T]) string); !ok {
			return nil, fmt.Errorf("%w: OrderedBy key %T for a listener of %s", ErrInvalidOption, cfg.key, reflect.TypeFor[T]())
		}
		if cfg.ordered {
			return nil, fmt.Errorf("%w: Ordered and OrderedBy together", ErrInvalidOption)
		}
	case cfg.ordered && cfg.concurrency > 1:
		return nil, fmt.Errorf("%w: Ordered with Concurrency(%d)", ErrInvalidOption, cfg.concurrency)
	}
	return e, nil
}

// ListenerName returns the name of the listener (see Name) whose handler, or
// middleware, received ctx, or of the innermost one when handlers of
// several listeners are nested through emits; "" for a context that did not
// come from a delivery. It does not allocate.
func ListenerName(ctx context.Context) string {
	if l, ok := ctx.Value(listenerKey{}).(*Listener); ok {
		return l.name
	}
	return ""
}

// listenerKey is the context key of the Listener a handler runs for.
type listenerKey struct{}

// nameCtx is a handler's context: its parent's, and the listener.
type nameCtx struct {
	context.Context
	l *Listener
}

func (c *nameCtx) Value(key any) any {
	if _, ok := key.(listenerKey); ok {
		return c.l
	}
	return c.Context.Value(key)
}

// named returns the context e's handler gets for a delivery made with ctx:
// one made at registration when ctx carries nothing else (an emit with
// context.Background(), TryEmit), otherwise a new one.
func (e *entry[T]) named(ctx context.Context) context.Context {
	// Already named: a pool delivery (e.poolCtx, or named by accept with
	// the others of its event). Checked first: it is one type-word compare.
	if c, ok := ctx.(*nameCtx); ok && c.l == e.l {
		return c
	}
	switch {
	case isBackground(ctx):
		return e.bgCtx
	case sameContext(ctx, e.poolCtx.Context):
		return e.poolCtx
	}
	return &nameCtx{Context: ctx, l: e.l}
}

// The two tests below read the words of an interface value (its type and
// its data pointer) instead of comparing the values with ==, which calls
// into the runtime once the types are equal: they run on every delivery.

// sameContext reports whether a and b hold the same pointer of the same
// type; for the pointer types contexts are, that is a == b.
func sameContext(a, b context.Context) bool {
	wa, wb := (*[2]unsafe.Pointer)(unsafe.Pointer(&a)), (*[2]unsafe.Pointer)(unsafe.Pointer(&b))
	return wa[1] == wb[1] && wa[0] == wb[0]
}

// isBackground reports whether ctx is context.Background(). Its type is
// unexported and only Background returns it, so comparing the types is
// enough.
func isBackground(ctx context.Context) bool {
	bg := context.Background()
	return *(*unsafe.Pointer)(unsafe.Pointer(&ctx)) == *(*unsafe.Pointer)(unsafe.Pointer(&bg))
}

// Listeners returns the listeners registered on m now, in registration
// order: a new slice, a snapshot that later registrations and Unregister
// calls do not change. A Once listener is in it until its delivery starts.
// It is safe for concurrent use, including from a handler; it takes the
// registry's lock for reading, so it suits metrics collection (a backlog
// gauge per listener, say), not every emit.
func (m *EventManager[T]) Listeners() []*Listener {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ls := make([]*Listener, 0, m.listeners.Load())
	for e := m.live.first; e != nil; e = e.next {
		ls = append(ls, e.l)
	}
	return ls
}

// ListenersOf returns the listeners whose pattern matches name now, in the
// order EmitSync calls them (priority order, then registration order): a
// new slice, a snapshot that later registrations and Unregister calls do not
// change. It is what EmitSync would deliver to, so that code delivering to
// each listener by itself (EmitSyncTo) reaches the same ones. It fails with
// ErrInvalidName for an invalid name. It is safe for concurrent use,
// including from a handler, and takes no lock.
func (m *EventManager[T]) ListenersOf(name string) ([]*Listener, error) {
	rt, err := m.route(name)
	if err != nil {
		return nil, fmt.Errorf("listeners of %q: %w", name, err)
	}
	if rt == nil {
		return nil, nil
	}
	ls := make([]*Listener, 0, len(rt.all))
	for _, e := range rt.all {
		ls = append(ls, e.l)
	}
	return ls, nil
}

// entryList is a doubly linked list of entries, in the order they were
// added: adding and removing cost the same whatever its length, and a
// removed entry leaves nothing behind.
type entryList[T any] struct {
	first, last *entry[T]
}

func (ls *entryList[T]) add(e *entry[T]) {
	e.prev, e.next = ls.last, nil
	if ls.last != nil {
		ls.last.next = e
	} else {
		ls.first = e
	}
	ls.last = e
}

func (ls *entryList[T]) remove(e *entry[T]) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		ls.first = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		ls.last = e.prev
	}
	e.prev, e.next = nil, nil
}

// isTODO reports whether ctx is context.TODO(), as isBackground does.
func isTODO(ctx context.Context) bool {
	todo := context.TODO()
	return *(*unsafe.Pointer)(unsafe.Pointer(&ctx)) == *(*unsafe.Pointer)(unsafe.Pointer(&todo))
}
