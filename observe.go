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
// be fast and must not block; a panic in them is a panic of the caller
// (Emit's caller, or the handler's, recovered and reported as the
// listener's). The functions they return are called exactly once, except
// that a handler that calls runtime.Goexit never returns to its done.
type Observer interface {
	// Emit is called when Emit, TryEmit or EmitSync starts, with the
	// caller's context. The context it returns is used in place of ctx, so
	// listeners see its values (a producer span, say); done is called with
	// the emit's result.
	Emit(ctx context.Context, name string) (_ context.Context, done func(err error))
	// Start is called just before a handler runs, once per attempt, in the
	// goroutine that runs it. The context it returns is passed to the
	// handler; done is called with the attempt's outcome (OutcomeDelivered,
	// OutcomeFailed or OutcomePanicked; a failed attempt that will be
	// retried included) and the handler's error.
	Start(ctx context.Context, d Delivery) (_ context.Context, done func(o Outcome, err error))
	// Lost is called for a delivery that does not run: OutcomeSkipped (its
	// listener was unregistered, or a Once listener had fired),
	// OutcomeDropped (an overflow policy) or OutcomeAbandoned (Close gave
	// up).
	Lost(d Delivery, o Outcome)
}

// Delivery describes one delivery to an Observer.
type Delivery struct {
	Event    string
	Listener *Listener
	Attempt  int       // attempts that already failed (Retry); 0 for the first
	Accepted time.Time // when Emit accepted it; zero for EmitSync
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

// acceptedAt returns the time an accepted delivery records, or 0 when
// nobody observes it.
func acceptedAt(o Observer) int64 {
	if o == nil {
		return 0
	}
	return time.Now().UnixNano()
}

// describe returns the Observer's view of a delivery of ev to e.
func (e *entry[T]) describe(ev Event[T], attempt int, accepted int64) Delivery {
	d := Delivery{Event: ev.Name, Listener: e.l, Attempt: attempt}
	if accepted != 0 {
		d.Accepted = time.Unix(0, accepted)
	}
	return d
}

// tellLost tells the observer, if any, of deliveries that will not run.
func (s *scheduler[T]) tellLost(ds []Delivery, o Outcome) {
	if s.obs == nil {
		return
	}
	for _, d := range ds {
		s.obs.Lost(d, o)
	}
}
