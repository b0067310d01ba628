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
	// codec cannot decode, or whose name is not a valid event name: a
	// corrupt row.
	ErrDecode = errors.New("outbox: cannot decode row")
	// ErrDeadLetter is matched by every *DeadLetter: an event given up
	// after the attempt limit (see MaxAttempts).
	ErrDeadLetter = errors.New("outbox: dead letter")
)

// DeadLetter is the error reported for an event given up on: its delivery
// failed MaxAttempts times (Err then joins the last attempt's
// *eventbus.ListenerError values), or its row could not be decoded that many
// times (Err then matches ErrDecode). The row stays in the table, marked
// dead, with the last error; it is never delivered again.
//
// It reaches the EventManager's error handler (see eventbus.WithErrorHandler)
// wrapped in an *eventbus.ListenerError of the internal listener named
// DeadLetterListener for the event DeadLetterEvent, whose Data is the event's
// decoded data (the zero value for a corrupt row). Use errors.As to get it.
type DeadLetter struct {
	ID       string // the event's ID (see EventID)
	Name     string // the event's name as stored
	Seq      int64  // the row's position in the table
	Attempts int    // the attempts made
	Data     any    // the decoded data, or nil for a corrupt row
	Err      error  // the last attempt's error
}

// Error describes the event and its last failure.
func (e *DeadLetter) Error() string {
	return fmt.Sprintf("outbox: dead letter: event %q (id %s) given up after %d attempts: %v", e.Name, e.ID, e.Attempts, e.Err)
}

// Unwrap returns ErrDeadLetter and the last attempt's error.
func (e *DeadLetter) Unwrap() []error { return []error{ErrDeadLetter, e.Err} }
