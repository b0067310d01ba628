package eventbustest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/eventbus-go/eventbus"
)

// Blocker is a listener that blocks every call until it is released, for
// testing shutdown, backpressure and ordering code. Register its Handle
// method. It is safe for concurrent use.
type Blocker[T any] struct {
	t       testing.TB
	release chan struct{}
	once    sync.Once

	sig     signal // guards entered
	entered int
}

// Block returns a Blocker and the function that releases it. Releasing lets
// every blocked call return nil and every later call pass straight through;
// it is idempotent and safe to call from any goroutine. Block also releases
// the Blocker when the test ends (t.Cleanup): create it after the Manager
// (cleanups run last-in first-out) so that it is released before the
// EventManager is closed.
func Block[T any](t testing.TB) (*Blocker[T], func()) {
	t.Helper()
	b := &Blocker[T]{t: t, release: make(chan struct{})}
	t.Cleanup(b.Release)
	return b, b.Release
}

// Handle is the listener's Handler. It counts the call as entered, then
// waits until the Blocker is released (it returns nil) or ctx is done (it
// returns an error matching ctx's error: the EventManager cancels
// listeners' contexts when Close gives up waiting, and Timeout ends them).
func (b *Blocker[T]) Handle(ctx context.Context, e eventbus.Event[T]) error {
	b.sig.mu.Lock()
	b.entered++
	b.sig.notify()
	b.sig.mu.Unlock()
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("eventbustest: blocked on %q until the context ended: %w", e.Name, ctx.Err())
	}
}

// Release unblocks every call, present and future. It is idempotent.
func (b *Blocker[T]) Release() { b.once.Do(func() { close(b.release) }) }

// Entered returns how many calls have started.
func (b *Blocker[T]) Entered() int {
	b.sig.mu.Lock()
	defer b.sig.mu.Unlock()
	return b.entered
}

// WaitEntered waits until at least n calls have started, counting from the
// Blocker's creation. If ctx ends first it fails the test (t.Fatalf).
func (b *Blocker[T]) WaitEntered(ctx context.Context, n int) {
	b.t.Helper()
	var got int
	err := b.sig.await(ctx, func() bool {
		got = b.entered
		return got >= n
	})
	if err != nil {
		b.t.Fatalf("eventbustest: waiting for %d calls to enter the blocker: %v; %d entered", n, err, got)
	}
}
