package eventbus

import (
	"time"

	"github.com/eventbus-go/eventbus/internal/sched"
)

// WithInvariantChecks makes the scheduler check its invariants after every
// accounting step, panicking on a broken one (tests only).
func WithInvariantChecks() Option {
	return optionFunc(func(o *options) { o.checkInvariants = true })
}

// WithStallAfter sets how long a handler runs before its worker counts as
// stalled (tests only).
func WithStallAfter(d time.Duration) Option {
	return optionFunc(func(o *options) { o.stallAfter = d })
}

// GoroutineIDReads counts the stack reads made to tell whether the caller
// is a worker (not those of workers enlisting themselves).
func GoroutineIDReads() uint64 { return sched.GoroutineIDReads() }

// GoroutineID is the stack read itself, for its benchmark.
func GoroutineID() uint64 { return sched.GoroutineID() }

// WithIdleAfter sets how long a worker with nothing to do waits before it
// exits (tests only).
func WithIdleAfter(d time.Duration) Option {
	return optionFunc(func(o *options) { o.idleAfter = d })
}

// CheckSoles checks the invariants of the sole-delivery counts (sole.go).
func CheckSoles[T any](m *EventManager[T]) error { return m.checkSoles() }

// WithSoleMoveHook calls f each time a listener's sole count moves to the
// manager's (sole.go), at the moment it moves.
func WithSoleMoveHook(f func()) Option {
	return optionFunc(func(o *options) { o.onSoleMove = f })
}

// RegistryLocked reports whether m's registry lock is held (for writing,
// or by readers that a writer waits for).
func RegistryLocked[T any](m *EventManager[T]) bool {
	if m.mu.TryRLock() {
		m.mu.RUnlock()
		return false
	}
	return true
}
