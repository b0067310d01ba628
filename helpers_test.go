package eventbus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newManager returns an EventManager closed (and checked) when the test
// ends, whose scheduler checks its invariants after every accounting step.
func newManager[T any](t testing.TB, opts ...eventbus.Option) *eventbus.EventManager[T] {
	t.Helper()
	m := eventbus.New[T](append([]eventbus.Option{eventbus.WithInvariantChecks()}, opts...)...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, m.Close(ctx), "Close at cleanup")
	})
	return m
}

// errorSink collects what reaches the error handler.
type errorSink struct {
	mu   sync.Mutex
	errs []error
}

func (s *errorSink) handle(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

func (s *errorSink) all() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

// gate is a fixture for a listener that signals when it has started and
// waits until released.
type gate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}, 1024), release: make(chan struct{})}
}

func (g *gate) wait(ctx context.Context) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// handler is a listener that waits at the gate.
func (g *gate) handler(ctx context.Context, _ eventbus.Event[int]) error {
	g.wait(ctx)
	return nil
}

// waitEntered waits until n invocations have entered the gate.
func (g *gate) waitEntered(t testing.TB, n int) {
	t.Helper()
	for range n {
		select {
		case <-g.entered:
		case <-time.After(20 * time.Second):
			t.Fatalf("listener never started")
		}
	}
}

// checkAccounting asserts that every delivery is accounted for.
func checkAccounting(t testing.TB, s eventbus.Stats) {
	t.Helper()
	assert.Equal(t, s.Matched, s.Delivered+s.Failed+s.Panicked+s.Skipped+s.Dropped+s.Abandoned+uint64(s.Queued)+uint64(s.Running),
		"every delivery accounted for: %+v", s)
}
