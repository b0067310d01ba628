package outbox

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap them with context;
// test for them with errors.Is.
var (
	// ErrClosed is returned by Emit and Flush once Close has been called.
	ErrClosed = errors.New("outbox: closed")
	// ErrNilTx is returned by Emit for a nil *sql.Tx.
	ErrNilTx = errors.New("outbox: nil transaction")
	// ErrInvalidOption is returned by New for an option out of range, a nil
	// database or EventManager, or a table name that is not a plain SQL
	// identifier.
	ErrInvalidOption = errors.New("outbox: invalid option")
	// ErrUnsupported is returned by New for a database that is neither
	// SQLite nor PostgreSQL, or a table that exists with other columns.
	ErrUnsupported = errors.New("outbox: unsupported database")
	// ErrEncode is returned by Emit when the codec cannot encode the data;
	// nothing is written then.
	ErrEncode = errors.New("outbox: cannot encode event data")
	// ErrDecode is the cause of a DeadLetter for a row whose payload the
	// codec cannot decode, whose name is not a valid event name, or whose
	// id, name or payload column holds NULL or a value of another type: a
	// corrupt row.
	ErrDecode = errors.New("outbox: cannot decode row")
	// ErrListenerExited is the failure of an attempt whose listener called
	// runtime.Goexit (as t.FailNow does in a test's listener): the attempt
	// counts as failed, and the relay goes on.
	ErrListenerExited = errors.New("outbox: listener called runtime.Goexit")
	// ErrDeadLetter is matched by every *DeadLetter: an event given up
	// after the attempt limit (see MaxAttempts).
	ErrDeadLetter = errors.New("outbox: dead letter")
)

// DeadLetter is the error reported when the outbox gives up: on one
// listener of an event, whose delivery failed MaxAttempts times (Err is its
// last *eventbus.ListenerError; the event's other listeners are not
// concerned), or on a corrupt row, whose decoding failed that many times
// (Err matches ErrDecode; Listener is ""). Once no listener of the event is
// left to do, its row stays in the table marked dead (state 2), with the
// last error and the listeners handled and given up (column handled); it is
// never delivered again.
//
// It reaches the EventManager's error handler (see eventbus.WithErrorHandler)
// through EventManager.ReportError, in the relay's goroutine, once per
// listener given up, wrapped in an *eventbus.ListenerError of that listener
// (Handle is the listener, for EmitTo; Data the event's decoded data) or,
// for a corrupt row, of the name DeadLetterListener with a nil Handle and
// the zero Data. Use errors.As to get it; the handler's context carries the
// event's ID (see EventID).
type DeadLetter struct {
	ID       string // the event's ID (see EventID)
	Name     string // the event's name as stored
	Seq      int64  // the row's position in the table
	Attempts int    // the listener's failed attempts (the row's, for a corrupt row)
	Data     any    // the decoded data, or nil for a corrupt row
	Listener string // the name of the listener given up (see eventbus.Listener.Name); "" for a corrupt row
	Err      error  // the last attempt's error
}

// Error describes the event and its last failure.
func (e *DeadLetter) Error() string {
	if e.Listener != "" {
		return fmt.Sprintf("outbox: dead letter: event %q (id %s) given up for listener %q after %d attempts: %v", e.Name, e.ID, e.Listener, e.Attempts, e.Err)
	}
	return fmt.Sprintf("outbox: dead letter: event %q (id %s) given up after %d attempts: %v", e.Name, e.ID, e.Attempts, e.Err)
}

// Unwrap returns ErrDeadLetter and the last attempt's error.
func (e *DeadLetter) Unwrap() []error { return []error{ErrDeadLetter, e.Err} }
