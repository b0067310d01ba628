package eventbustest

import (
	"context"
	"fmt"
	"testing"

	"github.com/eventbus-go/eventbus"
)

// RegisterFunc registers a handler somewhere and returns its Listener. A
// Recorder is fed by one: a closure over EventManager.RegisterListener and a
// pattern (see Record), or a typed topic's Listen method.
type RegisterFunc[T any] func(h eventbus.Handler[T], opts ...eventbus.ListenerOption) (*eventbus.Listener, error)

// Registrar is an EventManager, or anything that registers listeners on one
// and can be waited on: *eventbus.EventManager[T] and *Manager[T] both are.
type Registrar[T any] interface {
	RegisterListener(pattern string, h eventbus.Handler[T], opts ...eventbus.ListenerOption) (*eventbus.Listener, error)
	Bus
}

// Recorder is a listener that keeps every event it receives, in order of
// arrival, and lets a test wait until it has received what it expects. Its
// methods are safe for concurrent use. Waits fail the test with t.Fatalf
// (from the test's goroutine only, as t.FailNow requires) when their context
// ends first, listing what was recorded; checks fail it with t.Errorf.
//
// Order of arrival is the order in which the recorder's handler ran. With
// Emit, a plain listener may run events concurrently and so in any order;
// pass eventbus.Ordered() to record them in the order they were accepted.
type Recorder[T any] struct {
	t        testing.TB
	bus      Bus
	listener *eventbus.Listener

	sig    signal // guards events
	events []eventbus.Event[T]
}

// Record registers a Recorder on m for pattern, with opts, and unregisters
// it when the test ends (t.Cleanup). It fails the test (t.Fatalf) if the
// registration fails, for example with eventbus.ErrInvalidPattern.
func Record[T any](t testing.TB, m Registrar[T], pattern string, opts ...eventbus.ListenerOption) *Recorder[T] {
	t.Helper()
	if isNil(m) {
		t.Fatalf("eventbustest: Record(%q): manager: %v", pattern, ErrNilArgument)
		return nil
	}
	return NewRecorder[T](t, m, func(h eventbus.Handler[T], o ...eventbus.ListenerOption) (*eventbus.Listener, error) {
		return m.RegisterListener(pattern, h, o...)
	}, opts...)
}

// NewRecorder registers a Recorder through register, with opts, and
// unregisters it when the test ends (t.Cleanup). bus is the EventManager the
// events travel on: WaitIdle and ExpectExactly wait on it. For a typed topic
// on m, pass m and topic.Listen. It fails the test (t.Fatalf) if bus or
// register is nil (ErrNilArgument) or if the registration fails.
func NewRecorder[T any](t testing.TB, bus Bus, register RegisterFunc[T], opts ...eventbus.ListenerOption) *Recorder[T] {
	t.Helper()
	if isNil(bus) || register == nil {
		t.Fatalf("eventbustest: NewRecorder: bus or register function: %v", ErrNilArgument)
		return nil
	}
	r := &Recorder[T]{t: t, bus: bus}
	l, err := register(r.handle, opts...)
	if err != nil {
		t.Fatalf("eventbustest: registering a recorder: %v", err)
		return nil
	}
	r.listener = l
	t.Cleanup(l.Unregister)
	return r
}

func (r *Recorder[T]) handle(_ context.Context, e eventbus.Event[T]) error {
	r.sig.mu.Lock()
	defer r.sig.mu.Unlock()
	r.events = append(r.events, e)
	r.sig.notify()
	return nil
}

// Listener returns the recorder's Listener, for its Stats or to Unregister
// it early.
func (r *Recorder[T]) Listener() *eventbus.Listener { return r.listener }

// Len returns how many events have been recorded.
func (r *Recorder[T]) Len() int {
	r.sig.mu.Lock()
	defer r.sig.mu.Unlock()
	return len(r.events)
}

// Events returns a copy of the events recorded so far, in order of arrival.
func (r *Recorder[T]) Events() []eventbus.Event[T] {
	r.sig.mu.Lock()
	defer r.sig.mu.Unlock()
	return append([]eventbus.Event[T](nil), r.events...)
}

// view returns the events recorded so far without copying them: events are
// only ever appended, so the clipped slice stays valid, and it must not be
// modified.
func (r *Recorder[T]) view() []eventbus.Event[T] {
	r.sig.mu.Lock()
	defer r.sig.mu.Unlock()
	return r.events[:len(r.events):len(r.events)]
}

// WaitN waits until at least n events have been recorded and returns a copy
// of all of them (possibly more than n). If ctx ends first it fails the test
// (t.Fatalf), listing what was recorded.
func (r *Recorder[T]) WaitN(ctx context.Context, n int) []eventbus.Event[T] {
	r.t.Helper()
	return r.WaitFor(ctx, fmt.Sprintf("%d events", n), func(events []eventbus.Event[T]) bool { return len(events) >= n })
}

// WaitName waits until an event named name has been recorded and returns the
// first one. If ctx ends first it fails the test (t.Fatalf), listing what was
// recorded.
func (r *Recorder[T]) WaitName(ctx context.Context, name string) eventbus.Event[T] {
	r.t.Helper()
	var found eventbus.Event[T]
	r.WaitFor(ctx, fmt.Sprintf("an event named %q", name), func(events []eventbus.Event[T]) bool {
		for _, e := range events {
			if e.Name == name {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// WaitFor waits until cond holds for the events recorded so far, in order
// of arrival, and returns a copy of them. cond is called from the calling
// goroutine, once at first and again after each new event; it must not
// modify the slice it is given. If ctx ends first WaitFor fails the test
// (t.Fatalf) with a message naming what (for example "the order to be
// shipped") and listing what was recorded.
func (r *Recorder[T]) WaitFor(ctx context.Context, what string, cond func(events []eventbus.Event[T]) bool) []eventbus.Event[T] {
	r.t.Helper()
	for {
		r.sig.mu.Lock()
		events := r.events[:len(r.events):len(r.events)]
		changed := r.sig.watch()
		r.sig.mu.Unlock()
		if cond(events) {
			return append([]eventbus.Event[T](nil), events...)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			r.t.Fatalf("eventbustest: recorder on %q: waiting for %s: %v; %s", r.listener.Pattern(), what, ctx.Err(), listEvents(r.view()))
			return nil
		}
	}
}

// WaitIdle waits until the bus is idle (see the WaitIdle function) and
// returns a copy of everything recorded. If ctx ends first it fails the
// test (t.Fatalf), listing what was recorded.
func (r *Recorder[T]) WaitIdle(ctx context.Context) []eventbus.Event[T] {
	r.t.Helper()
	if err := WaitIdle(ctx, r.bus); err != nil {
		r.t.Fatalf("eventbustest: recorder on %q: %v; %s", r.listener.Pattern(), err, listEvents(r.view()))
		return nil
	}
	return r.Events()
}

// ExpectExactly waits until the bus is idle, then reports whether exactly n
// events have been recorded in all; if not, it fails the test (t.Errorf),
// listing them. After WaitN(ctx, n) it checks that no more events arrive
// once the bus has settled, without sleeping. If ctx ends first it fails
// the test with t.Fatalf, as WaitIdle does.
func (r *Recorder[T]) ExpectExactly(ctx context.Context, n int) bool {
	r.t.Helper()
	events := r.WaitIdle(ctx)
	if len(events) != n {
		r.t.Errorf("eventbustest: recorder on %q: expected exactly %d events once the bus is idle; %s", r.listener.Pattern(), n, listEvents(events))
		return false
	}
	return true
}
