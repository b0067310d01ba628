// Package guard holds the error with which the guard in front of a
// listener's handler (eventbus's unlessUnregistered) tells middleware that
// the listener was unregistered meanwhile, so that the eventbus and its
// test helpers can tell that skip from a handler's own error: a handler may
// fail with an error that matches eventbus.ErrUnregistered too (one that
// EmitSyncTo returned, say), and that is a failure, not a skip.
package guard

import "errors"

// Skipped is the guard's error. It unwraps to the error it holds (the
// eventbus's ErrUnregistered), so that middleware checking for that still
// finds it.
type Skipped struct{ Err error }

func (s *Skipped) Error() string { return s.Err.Error() }

func (s *Skipped) Unwrap() error { return s.Err }

// Is reports whether err is, or wraps, the guard's error.
func Is(err error) bool {
	var s *Skipped
	return errors.As(err, &s)
}
