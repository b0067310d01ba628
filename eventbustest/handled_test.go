package eventbustest_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/eventbustest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The test: a slow email listener must not hold back inventory on
// the same topic. With email blocked, inventory handles every order.
func TestWaitHandledSlowEmailDoesNotHoldBackInventory(t *testing.T) {
	ctx := deadline(t)
	bus := eventbustest.NewManager[any](t, eventbus.WithWorkers(2))
	orders, err := eventbus.NewTopic[*Order](bus.EventManager, "order.placed")
	require.NoError(t, err)
	email, _ := eventbustest.Block[any](t)
	_, err = bus.RegisterListener("order.placed", email.Handle, eventbus.Name("email"))
	require.NoError(t, err)
	inventory, err := orders.Listen(func(context.Context, eventbus.Event[*Order]) error { return nil }, eventbus.Name("inventory"))
	require.NoError(t, err)

	for id := range 100 {
		require.NoError(t, orders.Emit(ctx, &Order{ID: id}))
	}
	got := bus.WaitHandled(ctx, inventory, 100) // by handle
	assert.Len(t, got, 100)
	assert.Len(t, bus.WaitHandled(ctx, eventbustest.Named("inventory"), 100), 100, "by name")
	assert.Empty(t, bus.Handled(eventbustest.Named("email")), "email is still on its first order")
	assert.GreaterOrEqual(t, email.Entered(), 1)
}

func TestWaitHandledForACondition(t *testing.T) {
	ctx := deadline(t)
	bus := eventbustest.NewManager[int](t)
	flaky := eventbustest.FailFirst[int](1, errDown)
	l, err := bus.RegisterListener("pay", flaky.Handle, eventbus.Ordered())
	require.NoError(t, err)
	_, err = bus.RegisterListener("pay", func(context.Context, eventbus.Event[int]) error { return nil }, eventbus.Name("other"))
	require.NoError(t, err)
	for i := 1; i <= 4; i++ {
		require.NoError(t, bus.Emit(ctx, "pay", i))
	}
	got := bus.WaitHandledFor(ctx, l, "the payment of 4", func(events []eventbus.Event[int]) bool {
		return len(events) > 0 && events[len(events)-1].Data == 4
	})
	assert.Equal(t, []int{1, 2, 3, 4}, data(got), "an Ordered listener's events, the failed one included")
	assert.Len(t, bus.WaitErrors(ctx, 1), 1)

	// EmitSync counts too.
	require.NoError(t, bus.EmitSync(ctx, "pay", 5))
	assert.Equal(t, []int{1, 2, 3, 4, 5}, data(bus.Handled(l)))
}

func TestWaitHandledFailsTheTestWhenTheContextEnds(t *testing.T) {
	ft := &fakeT{}
	bus := eventbustest.NewManager[int](ft)
	l, err := bus.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { return nil })
	require.NoError(t, err)
	require.NoError(t, bus.EmitSync(context.Background(), "e", 1))
	ft.run(func() { bus.WaitHandled(expired(), l, 2) })
	ft.finish()
	msg := ft.messages()
	assert.Contains(t, msg, `listener "e#1": waiting for 2 events: context canceled`)
	assert.Contains(t, msg, "recorded 1 events", "what it handled is listed")
}

func TestHandledCountsPanicsAndNotSkips(t *testing.T) {
	ctx := deadline(t)
	bus := eventbustest.NewManager[int](t)
	pan := eventbustest.PanicFirst[int](1, "boom")
	l, err := bus.RegisterListener("e", pan.Handle)
	require.NoError(t, err)
	require.NoError(t, bus.Emit(ctx, "e", 1))
	assert.Len(t, bus.WaitHandled(ctx, l, 1), 1, "a panicking invocation has handled its event")
	var lerr *eventbus.ListenerError
	require.True(t, errors.As(bus.WaitErrors(ctx, 1)[0], &lerr))
	l.Unregister()
	require.NoError(t, bus.Emit(ctx, "e", 2))
	bus.WaitIdle(ctx)
	assert.Len(t, bus.Handled(l), 1, "an unregistered listener handles nothing more")
}

// A delivery whose handler is skipped because Unregister returned while
// the listener's middleware ran (the middleware's next returns
// ErrUnregistered; the EventManager counts it skipped) was not handled:
// Handled and WaitHandled do not count it. (The tracking middleware
// counted every return of next, so WaitHandled could return for an event
// whose handler never ran.)
func TestHandledDoesNotCountADeliverySkippedInMiddleware(t *testing.T) {
	ctx := deadline(t)
	bus := eventbustest.NewManager[int](t)
	in, release := make(chan struct{}), make(chan struct{})
	var ran atomic.Int64
	l, err := bus.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
		ran.Add(1)
		return nil
	}, eventbus.Use(func(next eventbus.Handler[int]) eventbus.Handler[int] {
		return func(ctx context.Context, e eventbus.Event[int]) error {
			close(in)
			<-release
			return next(ctx, e)
		}
	}))
	require.NoError(t, err)
	require.NoError(t, bus.Emit(ctx, "e", 1))
	<-in
	l.Unregister() // returns while the middleware runs
	close(release)
	bus.WaitIdle(ctx)
	assert.Zero(t, ran.Load(), "the handler never ran")
	assert.Equal(t, uint64(1), bus.Stats().Skipped)
	assert.Empty(t, bus.Handled(l), "a skipped delivery is not handled")
}

// A handler that fails with an error matching ErrUnregistered of its own
// (EmitSyncTo's, relaying to a listener that has gone) has run: its
// invocation counts as handled, and its failure is reported, like any
// other failure.
func TestHandledCountsAHandlerFailingWithErrUnregistered(t *testing.T) {
	ctx := deadline(t)
	bus := eventbustest.NewManager[int](t)
	gone, err := bus.RegisterListener("gone", func(context.Context, eventbus.Event[int]) error { return nil })
	require.NoError(t, err)
	gone.Unregister()
	l, err := bus.RegisterListener("relay", func(ctx context.Context, e eventbus.Event[int]) error {
		return bus.EmitSyncTo(ctx, gone, "gone", e.Data) // fails: ErrUnregistered
	})
	require.NoError(t, err)
	require.NoError(t, bus.Emit(ctx, "relay", 1))
	assert.Len(t, bus.WaitHandled(ctx, l, 1), 1)
	errs := bus.WaitErrors(ctx, 1)
	assert.ErrorIs(t, errs[0], eventbus.ErrUnregistered)
	var lerr *eventbus.ListenerError
	assert.ErrorAs(t, errs[0], &lerr)
	assert.Equal(t, uint64(1), l.Stats().Failed)
}

func data(events []eventbus.Event[int]) []int {
	out := make([]int, len(events))
	for i, e := range events {
		out[i] = e.Data
	}
	return out
}
