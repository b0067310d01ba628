package eventbus

import (
	"fmt"
	"sync/atomic"
)

// Listener is a registered handler, returned by RegisterListener. Its
// methods are safe for concurrent use, including from inside any handler.
type Listener struct {
	pattern  string
	removed  atomic.Bool // Unregister was called
	unlinked atomic.Bool // out of the registry: unregistered, or a Once that fired
	fired    atomic.Bool // Once: the one delivery has started
	owner    owner       // the entry, which knows its EventManager
	counts   tallies
}

// Pattern returns the pattern the listener was registered with.
func (l *Listener) Pattern() string { return l.pattern }

// Unregister removes the listener. It is idempotent and safe to call
// concurrently and from inside any handler, including the listener's own.
// Once it returns, no new invocation of the handler starts: deliveries
// already queued for it are skipped (and counted in Stats.Skipped), while an
// invocation already running is not interrupted. Unregister does not wait for
// running invocations; call Flush for that.
func (l *Listener) Unregister() {
	if l.removed.Swap(true) {
		return
	}
	l.unlink()
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
}

// Stats returns a snapshot of the listener's counters. They keep counting
// deliveries that were queued before Unregister, as skipped.
func (l *Listener) Stats() ListenerStats {
	c, _ := l.counts.sum()
	return ListenerStats{
		Delivered: c.delivered,
		Failed:    c.failed,
		Panicked:  c.panicked,
		Skipped:   c.skipped,
		Retried:   c.retried,
		Pending:   l.owner.pending(),
	}
}

// entry is a listener as the registry and the pool see it.
type entry[T any] struct {
	m        *EventManager[T]
	l        *Listener
	h        Handler[T] // with middleware and timeout applied
	pattern  string
	priority int
	seq      uint64 // registration order
	once     bool
	retry    *retryPolicy

	// Delivery mode for Emit; all nil for a plain listener. The mailboxes,
	// keys and gate are guarded by the scheduler's mutex.
	box   *mailbox[T]            // Ordered or Concurrency: the listener's mailbox
	keyFn func(Event[T]) string  // OrderedBy
	keys  map[string]*mailbox[T] // OrderedBy: a mailbox per key with work
	gate  *gate[T]               // OrderedBy: bounds keys in flight
}

func (e *entry[T]) boxed() bool { return e.box != nil || e.keyFn != nil }

func (e *entry[T]) unregister() { e.m.remove(e) }

func (e *entry[T]) pending() int { return e.m.pool.pendingFor(e) }

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
	var cfg listenerConfig
	for _, o := range opts {
		if o != nil {
			o.applyListener(&cfg)
		}
	}
	e, err := newEntry(pattern, h, &cfg, m.opts.middleware)
	if err != nil {
		return nil, fmt.Errorf("register %q: %w", pattern, err)
	}
	l := &Listener{pattern: pattern}
	e.l = l
	e.m = m
	l.owner = e

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return nil, fmt.Errorf("register %q: %w", pattern, ErrClosed)
	}
	m.seq++
	e.seq = m.seq
	m.update(e, func(list []*entry[T]) []*entry[T] { return appendCopy(list, e) })
	m.listeners.Add(1)
	return l, nil
}

func newEntry[T any](pattern string, h Handler[T], cfg *listenerConfig, managerMW []any) (*entry[T], error) {
	if cfg.err != nil {
		return nil, cfg.err
	}
	h, err := handlerFor(h, cfg, managerMW)
	if err != nil {
		return nil, err
	}
	e := &entry[T]{h: h, pattern: pattern, priority: cfg.priority, once: cfg.once, retry: cfg.retry}
	switch {
	case cfg.key != nil:
		keyFn, ok := cfg.key.(func(Event[T]) string)
		if !ok {
			return nil, fmt.Errorf("%w: OrderedBy key %T for an EventManager of %T", ErrInvalidOption, cfg.key, *new(T))
		}
		if cfg.ordered {
			return nil, fmt.Errorf("%w: Ordered and OrderedBy together", ErrInvalidOption)
		}
		e.keyFn = keyFn
		e.gate = &gate[T]{limit: cfg.concurrency}
	case cfg.ordered:
		if cfg.concurrency > 1 {
			return nil, fmt.Errorf("%w: Ordered with Concurrency(%d)", ErrInvalidOption, cfg.concurrency)
		}
		e.box = &mailbox[T]{e: e, limit: 1}
	case cfg.concurrency > 0:
		e.box = &mailbox[T]{e: e, limit: cfg.concurrency}
	}
	return e, nil
}
