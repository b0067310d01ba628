package eventbustest

import (
	"context"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
)

// _closeTimeout bounds how long the cleanup of a Manager waits for Close.
const _closeTimeout = 30 * time.Second

// Manager is an EventManager made for one test by NewManager. It has every
// method of *eventbus.EventManager[T]; pass its EventManager field to the
// code under test. Every asynchronous listener failure is kept until the
// test takes it (TakeErrors, WaitErrors), and every abandoned delivery must
// be acknowledged (TakeAbandoned): an error or abandonment the test has not
// taken when it ends fails it. Its methods are safe for concurrent use.
type Manager[T any] struct {
	*eventbus.EventManager[T]
	t testing.TB

	sig       signal                         // guards the fields below
	errs      []error                        // reported, not yet taken
	abandoned uint64                         // abandoned deliveries acknowledged by TakeAbandoned
	handled   map[string][]eventbus.Event[T] // by listener name; see Handled
}

// NewManager returns a new EventManager configured by opts, whose error
// handler keeps every listener failure for the test to take, and which
// keeps what each listener has handled (see Handled and WaitHandled: a
// middleware, outermost, around every listener). When the test
// ends (t.Cleanup) it closes the EventManager, allowing 30s, and fails the
// test (t.Errorf) if Close fails, if Stats reports abandoned deliveries the
// test has not acknowledged with TakeAbandoned, or if errors remain that the
// test has not taken; the message lists them.
//
// If opts include eventbus.WithErrorHandler, that handler receives the
// failures instead, and the cleanup has none to check. Cleanups run
// last-in first-out, so a Recorder or Blocker created after the Manager is
// cleaned up before it is closed.
func NewManager[T any](t testing.TB, opts ...eventbus.Option) *Manager[T] {
	t.Helper()
	m := &Manager[T]{t: t}
	all := append([]eventbus.Option{eventbus.WithErrorHandler(m.report), eventbus.WithMiddleware(m.track)}, opts...)
	m.EventManager = eventbus.New[T](all...)
	t.Cleanup(m.cleanup)
	return m
}

func (m *Manager[T]) report(_ context.Context, err *eventbus.ListenerError) {
	m.sig.mu.Lock()
	defer m.sig.mu.Unlock()
	m.errs = append(m.errs, err)
	m.sig.notify()
}

func (m *Manager[T]) cleanup() {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), _closeTimeout)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		m.t.Errorf("eventbustest: closing the EventManager at the end of the test: %v", err)
	}
	abandoned := m.Stats().Abandoned
	m.sig.mu.Lock()
	unacknowledged := abandoned - m.abandoned
	errs := m.errs
	m.sig.mu.Unlock()
	if unacknowledged > 0 {
		m.t.Errorf("eventbustest: %d deliveries were abandoned and not acknowledged with TakeAbandoned", unacknowledged)
	}
	if len(errs) > 0 {
		m.t.Errorf("eventbustest: listener errors that the test did not take with TakeErrors or WaitErrors: %s", listErrors(errs))
	}
}

// TakeErrors returns the listener failures reported since the last take,
// oldest first, and marks them as taken; nil if there are none. Each is a
// *eventbus.ListenerError.
func (m *Manager[T]) TakeErrors() []error {
	m.sig.mu.Lock()
	defer m.sig.mu.Unlock()
	errs := m.errs
	m.errs = nil
	return errs
}

// WaitErrors waits until at least n listener failures not yet taken have
// been reported, then takes and returns the n oldest; the others stay to be
// taken later. If ctx ends first it fails the test (t.Fatalf), listing the
// failures reported. A delivery with Retry reports one failure, once it has
// run out of attempts.
func (m *Manager[T]) WaitErrors(ctx context.Context, n int) []error {
	m.t.Helper()
	var errs []error
	err := m.sig.await(ctx, func() bool {
		if len(m.errs) < n {
			errs = append(errs[:0], m.errs...)
			return false
		}
		errs = append([]error(nil), m.errs[:n]...)
		m.errs = append([]error(nil), m.errs[n:]...)
		return true
	})
	if err != nil {
		m.t.Fatalf("eventbustest: waiting for %d listener errors: %v; got %s", n, err, listErrors(errs))
		return nil
	}
	return errs
}

// TakeAbandoned returns how many deliveries Close has abandoned (see
// Stats.Abandoned) since the last call, and acknowledges them, so that the
// cleanup does not fail the test for them. Call it after a Close that was
// meant to give up.
func (m *Manager[T]) TakeAbandoned() uint64 {
	total := m.Stats().Abandoned
	m.sig.mu.Lock()
	defer m.sig.mu.Unlock()
	n := total - m.abandoned
	m.abandoned = total
	return n
}

// WaitIdle waits until the EventManager is idle (see the WaitIdle
// function). If ctx ends first it fails the test (t.Fatalf).
func (m *Manager[T]) WaitIdle(ctx context.Context) {
	m.t.Helper()
	if err := WaitIdle(ctx, m.EventManager); err != nil {
		m.t.Fatalf("%v", err)
	}
}
