package eventbustest

import (
	"context"
	"fmt"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/internal/guard"
)

// Named refers to the listener (or listeners) with the given name (see
// eventbus.Name), for WaitHandled and its kin; an *eventbus.Listener refers
// to itself.
type Named string

// Name returns the name.
func (n Named) Name() string { return string(n) }

// ListenerRef is a listener given by name or by handle: an
// *eventbus.Listener, or Named("inventory"). Listeners are told apart by
// name: listeners that share one are counted together (default names,
// "pattern#n", are unique).
type ListenerRef interface {
	Name() string
}

// track is the middleware NewManager puts around every listener: it keeps,
// per listener name, the events whose invocation has returned. An
// invocation whose handler was skipped because the listener was
// unregistered meanwhile (next returns the guard's error, which matches
// ErrUnregistered, and the EventManager counts a skipped delivery) does
// not count: its handler never ran. A handler that fails with an error
// matching ErrUnregistered of its own has run, and counts.
func (m *Manager[T]) track(next eventbus.Handler[T]) eventbus.Handler[T] {
	return func(ctx context.Context, e eventbus.Event[T]) (err error) {
		defer func() {
			// err is nil if next panicked or ended the goroutine: that
			// invocation counts.
			if !guard.Is(err) {
				m.handledBy(eventbus.ListenerName(ctx), e)
			}
		}()
		return next(ctx, e)
	}
}

func (m *Manager[T]) handledBy(name string, e eventbus.Event[T]) {
	m.sig.mu.Lock()
	defer m.sig.mu.Unlock()
	if m.handled == nil {
		m.handled = map[string][]eventbus.Event[T]{}
	}
	m.handled[name] = append(m.handled[name], e)
	m.sig.notify()
}

// Handled returns a copy of the events that the listener l has handled so
// far, in the order its invocations returned. An event counts once its
// invocation has returned, whatever its outcome (nil, an error, a panic; each
// attempt of a retried delivery counts), through Emit or EmitSync; skipped,
// dropped and abandoned deliveries never run and do not count. The Manager
// keeps every event every listener handles until the test ends.
func (m *Manager[T]) Handled(l ListenerRef) []eventbus.Event[T] {
	m.sig.mu.Lock()
	defer m.sig.mu.Unlock()
	return append([]eventbus.Event[T](nil), m.handled[l.Name()]...)
}

// WaitHandled waits until the listener l (by handle, or Named) has handled
// at least n events (see Handled for what counts), and returns a copy of
// them all. If ctx ends first it fails the test (t.Fatalf), listing what l
// handled. It waits for l alone: other listeners, however slow or blocked,
// do not hold it up, which is how a test checks that they do not hold l
// back either.
func (m *Manager[T]) WaitHandled(ctx context.Context, l ListenerRef, n int) []eventbus.Event[T] {
	m.t.Helper()
	return m.WaitHandledFor(ctx, l, fmt.Sprintf("%d events", n), func(events []eventbus.Event[T]) bool { return len(events) >= n })
}

// WaitHandledFor waits until cond holds for the events the listener l has
// handled so far (see Handled), in the order its invocations returned, and
// returns a copy of them. cond is called from the calling goroutine, once at
// first and again after each event any listener handles; it must not modify
// the slice. If ctx ends first it fails the test (t.Fatalf) with a message
// naming what and listing what l handled.
func (m *Manager[T]) WaitHandledFor(ctx context.Context, l ListenerRef, what string, cond func(events []eventbus.Event[T]) bool) []eventbus.Event[T] {
	m.t.Helper()
	name := l.Name()
	for {
		m.sig.mu.Lock()
		events := m.handled[name]
		events = events[:len(events):len(events)]
		changed := m.sig.watch()
		m.sig.mu.Unlock()
		if cond(events) {
			return append([]eventbus.Event[T](nil), events...)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			m.t.Fatalf("eventbustest: listener %q: waiting for %s: %v; handled: %s", name, what, ctx.Err(), listEvents(events))
			return nil
		}
	}
}
