package eventbus_test

import (
	"context"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// atDepth calls f under n extra stack frames.
func atDepth(n int, f func()) {
	if n == 0 {
		f()
		return
	}
	atDepth(n-1, f)
}

// Worker identity is a stack read that costs tens of µs deep in a stack;
// it is read only where an emit would otherwise wait: not for a TryEmit
// refused on a full backlog, nor for an emit after Close has finished. On
// 0a1e6ca both read it (7–54 µs at call depth 40).
func TestRefusedEmitsDoNotReadTheCallersIdentity(t *testing.T) {
	m := eventbus.New[int](eventbus.WithInvariantChecks(), eventbus.WithQueueSize(1))
	g := newGate()
	_, err := m.RegisterListener("stuck", g.handler, eventbus.Ordered())
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "stuck", 0))
	g.waitEntered(t, 1)
	require.NoError(t, m.TryEmit("stuck", 1), "room for the queue size")

	before := eventbus.GoroutineIDReads()
	atDepth(40, func() {
		assert.ErrorIs(t, m.TryEmit("stuck", 2), eventbus.ErrQueueFull)
	})
	assert.Equal(t, before, eventbus.GoroutineIDReads(), "a refused TryEmit reads no identity")

	g.open()
	require.NoError(t, m.Close(context.Background()))
	before = eventbus.GoroutineIDReads()
	atDepth(40, func() {
		assert.ErrorIs(t, m.Emit(context.Background(), "stuck", 3), eventbus.ErrClosed)
		assert.ErrorIs(t, m.TryEmit("stuck", 3), eventbus.ErrClosed)
		assert.ErrorIs(t, m.Emit(context.Background(), "nobody", 3), eventbus.ErrClosed)
		assert.ErrorIs(t, m.EmitSync(context.Background(), "stuck", 3), eventbus.ErrClosed)
	})
	assert.Equal(t, before, eventbus.GoroutineIDReads(), "an emit after Close reads no identity")
	checkAccounting(t, m.Stats())
}

// TryEmit from a handler never waits, so it has no reserve: it fails at the
// listener's bound like any other TryEmit, while Emit from a handler may
// use the reserve.
func TestTryEmitFromAHandlerFailsAtTheBound(t *testing.T) {
	m := newManager[int](t, eventbus.WithQueueSize(1))
	g := newGate()
	_, err := m.RegisterListener("stuck", g.handler, eventbus.Ordered())
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "stuck", 0))
	g.waitEntered(t, 1)
	require.NoError(t, m.TryEmit("stuck", 1), "room for the queue size")
	errs := make(chan [2]error, 1)
	_, err = m.RegisterListener("emitter", func(ctx context.Context, _ eventbus.Event[int]) error {
		errs <- [2]error{m.TryEmit("stuck", 2), m.Emit(ctx, "stuck", 3)}
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "emitter", 0))
	got := <-errs
	assert.ErrorIs(t, got[0], eventbus.ErrQueueFull, "TryEmit from a handler")
	assert.NoError(t, got[1], "Emit from a handler uses the reserve")
	g.open()
	require.NoError(t, m.Flush(context.Background()))
	checkAccounting(t, m.Stats())
}
