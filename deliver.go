package eventbus

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/eventbus-go/eventbus/internal/guard"
)

// Running one delivery: the handler call, its outcome and its counting,
// shared by EmitSync and the pool (whose scheduler calls it through
// entry.Deliver, pool.go). Outcomes are counted here (count) and, on the
// short paths, where those call handlers directly: runSync's callAll
// (delivered), the pool's lean batches (entry.RunBatch and runLean:
// failures through settle, delivered per batch) and pool.go's Listener
// methods (Delivered per batch, Retried, Dropped, Exited, Skipped). A metrics hook belongs with the
// Observer (observe.go), which every path already calls.

// outcome is what became of one delivery; its values are those of Outcome.
type outcome = Outcome

const (
	delivered = OutcomeDelivered
	failed    = OutcomeFailed
	panicked  = OutcomePanicked
	skipped   = OutcomeSkipped
)

// call runs the handler, turning a panic into a *PanicError. attempt is the
// number of attempts that already failed; accepted is when Emit accepted the
// delivery (0 for EmitSync, or when nobody observes); final says that no
// retry follows if this attempt fails.
func (e *entry[T]) call(ctx context.Context, ev Event[T], attempt int, accepted int64, final bool) (oc outcome, err error) {
	l := e.l
	if l.removed.Load() {
		return e.skip(ctx, ev, attempt, accepted)
	}
	if e.once && attempt == 0 {
		if !l.fired.CompareAndSwap(false, true) {
			return e.skip(ctx, ev, attempt, accepted)
		}
		l.unlink() // its retries still run unless Unregister is called
	}
	ctx = e.named(ctx)
	if e.obs != nil {
		return e.observed(ctx, ev, attempt, accepted, final)
	}
	// The handler is called here rather than through run, to save a call
	// on the hot path; recover is called only if the handler did not
	// return (a call into the runtime on every delivery otherwise).
	returned := false
	defer func() {
		if !returned {
			oc, err = recovered(recover())
		}
	}()
	herr := e.h(ctx, ev)
	returned = true
	if herr != nil {
		return e.failedWith(herr)
	}
	return delivered, nil
}

// recovered is the outcome of a handler that did not return, given what
// recover returned: panicked, with a *PanicError; or, when r is nil (it
// called runtime.Goexit: the goroutine ends and nobody sees the outcome),
// delivered.
func recovered(r any) (outcome, error) {
	if r == nil {
		return delivered, nil
	}
	return panicked, &PanicError{Value: r, Stack: debug.Stack()}
}

// failedWith is the outcome of a handler that returned err: skipped when
// its middleware found the listener unregistered (the guard's error, see
// ErrUnregistered), failed otherwise, even with an error that matches
// ErrUnregistered (a handler relaying with EmitSyncTo to a listener that
// has gone fails).
func (e *entry[T]) failedWith(err error) (outcome, error) {
	if e.guarded && guard.Is(err) {
		return skipped, nil
	}
	return failed, err
}

// skip tells the observer, if any, of a skipped delivery. A panic in
// Observer.Lost is the listener's: the delivery counts as panicked.
func (e *entry[T]) skip(ctx context.Context, ev Event[T], attempt int, accepted int64) (oc outcome, err error) {
	if e.obs != nil {
		defer observerPanic("Lost", &oc, &err)
		e.lost(ctx, ev, attempt, accepted, OutcomeSkipped)
	}
	return skipped, nil
}

// observed runs the handler between the observer's Start and done. A panic
// in Start or done is the listener's, as one in the handler is: the attempt
// counts as panicked and its error is the *PanicError (retried under Retry,
// reported on the pool, returned by EmitSync). If Start panics the handler
// does not run and done is not called.
func (e *entry[T]) observed(ctx context.Context, ev Event[T], attempt int, accepted int64, final bool) (oc outcome, err error) {
	d := e.describe(ctx, ev, attempt, accepted)
	d.Final = final
	var done func(Outcome, error)
	func() {
		defer observerPanic("Start", &oc, &err)
		ctx, done = e.obs.Start(ctx, d)
	}()
	if err != nil {
		return oc, err
	}
	returned := false
	if accepted != 0 && done != nil { // a pool delivery (observed: see sched.Options.Observed)
		defer func() {
			if !returned { // run recovers panics: this is runtime.Goexit
				done(OutcomeFailed, errGoexit)
			}
		}()
	}
	oc, err = e.run(ctx, ev)
	returned = true
	if done != nil {
		defer observerPanic("done", &oc, &err)
		done(Outcome(oc), err)
	}
	return oc, err
}

// observerPanic, deferred around a call into an Observer, turns its panic
// into the outcome panicked with a *PanicError.
func observerPanic(what string, oc *outcome, err *error) {
	if r := recover(); r != nil {
		*oc = panicked
		*err = fmt.Errorf("eventbus: observer %s panicked: %w", what, &PanicError{Value: r, Stack: debug.Stack()})
	}
}

// run calls the handler, turning a panic into a *PanicError.
func (e *entry[T]) run(ctx context.Context, ev Event[T]) (oc outcome, err error) {
	defer func() {
		if r := recover(); r != nil {
			oc, err = panicked, &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	if err := e.h(ctx, ev); err != nil {
		return e.failedWith(err)
	}
	return delivered, nil
}

// count counts outcome oc of a delivery in c and the listener's counters,
// and returns the failure as a *ListenerError (nil for delivered and
// skipped). Being generic, count is not inlined, so its callers count the
// common outcome, delivered, themselves: EmitSync on the listener's
// tallies, the pool in the worker's batch counters (added to the listener
// once per batch, through entry.Delivered).
func (e *entry[T]) count(ev Event[T], oc outcome, err error, attempt int, c *counters) *ListenerError {
	l := &e.l.counts
	switch oc {
	case delivered:
		c.deliveredTo(e.l)
		return nil
	case skipped:
		c.skipped++
		l.add(cSkipped, 1)
		return nil
	case failed:
		c.failed++
		l.add(cFailed, 1)
	case panicked:
		c.panicked++
		l.add(cPanicked, 1)
	}
	return e.failure(ev, attempt, err)
}

// failure is the error of attempt number attempt+1 of ev to e.
func (e *entry[T]) failure(ev Event[T], attempt int, err error) *ListenerError {
	return &ListenerError{Event: ev.Name, Data: ev.Data, Listener: e.l.name, Pattern: e.pattern, Attempts: attempt + 1, Err: err, Handle: e.l}
}

// failureIn is failure for a delivery made with ctx, which the error
// handler gets with it.
func (e *entry[T]) failureIn(ctx context.Context, ev Event[T], attempt int, err error) *ListenerError {
	lerr := e.failure(ev, attempt, err)
	lerr.ctx = e.named(ctx)
	return lerr
}

// errGoexit is the failure reported for a handler that called
// runtime.Goexit (as t.FailNow does).
var errGoexit = errors.New("eventbus: handler called runtime.Goexit")
