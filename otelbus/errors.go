package otelbus

import "errors"

// Errors returned by this package; match them with errors.Is.
var (
	// ErrInvalidOption: an option of New or Instrument was given a nil or
	// out-of-range value.
	ErrInvalidOption = errors.New("otelbus: invalid option")
	// ErrNilManager: Instrument was given no EventManager.
	ErrNilManager = errors.New("otelbus: nil EventManager")
	// ErrNilListener: Track or Untrack was given a nil Listener.
	ErrNilListener = errors.New("otelbus: nil Listener")
	// ErrUnregistered: Track was called after the Registration's
	// Unregister.
	ErrUnregistered = errors.New("otelbus: registration unregistered")
)
