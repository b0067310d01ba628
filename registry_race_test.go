//go:build race

package eventbus_test

// raceEnabled reports whether the race detector is on: tests that count
// allocations skip, and the memory tests churn fewer names.
const raceEnabled = true
