package eventbus

import (
	"errors"
	"fmt"
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
)

// ListenerError is the error of one listener handling one event: the error
// the Handler returned, or a [*PanicError] if it panicked. Asynchronous
// failures reach the error handler (see [WithErrorHandler]) as a
// *ListenerError; EmitSync returns them.
type ListenerError struct {
	Event    string // the event's name
	Pattern  string // the pattern the listener was registered with
	Attempts int    // how many times the handler ran (more than 1 with Retry)
	Err      error  // what the handler returned, or a *PanicError
}

// Error describes the listener, the event and the cause.
func (e *ListenerError) Error() string {
	if e.Attempts > 1 {
		return fmt.Sprintf("eventbus: listener %q on event %q failed after %d attempts: %v", e.Pattern, e.Event, e.Attempts, e.Err)
	}
	return fmt.Sprintf("eventbus: listener %q on event %q: %v", e.Pattern, e.Event, e.Err)
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
