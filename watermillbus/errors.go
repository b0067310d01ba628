package watermillbus

import "errors"

// Sentinel errors. Errors returned by this package wrap them with context;
// test for them with errors.Is.
var (
	// ErrClosed is returned by Publish and Subscribe once Close has been
	// called.
	ErrClosed = errors.New("watermillbus: closed")
	// ErrInvalidOption is returned by New for an option out of range.
	ErrInvalidOption = errors.New("watermillbus: invalid option")
	// ErrNilMessage is returned by Publish for a nil *message.Message;
	// the messages before it are published, the ones after it are not.
	ErrNilMessage = errors.New("watermillbus: nil message")
	// ErrNilContext is returned by Subscribe for a nil context.
	ErrNilContext = errors.New("watermillbus: nil context")
	// ErrInvalidEventName is returned by Topic for an event name that
	// EventName does not produce.
	ErrInvalidEventName = errors.New("watermillbus: not an event name made by EventName")
)

// errNacked is what a subscription's listener returns for a message nacked
// under WithNackDelay, so that the listener's Retry policy sends it again.
// It never reaches the EventManager's error handler: the policy retries
// until the message is acked or the listener is unregistered, which skips
// the retry.
var errNacked = errors.New("watermillbus: message nacked")
