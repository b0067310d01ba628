package eventbustest_test

import (
	"context"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/eventbustest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBlockerHoldsCallsUntilReleased(t *testing.T) {
	m := eventbustest.NewManager[int](t, eventbus.WithWorkers(2))
	b, release := eventbustest.Block[int](t)
	l, err := m.RegisterListener("e", b.Handle)
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	require.NoError(t, m.Emit(context.Background(), "e", 2))
	b.WaitEntered(deadline(t), 2)
	assert.Equal(t, 2, b.Entered())
	assert.Equal(t, 2, m.Stats().Running, "both calls held")
	assert.Zero(t, l.Stats().Delivered)
	release()
	release() // idempotent
	m.WaitIdle(deadline(t))
	assert.Equal(t, uint64(2), l.Stats().Delivered)
	assert.NoError(t, m.EmitSync(context.Background(), "e", 3), "a released Blocker lets later calls through")
	assert.Equal(t, 3, b.Entered())
}

func TestBlockerWaitEnteredFailsTheTestOnTimeout(t *testing.T) {
	ft := &fakeT{}
	b, _ := eventbustest.Block[int](ft)
	assert.False(t, ft.run(func() { b.WaitEntered(expired(), 1) }))
	assert.Contains(t, ft.messages(), "waiting for 1 calls to enter the blocker: context canceled; 0 entered")
	ft.finish()
}

func TestBlockerEndsWithTheListenersContext(t *testing.T) {
	// A shutdown test: Close gives up on a blocked listener, which ends with
	// its context; the deliveries still queued are abandoned.
	m := eventbustest.NewManager[int](t, eventbus.WithWorkers(1))
	b, _ := eventbustest.Block[int](t)
	_, err := m.RegisterListener("e", b.Handle, eventbus.Ordered())
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, m.Emit(context.Background(), "e", i))
	}
	b.WaitEntered(deadline(t), 1)
	require.ErrorIs(t, m.Close(expired()), context.Canceled)
	require.NoError(t, m.Close(deadline(t)), "the workers exit once the blocked call returns")
	errs := m.TakeErrors()
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], context.Canceled)
	assert.Equal(t, uint64(2), m.TakeAbandoned())
	assert.Zero(t, m.TakeAbandoned(), "acknowledged once")
}

func TestBlockerIsReleasedWhenTheTestEnds(t *testing.T) {
	ft := &fakeT{}
	m := eventbustest.NewManager[int](ft)
	b, _ := eventbustest.Block[int](ft) // after the Manager: released before Close
	_, err := m.RegisterListener("e", b.Handle)
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	b.WaitEntered(deadline(t), 1)
	ft.finish()
	assert.Empty(t, ft.messages())
	assert.Equal(t, uint64(1), m.Stats().Delivered)
}
