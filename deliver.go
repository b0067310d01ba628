package eventbus

import (
	"context"
	"runtime/debug"
)

// Running one delivery: the handler call, its outcome and its counting,
// shared by EmitSync and the pool. This is the one place where outcomes are
// counted, so it is where a metrics hook belongs.

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
// delivery (0 for EmitSync, or when nobody observes).
func (e *entry[T]) call(ctx context.Context, ev Event[T], attempt int, accepted int64) (oc outcome, err error) {
	l := e.l
	if l.removed.Load() {
		return e.skip(ev, attempt, accepted)
	}
	if e.once && attempt == 0 {
		if !l.fired.CompareAndSwap(false, true) {
			return e.skip(ev, attempt, accepted)
		}
		l.unlink() // its retries still run unless Unregister is called
	}
	ctx = e.named(ctx)
	if e.obs != nil {
		return e.observed(ctx, ev, attempt, accepted)
	}
	// The handler is called here rather than through run, to save a call
	// on the hot path; recover is called only if the handler did not
	// return (a call into the runtime on every delivery otherwise).
	returned := false
	defer func() {
		if returned {
			return
		}
		if r := recover(); r != nil {
			oc, err = panicked, &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	herr := e.h(ctx, ev)
	returned = true
	if herr != nil {
		return failed, herr
	}
	return delivered, nil
}

// skip tells the observer, if any, of a skipped delivery.
func (e *entry[T]) skip(ev Event[T], attempt int, accepted int64) (outcome, error) {
	if e.obs != nil {
		e.obs.Lost(e.describe(ev, attempt, accepted), OutcomeSkipped)
	}
	return skipped, nil
}

// observed runs the handler between the observer's Start and done.
func (e *entry[T]) observed(ctx context.Context, ev Event[T], attempt int, accepted int64) (outcome, error) {
	ctx, done := e.obs.Start(ctx, e.describe(ev, attempt, accepted))
	oc, err := e.run(ctx, ev)
	done(Outcome(oc), err)
	return oc, err
}

// run calls the handler, turning a panic into a *PanicError.
func (e *entry[T]) run(ctx context.Context, ev Event[T]) (oc outcome, err error) {
	defer func() {
		if r := recover(); r != nil {
			oc, err = panicked, &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	if err := e.h(ctx, ev); err != nil {
		return failed, err
	}
	return delivered, nil
}

// count counts outcome oc of a delivery in c and the listener's counters,
// and returns the failure as a *ListenerError (nil for delivered and
// skipped). Being generic, count is not inlined, so its callers count the
// common outcome, delivered, themselves: EmitSync on the listener's
// tallies, the pool in the worker's batch counters (added to the listener
// once per batch, in account).
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
	return &ListenerError{Event: ev.Name, Data: ev.Data, Listener: e.l.name, Pattern: e.pattern, Attempts: attempt + 1, Err: err}
}

// deliver runs one pool delivery. It reports retry when the delivery failed
// and must be run again (mayRetry is false once Close has given up);
// otherwise it counts the outcome and returns the failure to report, if any.
func (e *entry[T]) deliver(ctx context.Context, ev Event[T], attempt int, accepted int64, mayRetry bool, c *counters) (retry bool, lerr *ListenerError) {
	oc, err := e.call(ctx, ev, attempt, accepted)
	if oc == delivered {
		// Counted for the listener by account, once per batch rather
		// than with an atomic add per delivery.
		c.delivered++
		return false, nil
	}
	if (oc == failed || oc == panicked) && mayRetry && e.retry != nil && e.retry.again(attempt) {
		c.retried++
		e.l.counts.add(cRetried, 1)
		return true, nil
	}
	return false, e.count(ev, oc, err, attempt, c)
}
