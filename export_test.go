package eventbus

import "time"

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
