package eventbustest_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/eventbustest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWaitIdleWaitsForAChainOfFollowUps(t *testing.T) {
	const hops = 100
	m := eventbustest.NewManager[int](t, eventbus.WithWorkers(2))
	var handled atomic.Int32
	_, err := m.RegisterListener("step", func(ctx context.Context, e eventbus.Event[int]) error {
		handled.Add(1)
		if e.Data < hops {
			return m.Emit(ctx, "step", e.Data+1)
		}
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "step", 1))
	require.NoError(t, eventbustest.WaitIdle(deadline(t), m))
	assert.Equal(t, int32(hops), handled.Load(), "every hop handled before WaitIdle returned")
	s := m.Stats()
	assert.Zero(t, s.Queued)
	assert.Zero(t, s.Running)
}

func TestWaitIdleWaitsForRetries(t *testing.T) {
	m := eventbustest.NewManager[int](t)
	f := eventbustest.FailFirst[int](2, nil)
	_, err := m.RegisterListener("e", f.Handle, eventbus.Retry(2, time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	m.WaitIdle(deadline(t))
	assert.Equal(t, 3, f.Calls())
}

func TestWaitIdleOnAnIdleOrClosedBusReturnsAtOnce(t *testing.T) {
	m := eventbus.New[int]()
	require.NoError(t, eventbustest.WaitIdle(expired(), m), "nothing to wait for")
	require.NoError(t, m.Emit(context.Background(), "unheard", 1))
	require.NoError(t, eventbustest.WaitIdle(deadline(t), m), "an event with no listener")
	require.NoError(t, m.Close(context.Background()))
	require.NoError(t, eventbustest.WaitIdle(expired(), m))
}

func TestWaitIdleGivesUpOnABusThatNeverSettles(t *testing.T) {
	m := eventbustest.NewManager[int](t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stop atomic.Bool
	var hops atomic.Int32
	_, err := m.RegisterListener("ping", func(lctx context.Context, e eventbus.Event[int]) error {
		if hops.Add(1) == 100 {
			cancel() // the waiter has seen a hundred hops: let it give up
		}
		if stop.Load() {
			return nil
		}
		return m.Emit(lctx, "ping", e.Data+1)
	})
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "ping", 0))
	err = eventbustest.WaitIdle(ctx, m)
	require.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "waiting for the bus to be idle")
	stop.Store(true)
	m.WaitIdle(deadline(t))
}

func TestWaitIdleNeedsABus(t *testing.T) {
	assert.ErrorIs(t, eventbustest.WaitIdle(context.Background(), nil), eventbustest.ErrNilArgument)
	var unset *eventbus.EventManager[int] // a field never set: a nil pointer in the interface
	assert.ErrorIs(t, eventbustest.WaitIdle(context.Background(), unset), eventbustest.ErrNilArgument)
}

func TestManagerWaitIdleFailsTheTestOnTimeout(t *testing.T) {
	ft := &fakeT{}
	m := eventbustest.NewManager[int](ft)
	b, release := eventbustest.Block[int](ft)
	_, err := m.RegisterListener("e", b.Handle)
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	b.WaitEntered(deadline(t), 1)
	assert.False(t, ft.run(func() { m.WaitIdle(expired()) }))
	assert.Contains(t, ft.messages(), "waiting for the bus to be idle: eventbus: flush: context canceled")
	release()
	m.WaitIdle(deadline(t))
	ft.finish()
}
