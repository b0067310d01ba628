package eventbus

import (
	"context"
	"fmt"
	"reflect"
	"sync/atomic"
)

// Typed topics. NewTopic declares that an event name of an EventManager[any]
// carries one Go type. The declaration lives in the manager (topics, below),
// so that every way of emitting to the name checks it, and a Topic is a
// handle on it whose emits skip the name's validation and lookup: it keeps
// the name's route with the manager's registry version, and looks the name
// up again only after a listener was registered or removed.

// Topic is a typed, pre-bound handle on one exact event name of an
// EventManager[any], made by NewTopic. Its emits deliver a T to the name's
// listeners exactly as the EventManager's would (every delivery option,
// Stats, Flush and Close apply alike), but skip validating the name and
// looking it up, so they cost less. Listen registers a listener that
// receives Event[T]; listeners registered on the EventManager (wildcards
// included) receive Event[any] whose Data holds the T.
//
// A Topic is safe for concurrent use. It stays correct while listeners are
// registered and unregistered: an emit that starts after RegisterListener,
// Listen or Unregister has returned sees the change.
type Topic[T any] struct {
	m     *EventManager[any]
	decl  *topicDecl
	bound atomic.Pointer[boundRoute]
}

// boundRoute is a Topic's route, valid while the registry's version is
// version.
type boundRoute struct {
	version uint64
	rt      *route[any]
}

// topicDecl is a declared event name and its type.
type topicDecl struct {
	name    string
	typ     reflect.Type
	accepts func(v any) bool // whether v may be emitted under name
	// concrete is typ when it is not an interface type: a value may be
	// emitted exactly when its dynamic type is typ, a cheaper test.
	concrete reflect.Type
	topic    any // the *Topic[T] of this declaration
}

// topics holds an EventManager's declared names. Writers hold the
// EventManager's mu and replace the map; emitters load it without locking.
type topics struct {
	p atomic.Pointer[map[string]*topicDecl]
}

// find returns the declaration of name, or nil. It costs one atomic load
// while nothing is declared.
func (ts *topics) find(name string) *topicDecl {
	if ts == nil {
		return nil
	}
	if p := ts.p.Load(); p != nil {
		return (*p)[name]
	}
	return nil
}

// add publishes d. The EventManager's mu must be held.
func (ts *topics) add(d *topicDecl) {
	next := map[string]*topicDecl{d.name: d}
	if p := ts.p.Load(); p != nil {
		for k, v := range *p {
			next[k] = v
		}
	}
	ts.p.Store(&next)
}

// NewTopic declares that the event name carries values of type T on m, and
// returns the Topic for it. From then on, Emit, TryEmit and EmitSync of m
// refuse, with ErrTypeMismatch, a value under name whose dynamic type is not
// T (for an interface T: that does not implement T; nil is allowed), and
// deliver nothing for it.
//
// Declaring a name again with the same T returns the same Topic; with
// another type it fails with an error matching ErrTypeMismatch that names
// both types. A name that is not valid, or has wildcards, fails with
// ErrInvalidName. NewTopic is safe for concurrent use; a declaration is
// never withdrawn, and it may be made before or after listeners are
// registered for the name, and after Close (whose emits then fail with
// ErrClosed).
func NewTopic[T any](m *EventManager[any], name string) (*Topic[T], error) {
	if m == nil {
		return nil, fmt.Errorf("new topic %q: nil EventManager: %w", name, ErrInvalidOption)
	}
	if err := ValidateName(name); err != nil {
		return nil, fmt.Errorf("new topic: %w", err)
	}
	typ := reflect.TypeFor[T]()
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.topics.find(name); d != nil {
		if d.typ != typ {
			return nil, fmt.Errorf("new topic %q: %w: declared as %s, not %s", name, ErrTypeMismatch, typeName(d.typ, typ), typeName(typ, d.typ))
		}
		return d.topic.(*Topic[T]), nil
	}
	t := &Topic[T]{m: m}
	t.decl = &topicDecl{name: name, typ: typ, accepts: accepts[T](typ), topic: t}
	if typ.Kind() != reflect.Interface {
		t.decl.concrete = typ
	}
	m.topics.add(t.decl)
	m.reg.Rebuild(name) // routes of name point to the declaration
	m.version.Add(1)    // routes of name changed: emits must not use remembered ones (registry.Memo)
	return t, nil
}

// accepts returns the check that a value emitted as any is a T.
func accepts[T any](typ reflect.Type) func(any) bool {
	nilOK := typ.Kind() == reflect.Interface
	return func(v any) bool {
		if _, ok := v.(T); ok {
			return true
		}
		return nilOK && v == nil
	}
}

// typeName names t, with its package path when other has the same short
// name (two types called Order in different packages).
func typeName(t, other reflect.Type) string {
	if other != nil && t.String() == other.String() && t.PkgPath() != "" {
		return t.PkgPath() + "." + t.Name()
	}
	return t.String()
}

// mismatch is the error of emitting data under a name declared as d.
func (d *topicDecl) mismatch(data any) error {
	var got reflect.Type
	if data != nil {
		got = reflect.TypeOf(data)
	}
	gotName := "nil"
	if got != nil {
		gotName = typeName(got, d.typ)
	}
	return fmt.Errorf("%w: %q carries %s, not %s", ErrTypeMismatch, d.name, typeName(d.typ, got), gotName)
}

// checkType refuses data under a declared name of another type. The route
// of a declared name points to its declaration, so for a name with
// listeners the check costs a nil test unless the name is declared; for one
// without, an atomic load unless something is declared. Nothing is ever
// declared on an EventManager[T] with T other than any.
func (m *EventManager[T]) checkType(name string, rt *route[T], data T) error {
	var d *topicDecl
	if rt != nil {
		d = rt.topic
	} else {
		d = m.topics.find(name)
	}
	if d == nil {
		return nil
	}
	if d.concrete != nil {
		if reflect.TypeOf(any(data)) == d.concrete {
			return nil
		}
	} else if d.accepts(any(data)) {
		return nil
	}
	return d.mismatch(any(data))
}

// Name returns the event name the Topic emits and listens to.
func (t *Topic[T]) Name() string { return t.decl.name }

// route returns the listeners of the Topic's name, looking them up only
// when the registry changed since the last time.
func (t *Topic[T]) route() *route[any] {
	v := t.m.version.Load()
	if b := t.bound.Load(); b != nil && b.version == v {
		return b.rt
	}
	return t.rebind(v)
}

// rebind looks the name up in the registry as of version v or later. A
// registry change publishes the new routes before it increments the version,
// so a route read after loading v is at least as new as v.
func (t *Topic[T]) rebind(v uint64) *route[any] {
	r := t.m.reg.Load()
	rt, ok := r.Lookup(t.decl.name)
	if !ok {
		rt = r.Resolve(t.decl.name)
	}
	t.bound.Store(&boundRoute{version: v, rt: rt})
	return rt
}

// Emit is EventManager.Emit of data under the Topic's name: it hands the
// event to the worker pool and returns once it is accepted, with the same
// waiting, errors and guarantees. The event carries data as an any: a
// pointer (or map, channel, func) is stored as it is, without allocating;
// another value is copied to the heap, one allocation per emit (Go spares
// it for zero-sized values and small integers). Emit a pointer to keep the
// emit allocation-free.
func (t *Topic[T]) Emit(ctx context.Context, data T) error {
	return t.emit(ctx, data, true)
}

// TryEmit is EventManager.TryEmit of data under the Topic's name: Emit that
// never waits for room.
func (t *Topic[T]) TryEmit(data T) error {
	return t.emit(context.Background(), data, false)
}

func (t *Topic[T]) emit(ctx context.Context, data T, wait bool) error {
	m := t.m
	if m.opts.observer != nil {
		return m.observeEmit(ctx, t.decl.name, t.route(), data, wait)
	}
	return m.accept(ctx, t.decl.name, t.route(), data, wait)
}

// EmitSync is EventManager.EmitSync of data under the Topic's name: it runs
// every listener of the name, and every wildcard listener that matches it,
// in the calling goroutine, and returns their failures.
func (t *Topic[T]) EmitSync(ctx context.Context, data T) error {
	m := t.m
	if m.opts.observer != nil {
		return m.observeSync(ctx, t.decl.name, t.route(), data)
	}
	return m.runSync(ctx, t.decl.name, t.route(), data)
}

// Listen registers h for the Topic's name, as RegisterListener does, and
// returns the Listener. h receives Event[T]. Every ListenerOption applies;
// the generic ones (OrderedBy, Use) must be made for T (OrderedBy may also
// be made for any), or Listen fails with ErrInvalidOption. Middleware given
// to the EventManager with WithMiddleware wraps h as it wraps every other
// listener, and sees Event[any].
func (t *Topic[T]) Listen(h Handler[T], opts ...ListenerOption) (*Listener, error) {
	name := t.decl.name
	if h == nil {
		return nil, fmt.Errorf("listen %q: %w", name, ErrNilHandler)
	}
	cfg := listenerConfigOf(opts)
	if cfg.err != nil {
		return nil, fmt.Errorf("listen %q: %w", name, cfg.err)
	}
	// The listener's own middleware and timeout wrap h as a Handler[T];
	// the EventManager's wrap the adapted Handler[any], outside them, as
	// for any listener.
	typed, err := handlerFor(h, &cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", name, err)
	}
	cfg.middleware, cfg.timeout = nil, 0
	switch key := cfg.key.(type) {
	case nil, func(Event[any]) string:
	case func(Event[T]) string:
		cfg.key = func(e Event[any]) string { return key(typedEvent[T](e)) }
	default:
		return nil, fmt.Errorf("listen %q: %w: OrderedBy key %T for a Topic of %s", name, ErrInvalidOption, key, t.decl.typ)
	}
	return t.m.register(name, func(ctx context.Context, e Event[any]) error {
		return typed(ctx, typedEvent[T](e))
	}, &cfg)
}

// typedEvent converts an event of a declared name back to its type; every
// emit to the name was checked, so Data holds a T (or nil, for an interface
// T).
func typedEvent[T any](e Event[any]) Event[T] {
	d, _ := e.Data.(T)
	return Event[T]{Name: e.Name, Data: d}
}

// DeclaredType returns the type that NewTopic declared for the event name
// on m, or nil if it declared none (always nil for an EventManager[T] whose
// T is not any). A bridge that receives events from elsewhere uses it to
// decode a payload into its topic's type. It is safe for concurrent use and
// does not allocate.
func (m *EventManager[T]) DeclaredType(name string) reflect.Type {
	if d := m.topics.find(name); d != nil {
		return d.typ
	}
	return nil
}
