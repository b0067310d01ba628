package eventbustest

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/eventbus-go/eventbus"
)

// ErrInjected is the error a FailFirst listener returns when given a nil
// error, and the panic value of a PanicFirst listener given a nil value.
var ErrInjected = errors.New("eventbustest: injected failure")

// Faulty is a listener that fails (returns an error, or panics) on its
// first calls and then succeeds, for testing retry and dead-letter code.
// Register its Handle method. It is safe for concurrent use; calls are
// numbered in the order they start.
type Faulty[T any] struct {
	failures int // calls that fail; < 0 for all of them
	err      error
	panics   bool
	value    any
	calls    atomic.Int64
	failed   atomic.Int64
}

// FailFirst returns a listener whose first n calls return err (ErrInjected
// if err is nil) and whose later calls return nil. n < 0 makes every call
// fail; n = 0, none. A retried delivery counts one call per attempt.
func FailFirst[T any](n int, err error) *Faulty[T] {
	if err == nil {
		err = ErrInjected
	}
	return &Faulty[T]{failures: n, err: err}
}

// PanicFirst returns a listener whose first n calls panic with value
// (ErrInjected if value is nil) and whose later calls return nil. n < 0
// makes every call panic; n = 0, none. The EventManager reports each panic
// as a *eventbus.ListenerError wrapping a *eventbus.PanicError.
func PanicFirst[T any](n int, value any) *Faulty[T] {
	if value == nil {
		value = ErrInjected
	}
	return &Faulty[T]{failures: n, panics: true, value: value}
}

// Handle is the listener's Handler.
func (f *Faulty[T]) Handle(context.Context, eventbus.Event[T]) error {
	n := f.calls.Add(1)
	if f.failures >= 0 && n > int64(f.failures) {
		return nil
	}
	f.failed.Add(1)
	if f.panics {
		panic(f.value)
	}
	return f.err
}

// Calls returns how many times Handle has been called.
func (f *Faulty[T]) Calls() int { return int(f.calls.Load()) }

// Failures returns how many calls have failed (returned the error or
// panicked) so far.
func (f *Faulty[T]) Failures() int { return int(f.failed.Load()) }
