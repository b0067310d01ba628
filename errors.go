package eventbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/eventbus-go/eventbus/internal/sched"
)

// Sentinel errors. Errors returned by this package wrap them with context;
// test for them with [errors.Is].
var (
	// ErrClosed is returned by RegisterListener once Close has been
	// called, and by Emit, EmitSync and TryEmit called then from anywhere
	// but a handler running on the EventManager's pool during a graceful
	// Close. Once a call has returned it, every later call that is not made
	// from such a handler returns it too.
	ErrClosed = errors.New("eventbus: closed")
	// ErrQueueFull is returned when a listener's backlog has no room (see
	// WithQueueSize): by TryEmit, by any emit under OverflowFail, by an emit
	// from a handler once the reserve is used up, and by Emit when its
	// context ends while it waits for room (that error also matches the
	// context's error).
	ErrQueueFull = errors.New("eventbus: queue full")
	// ErrDropped is the error reported (inside a *ListenerError) for a
	// delivery dropped by OverflowDropNewest or OverflowDropOldest.
	ErrDropped = errors.New("eventbus: delivery dropped: backlog full")
	// ErrReentrant is returned by Flush, Close and
	// Listener.UnregisterAndWait when called from a handler that they would
	// otherwise wait for; see each for what it did instead.
	ErrReentrant = errors.New("eventbus: would wait for the calling handler")
	// ErrInvalidName is returned for an event name that is not valid; see
	// [ValidateName].
	ErrInvalidName = errors.New("eventbus: invalid event name")
	// ErrInvalidPattern is returned by RegisterListener for a pattern that is
	// not valid; see [ValidatePattern].
	ErrInvalidPattern = errors.New("eventbus: invalid pattern")
	// ErrNilHandler is returned by RegisterListener for a nil Handler.
	ErrNilHandler = errors.New("eventbus: nil handler")
	// ErrInvalidOption is returned by RegisterListener for a listener option
	// that cannot apply: a value out of range, or a generic option (such as
	// OrderedBy or Use) made for another event data type.
	ErrInvalidOption = errors.New("eventbus: invalid option")
	// ErrUnregistered is what the next handler returns to middleware (Use,
	// WithMiddleware) that calls it after the listener's Unregister has
	// returned: the listener's handler is not called, and the delivery is
	// counted as skipped (Stats.Skipped) if the middleware returns that
	// error, wrapped or not, rather than another error of its own.
	// EmitSyncTo returns an error matching it for a listener unregistered
	// (or a Once listener that has fired). Only the error next returns is a
	// skip: a handler that fails with an error matching ErrUnregistered of
	// its own (EmitSyncTo's, relaying to a listener that has gone) fails.
	ErrUnregistered = errors.New("eventbus: listener unregistered")
	// ErrTypeMismatch is returned by NewTopic for a name already declared
	// with another type, and by Emit, TryEmit and EmitSync for a value whose
	// type is not the one declared for its name (nothing is delivered then).
	// The error names both types.
	ErrTypeMismatch = errors.New("eventbus: type mismatch")
)

// ListenerError is the error of one listener handling one event: the error
// the Handler returned, or a [*PanicError] if it panicked, or [ErrDropped]
// for a delivery that an overflow policy dropped. Asynchronous failures
// reach the error handler (see [WithErrorHandler]) as a *ListenerError,
// with the delivery's context; EmitSync returns them.
//
// It carries the event and the listener, so a failed delivery can be
// replayed to that listener alone: the error handler parks the
// *ListenerError in a dead-letter store, and later
//
//	m.EmitTo(ctx, lerr.Handle, lerr.Event, lerr.Data) // lerr.Data.(T) for an EventManager[T]
//
// delivers it again (see EventManager.EmitTo and the dead-letter example).
// It keeps no reference to the delivery's context once the error handler
// has returned.
type ListenerError struct {
	Event    string    // the event's name
	Data     any       // the event's data (for an EventManager[T], a T)
	Listener string    // the listener's name (see Name); "pattern#n" by default
	Pattern  string    // the pattern the listener was registered with
	Attempts int       // the attempt that failed: 1, or more with Retry (for a drop, the one dropped)
	Err      error     // what the handler returned, a *PanicError, or ErrDropped
	Handle   *Listener // the listener itself, for EmitTo (nil only in a ListenerError made by hand)

	ctx context.Context // the delivery's, for the error handler; nil once reported
}

// Error describes the listener, the event and the cause. The listener is
// shown by name, and by pattern too unless the name begins with the
// pattern and '#', as default names (the pattern, '#' and a number) do.
func (e *ListenerError) Error() string {
	who := strconv.Quote(e.Listener)
	if e.Listener == "" {
		who = strconv.Quote(e.Pattern)
	} else if !strings.HasPrefix(e.Listener, e.Pattern+"#") {
		who += " (pattern " + strconv.Quote(e.Pattern) + ")"
	}
	if e.Attempts > 1 {
		return fmt.Sprintf("eventbus: listener %s on event %q failed after %d attempts: %v", who, e.Event, e.Attempts, e.Err)
	}
	return fmt.Sprintf("eventbus: listener %s on event %q: %v", who, e.Event, e.Err)
}

// Unwrap returns the handler's error or the *PanicError.
func (e *ListenerError) Unwrap() error { return e.Err }

// PanicError is the error recorded when a Handler panics: the value it
// panicked with and the stack of the goroutine at that point.
type PanicError struct {
	Value any
	Stack []byte
}

// Error gives the panic value; the stack is in the Stack field.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns the panic value if it is an error, so that errors.Is can
// see through a panic(err).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// logFailure logs err to logger (slog.Default() when nil) with ctx, so a
// handler that reads the context (otelbus.LogHandler adds trace_id and
// span_id from it) sees the delivery's: a *ListenerError with its fields as
// attributes, a panic's stack included.
func logFailure(ctx context.Context, logger *slog.Logger, err error) {
	if logger == nil {
		logger = slog.Default()
	}
	lerr, ok := err.(*ListenerError)
	if !ok {
		logger.LogAttrs(ctx, slog.LevelError, "eventbus: error", slog.Any("err", err))
		return
	}
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs,
		slog.String("event", lerr.Event),
		slog.String("listener", lerr.Listener),
		slog.String("pattern", lerr.Pattern),
		slog.Int("attempts", lerr.Attempts),
		slog.Any("err", lerr.Err))
	msg := "eventbus: listener failed"
	var perr *PanicError
	if errors.As(lerr.Err, &perr) {
		msg = "eventbus: listener panicked"
		attrs = append(attrs, slog.String("stack", string(perr.Stack)))
	}
	if errors.Is(lerr.Err, ErrDropped) {
		msg = "eventbus: delivery dropped"
	}
	logger.LogAttrs(ctx, slog.LevelError, msg, attrs...)
}

// The errors of a refused emit are built without formatting: a refusal is
// the answer TryEmit gives under load, on a path that must stay cheap, so
// its message is made only when someone reads it.

// emitError is the error of an emit of name that was refused or failed: err
// with the name in front.
type emitError struct {
	name string
	err  error
}

func (e *emitError) Error() string { return fmt.Sprintf("emit %q: %v", e.name, e.err) }
func (e *emitError) Unwrap() error { return e.err }

// queueFullError is ErrQueueFull for the scheduler's refusal q: the
// listener of pattern q.Name, whose backlog holds q.Waiting deliveries;
// q.ReserveUsed says that an emit from a listener also used up the
// reserve. It is one pointer, so making an error of it does not allocate.
type queueFullError struct{ q *sched.QueueFullError }

func (e queueFullError) Error() string {
	s := fmt.Sprintf("%v: listener %q has %d deliveries waiting", ErrQueueFull, e.q.Name, e.q.Waiting)
	if e.q.ReserveUsed {
		s += ", and the reserve for emits from listeners is used up"
	}
	return s
}

func (e queueFullError) Unwrap() error { return ErrQueueFull }
