package eventbus

import (
	"context"
	"fmt"

	"github.com/eventbus-go/eventbus/internal/sched"
)

// EmitTo is Emit to one listener only: the event goes to l alone, as if l
// were the only listener matching name, so that a failed delivery can be
// replayed to the listener that failed (l is a *ListenerError's Handle) or
// a listener brought up to date (a replay for a new subscriber, say) without
// disturbing the others. The delivery takes its place in l's order among
// the other events accepted for l, counts against l's backlog, follows l's
// delivery mode and overflow policy, and is counted in Stats like any
// other; it waits for room, and fails, as Emit does, and as with Emit a ctx
// already cancelled does not stop it (l's handler gets ctx's values, not its
// cancellation, unless l has CancelWithEmitter).
//
// name must be a valid event name that l's pattern matches
// (ErrInvalidName otherwise), data must be of the type declared for name by
// NewTopic, if any (ErrTypeMismatch otherwise), and l must be a listener of
// m (ErrInvalidOption otherwise). A listener already unregistered skips the
// delivery, as it skips those queued before Unregister.
func (m *EventManager[T]) EmitTo(ctx context.Context, l *Listener, name string, data T) error {
	if o := m.opts.observer; o != nil {
		ctx, done := o.Emit(ctx, name)
		err := emitTo(ctx, m, l, name, data)
		done(err)
		return err
	}
	return emitTo(ctx, m, l, name, data)
}

// EmitTo is m.EmitTo(ctx, l, name, data).
//
// Deprecated: use the method, [EventManager.EmitTo].
func EmitTo[T any](ctx context.Context, m *EventManager[T], l *Listener, name string, data T) error {
	return m.EmitTo(ctx, l, name, data)
}

// EmitTo is EventManager.EmitTo of data under the Topic's name: it delivers
// to l alone, which must be a listener of the Topic's EventManager whose
// pattern matches the name (one registered with the Topic's Listen, or a
// wildcard listener of the manager).
func (t *Topic[T]) EmitTo(ctx context.Context, l *Listener, data T) error {
	return t.m.EmitTo(ctx, l, t.decl.name, data)
}

func emitTo[T any](ctx context.Context, m *EventManager[T], l *Listener, name string, data T) (err error) {
	e, err := m.checkTarget(l, name, data)
	ev := Event[T]{Name: name, Data: data}
	var keys []string
	var key [1]string
	if err == nil && e.keyFn != nil {
		if key[0], err = e.key(ev); err == nil {
			keys = key[:]
		}
	}
	if err == nil {
		to, in := [1]*entry[T]{e}, [1]*sched.Inbox[Event[T], nameCtx]{e.in}
		var names []nameCtx
		if lctx := m.listenerContext(ctx); !sameContext(lctx, m.pool.Context()) {
			names = m.names(lctx, to[:])
		}
		if err = m.pool.Accept(ctx, in[:], ev, keys, names, true); err != nil {
			err = acceptError(err)
		}
	}
	if err != nil {
		m.sync.add(cRejected, 1)
		return fmt.Errorf("emit %q to listener %q: %w", name, targetName(l), err)
	}
	return nil
}

// checkTarget checks an emit of name with data to l alone (EmitTo,
// EmitSyncTo) and returns l's entry: l must be a listener of m whose pattern
// matches the valid name, data of the type declared for name, and m open.
func (m *EventManager[T]) checkTarget(l *Listener, name string, data T) (*entry[T], error) {
	if l == nil {
		return nil, fmt.Errorf("%w: nil listener", ErrInvalidOption)
	}
	e, ok := l.owner.(*entry[T])
	switch {
	case !ok || e.m != m:
		return nil, fmt.Errorf("%w: listener %q is not one of this EventManager's", ErrInvalidOption, l.name)
	case ValidateName(name) != nil:
		return nil, ValidateName(name)
	case !MatchPattern(l.pattern, name):
		return nil, fmt.Errorf("%w %q: listener pattern %q does not match it", ErrInvalidName, name, l.pattern)
	case m.checkType(name, nil, data) != nil:
		return nil, m.checkType(name, nil, data)
	case m.pool.Refuses():
		return nil, ErrClosed
	}
	return e, nil
}

// targetName is l's name in an error, or <nil>.
func targetName(l *Listener) string {
	if l == nil {
		return "<nil>"
	}
	return l.name
}

// EmitSyncTo is EmitSync to one listener only: it runs l's handler, with its
// middleware and Timeout, in the calling goroutine, as EmitSync would run it
// for name (with ctx and the listener's name added; see ListenerName; the
// Observer, if any, sees the emit and the delivery), and returns once it has
// returned. It exists for code that delivers an event to each of its
// listeners by itself and retries only those that failed (see ListenersOf,
// Listener.Ordered). Like EmitSync it ignores l's delivery mode, Retry and
// backlog, so concurrent calls may run l concurrently; a Once listener
// fires, and is unregistered, as with EmitSync. It is counted in Stats as
// one emitted event matched by one listener.
//
// It returns nil when the handler returned nil, and the handler's failure as
// a *ListenerError (not wrapped: errors.As or a type assertion gets it; a
// panic is one whose Err is a *PanicError); the failure does not go to the
// error handler. It returns an error without calling the handler when l is
// nil or not a listener of m (ErrInvalidOption), name is invalid or l's
// pattern does not match it (ErrInvalidName), data is not of the type
// declared for name by NewTopic (ErrTypeMismatch), Close has been called
// (ErrClosed), ctx is already done (ctx's error), or l has been
// unregistered, or is a Once listener that has fired (ErrUnregistered; the
// delivery counts as skipped). A handler skipped by its middleware because
// Unregister returned meanwhile also yields ErrUnregistered.
func (m *EventManager[T]) EmitSyncTo(ctx context.Context, l *Listener, name string, data T) error {
	if o := m.opts.observer; o != nil {
		ctx, done := o.Emit(ctx, name)
		err := emitSyncTo(ctx, m, l, name, data)
		done(err)
		return err
	}
	return emitSyncTo(ctx, m, l, name, data)
}

func emitSyncTo[T any](ctx context.Context, m *EventManager[T], l *Listener, name string, data T) error {
	e, err := m.checkTarget(l, name, data)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		m.sync.add(cRejected, 1)
		return fmt.Errorf("emit %q to listener %q: %w", name, targetName(l), err)
	}
	ev := Event[T]{Name: name, Data: data}
	oc, err := e.call(ctx, ev, 0, 0, true)
	// Counted as EmitSync counts (syncRest): one call, one delivery, its
	// outcome; the error is its *ListenerError, if any.
	to := [1]*entry[T]{e}
	if err = m.syncRest(ctx, to[:], 0, ev, oc, err); err == nil && oc == skipped {
		return fmt.Errorf("emit %q to listener %q: %w", name, l.name, ErrUnregistered)
	}
	return err
}
