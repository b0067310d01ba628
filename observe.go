package eventbus

import (
	"context"
	"time"
)

// Observer sees every emit and every delivery, for metrics and tracing (the
// otelbus module implements one for OpenTelemetry). Set it with
// WithObserver; without one, none of this costs more than a nil check.
//
// Its methods are called concurrently, from emitting goroutines, EmitSync
// callers and workers, never with a lock of the EventManager held. They must
// be fast and must not block. A panic in Emit or its done is a panic of the
// emitting goroutine. A panic in Start or its done is the listener's: that
// attempt counts as panicked with a *PanicError (retried under Retry,
// reported on the pool, returned by EmitSync), and if Start panicked the
// handler does not run. A panic in Lost is the listener's too when a
// delivery is skipped as it starts; on a worker or the retry timer it is
// recovered and reported to the error handler; called from Emit (a drop
// policy), Unregister or Close, it is a panic of that caller. The functions they return are called exactly once, also for
// a pool handler that calls runtime.Goexit (its done gets OutcomeFailed, as
// Stats count it), except that an EmitSync listener that calls
// runtime.Goexit ends its caller's goroutine: neither its done nor the
// emit's is called, and Stats do not count it.
type Observer interface {
	// Emit is called when Emit, TryEmit or EmitSync starts, with the
	// caller's context. The context it returns is used in place of ctx, so
	// listeners see its values (a producer span, say); done is called with
	// the emit's result.
	Emit(ctx context.Context, name string) (_ context.Context, done func(err error))
	// Start is called just before a handler runs, once per attempt, in the
	// goroutine that runs it. The context it returns is passed to the
	// handler; done is called with the attempt's outcome (OutcomeDelivered,
	// OutcomeFailed or OutcomePanicked, or OutcomeSkipped when middleware
	// found the listener unregistered, see ErrUnregistered) and the
	// handler's error. d.Final tells a failure that is final (it reaches the
	// error handler) from one that will be retried.
	Start(ctx context.Context, d Delivery) (_ context.Context, done func(o Outcome, err error))
	// Lost is called for a delivery that does not run: OutcomeSkipped (its
	// listener was unregistered, or a Once listener had fired),
	// OutcomeDropped (an overflow policy) or OutcomeAbandoned (Close gave
	// up, or a delivery waiting to be retried when Close gave up). ctx is
	// the context the delivery had: the one its handler would have got (the
	// emitter's values and the listener's name; see Emit), so a span the
	// emitter's context carries is there.
	Lost(ctx context.Context, d Delivery, o Outcome)
}

// Delivery describes one delivery, or one attempt of it, to an Observer.
type Delivery struct {
	Event    string
	Listener *Listener
	Attempt  int       // attempts that already failed (Retry); 0 for the first
	Accepted time.Time // when Emit accepted it; zero for EmitSync
	// Final, in Start, reports that no retry follows if this attempt
	// fails: its failure is reported to the error handler (always true for
	// EmitSync, and for a listener without Retry). When an attempt that is
	// not final fails, the Observer is told again of the same delivery:
	// Start for its next attempt, or Lost if that attempt never runs
	// (OutcomeSkipped after Unregister, OutcomeAbandoned when Close gives
	// up). False in Lost.
	Final bool

	ctx context.Context // for Lost, when the description waits in a list
}

// Outcome is what became of a delivery, as an Observer sees it.
type Outcome uint8

const (
	OutcomeDelivered Outcome = iota // the handler returned nil
	OutcomeFailed                   // the handler returned an error
	OutcomePanicked                 // the handler panicked
	OutcomeSkipped                  // not run: unregistered, or a Once listener had fired
	OutcomeDropped                  // not run: dropped by an overflow policy
	OutcomeAbandoned                // not run: Close gave up waiting
)

// String names the outcome, in lower case ("delivered").
func (o Outcome) String() string {
	switch o {
	case OutcomeDelivered:
		return "delivered"
	case OutcomeFailed:
		return "failed"
	case OutcomePanicked:
		return "panicked"
	case OutcomeSkipped:
		return "skipped"
	case OutcomeDropped:
		return "dropped"
	case OutcomeAbandoned:
		return "abandoned"
	}
	return "unknown"
}

// WithObserver sets the Observer that sees every emit and delivery. A nil o
// sets none.
func WithObserver(o Observer) Option {
	return optionFunc(func(opts *options) { opts.observer = o })
}

// describe returns the Observer's view of a delivery of ev to e made with
// ctx (nil: none).
func (e *entry[T]) describe(ctx context.Context, ev Event[T], attempt int, accepted int64) Delivery {
	d := Delivery{Event: ev.Name, Listener: e.l, Attempt: attempt, ctx: e.bgCtx}
	if ctx != nil {
		d.ctx = e.named(ctx)
	}
	if accepted != 0 {
		d.Accepted = time.Unix(0, accepted)
	}
	return d
}

// lost tells the observer of a delivery of ev to e, made with ctx, that
// does not run.
func (e *entry[T]) lost(ctx context.Context, ev Event[T], attempt int, accepted int64, o Outcome) {
	d := e.describe(ctx, ev, attempt, accepted)
	e.obs.Lost(d.ctx, d, o)
}
