package sched

import (
	"errors"
	"fmt"
	"time"
)

// Listener is what the scheduler knows of a listener: how to run one
// delivery of it, and whom to tell about the deliveries it counts or loses.
// It may run whole batches itself (RunBatch), or leave them to Deliver.
// The scheduler's user implements it (the eventbus package, with its
// listener entries); E is the event a delivery carries, and C the type of
// the per-listener value (a context, to the eventbus) that an emit may
// attach to each of its deliveries (see Scheduler.Accept).
//
// Its methods are called from workers, the retry timer and the goroutines
// that call the scheduler, concurrently: they must be safe for concurrent
// use. They are called without the scheduler's lock held, but for Backoff
// and Removed, which must only read, and Skipped and Dropped, which count
// (so that a Flush that returns after a drop or a skip finds it counted):
// these four are called under it and must not call the scheduler. named is
// nil when the emit attached nothing; attempt counts the attempts of that delivery that already failed;
// accepted is when the event was accepted, in Unix nanoseconds, or 0 when
// the scheduler is not Observed.
type Listener[E, C any] interface {
	// Deliver runs one attempt of a delivery, on a worker. mayRetry is false
	// once Close has given up: a failure then is final. It returns Retry
	// when the attempt failed and must be run again (after Backoff), else
	// the outcome and, for a failure to report, its error (which the
	// scheduler hands to Options.Report). It counts its outcomes for the
	// listener itself, except Delivered: the scheduler adds those up per
	// batch and calls Delivered. The batches that the listener takes
	// (RunBatch) do not come here.
	Deliver(named *C, ev E, attempt int, accepted int64, mayRetry bool) (Result, error)
	// Delivered counts n deliveries that returned Delivered, once per batch.
	Delivered(n uint64)
	// Skipped counts n deliveries that will not run because Removed became
	// true while they waited out a backoff (see Scheduler.DropRetries).
	Skipped(n uint64)
	// Dropped counts a delivery that the listener's overflow policy drops
	// (backlog deliveries were queued) and returns the error to report.
	Dropped(named *C, ev E, attempt int, backlog int) error
	// Exited settles an attempt whose handler ended its goroutine
	// (runtime.Goexit), on that goroutine as it ends, as Deliver settles a
	// failed one: it returns Retry when the attempt must be run again
	// (mayRetry as for Deliver), else counts the delivery and returns its
	// outcome and the error to report. A listener that runs its batches
	// itself (RunBatch) does not retry: Exited then returns Failed.
	Exited(named *C, ev E, attempt int, mayRetry bool) (Result, error)
	// Lost tells that a delivery will not run, with the reason, when the
	// scheduler is Observed. onPool says it is called on one of the pool's
	// own goroutines (a worker, the retry timer), where a panic must not
	// end the process; otherwise it is called by the goroutine that caused
	// the loss (Accept, DropRetries, Close).
	Lost(named *C, ev E, attempt int, accepted int64, why Loss, onPool bool)
	// Backoff returns how long to wait before the next attempt of a
	// delivery whose attempts so far (attempt+1) all failed.
	Backoff(attempt int) time.Duration
	// Removed reports whether the listener has been unregistered; a
	// delivery to retry then goes back to its mailbox at once instead of
	// waiting out its backoff.
	Removed() bool
	// RunBatch is offered each batch a worker takes of the listener, on
	// that worker: it runs the batch itself and reports true, cheaper than
	// one Deliver call per delivery, or reports false without calling b's
	// methods, and the worker runs the batch through Deliver. Running b
	// means calling b.Next until it returns a nil event, running each
	// delivery it returns (its event is shared with the event's other
	// deliveries: read it, never write it or keep it past the next call of
	// Next), and calling b.Settle for one that did not deliver (having
	// counted it) before the next call of Next. A delivery that Next
	// returned and that was not settled counts as delivered (Delivered is
	// called once for the batch). Each delivery is a first and final
	// attempt: a listener that retries must decline. RunBatch may return
	// true early, before Next returns a nil event: the deliveries not
	// claimed go back to the mailbox, as those of a batch that yields do.
	// See batch.go.
	RunBatch(b *Batch[E, C]) bool
}

// Result is what became of one attempt of a delivery (Listener.Deliver).
type Result uint8

const (
	Delivered Result = iota // done: the handler returned nil
	Failed                  // done: the handler returned an error
	Panicked                // done: the handler panicked
	Skipped                 // done: not run (unregistered, or a Once listener had fired)
	Retry                   // failed, and to be attempted again
)

// Loss is why a delivery does not run (Listener.Lost).
type Loss uint8

const (
	LostSkipped   Loss = iota // the listener was unregistered while it waited out a backoff
	LostDropped               // dropped by an overflow policy
	LostAbandoned             // Close gave up waiting
)

// Overflow is what a listener's full backlog does to an emit.
type Overflow uint8

const (
	OverflowWait       Overflow = iota // wait for room (fail under TryEmit, or from a worker past the reserve)
	OverflowFail                       // fail the emit
	OverflowDropNewest                 // drop the new delivery for this listener
	OverflowDropOldest                 // drop the oldest delivery queued with the same key
)

// Config is a listener's scheduling configuration, read once by NewInbox.
type Config struct {
	// Name names the listener in errors (a pattern, to the eventbus).
	Name string
	// Ordered runs one delivery at a time, in accept order.
	Ordered bool
	// Keyed runs, per key, one delivery at a time in accept order (each
	// Accept gives every keyed listener's key).
	Keyed bool
	// Concurrency, when positive, is how many deliveries may run at once
	// (over all keys for a Keyed listener); 1 is Ordered.
	Concurrency int
	// QueueSize, when positive, bounds the backlog in place of the
	// scheduler's Options.QueueSize.
	QueueSize int
	// Overflow, when OverflowSet, replaces Options.Overflow.
	Overflow    Overflow
	OverflowSet bool
}

// Errors the scheduler returns; its user turns them into its own.
var (
	// ErrClosed: the scheduler is closed, and the caller may not emit.
	ErrClosed = errors.New("sched: closed")
	// ErrReentrant: Flush, Close or Quiesce called from a worker that it
	// would have to wait for.
	ErrReentrant = errors.New("sched: reentrant call")
)

// QueueFullError is Accept's error when a listener's backlog has no room.
type QueueFullError struct {
	Name        string // the listener's Config.Name
	Waiting     int    // its backlog (0 when Err is set)
	ReserveUsed bool   // the emit came from a worker and used up the reserve
	Err         error  // when non-nil: the context error that ended a wait for room
}

// Error says whose backlog was full, or which context ended the wait.
func (e *QueueFullError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("sched: queue full: %v", e.Err)
	}
	return fmt.Sprintf("sched: listener %q has %d deliveries waiting", e.Name, e.Waiting)
}

// Unwrap returns the context error that ended a wait for room, if any.
func (e *QueueFullError) Unwrap() error { return e.Err }
