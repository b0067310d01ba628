package eventbustest

import (
	"context"
	"errors"
	"reflect"
	"sync"
)

// ErrNilArgument is reported when a helper is given a nil manager, bus or
// registration function (a nil pointer in an interface, such as an
// *eventbus.EventManager never set, counts as nil).
var ErrNilArgument = errors.New("eventbustest: nil argument")

// isNil reports whether v is nil, or an interface holding a nil pointer (an
// *eventbus.EventManager field never set, say), which == nil does not catch.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// signal tells waiters that the state it guards has changed. The zero value
// is ready to use; its mutex guards the owner's state too.
type signal struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every change; nil until watched
}

// watch returns a channel closed at the next change. The caller holds s.mu.
func (s *signal) watch() <-chan struct{} {
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// notify wakes every waiter. The caller holds s.mu.
func (s *signal) notify() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// await waits until ready, called with s.mu held, returns true, or returns
// ctx's error. ready is checked before ctx, so a condition that already
// holds is reported even with a context that is done.
func (s *signal) await(ctx context.Context, ready func() bool) error {
	for {
		s.mu.Lock()
		if ready() {
			s.mu.Unlock()
			return nil
		}
		ch := s.watch()
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
