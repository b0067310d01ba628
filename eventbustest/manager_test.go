package eventbustest_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/eventbustest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestManagerClosesWhenTheTestEnds(t *testing.T) {
	ft := &fakeT{}
	m := eventbustest.NewManager[int](ft)
	rec := eventbustest.Record(t, m, "e")
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	ft.finish()
	assert.Empty(t, ft.messages())
	assert.ErrorIs(t, m.Emit(context.Background(), "e", 2), eventbus.ErrClosed)
	assert.Equal(t, 1, rec.Len(), "Close delivered what was accepted")
}

func TestManagerFailsTheTestOnUntakenErrors(t *testing.T) {
	ft := &fakeT{}
	m := eventbustest.NewManager[int](ft)
	_, err := m.RegisterListener("order.created", eventbustest.FailFirst[int](-1, errDown).Handle)
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "order.created", 1))
	ft.finish() // Close delivers the event, whose failure nobody takes
	msg := ft.messages()
	assert.Contains(t, msg, "listener errors that the test did not take with TakeErrors or WaitErrors: 1 errors")
	assert.Contains(t, msg, `on event "order.created": warehouse down`, "the error itself is listed")
}

func TestManagerTakenErrorsDoNotFailTheTest(t *testing.T) {
	ft := &fakeT{}
	m := eventbustest.NewManager[int](ft)
	_, err := m.RegisterListener("e", eventbustest.FailFirst[int](-1, errDown).Handle, eventbus.Ordered())
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, m.Emit(context.Background(), "e", i))
	}
	errs := m.WaitErrors(deadline(t), 2)
	require.Len(t, errs, 2, "the two oldest")
	m.WaitIdle(deadline(t))
	rest := m.TakeErrors()
	require.Len(t, rest, 1, "the third stays until taken")
	assert.Nil(t, m.TakeErrors())
	for _, err := range append(errs, rest...) {
		var le *eventbus.ListenerError
		require.ErrorAs(t, err, &le)
		assert.ErrorIs(t, err, errDown)
	}
	ft.finish()
	assert.Empty(t, ft.messages())
}

func TestManagerWaitErrorsFailsTheTestOnTimeout(t *testing.T) {
	ft := &fakeT{}
	m := eventbustest.NewManager[int](ft)
	_, err := m.RegisterListener("e", eventbustest.FailFirst[int](1, errDown).Handle)
	require.NoError(t, err)
	require.ErrorIs(t, m.EmitSync(context.Background(), "e", 1), errDown, "EmitSync returns failures; it does not report them")
	require.NoError(t, m.Emit(context.Background(), "e", 2))
	m.WaitIdle(deadline(t))
	assert.False(t, ft.run(func() { m.WaitErrors(expired(), 1) }))
	assert.Contains(t, ft.messages(), "waiting for 1 listener errors: context canceled; got 0 errors")
	ft.finish()
}

func TestManagerFailsTheTestOnUnacknowledgedAbandon(t *testing.T) {
	ft := &fakeT{}
	m := eventbustest.NewManager[int](ft, eventbus.WithWorkers(1))
	b, _ := eventbustest.Block[int](ft)
	_, err := m.RegisterListener("e", b.Handle, eventbus.Ordered())
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, m.Emit(context.Background(), "e", i))
	}
	b.WaitEntered(deadline(t), 1)
	require.ErrorIs(t, m.Close(expired()), context.Canceled)
	require.NoError(t, m.Close(deadline(t)))
	require.Len(t, m.TakeErrors(), 1, "the cancelled call")
	ft.finish()
	assert.Equal(t, "eventbustest: 2 deliveries were abandoned and not acknowledged with TakeAbandoned", ft.messages())
}

func TestManagerWithItsOwnErrorHandler(t *testing.T) {
	var mu sync.Mutex
	var got []error
	ft := &fakeT{}
	m := eventbustest.NewManager[int](ft, eventbus.WithErrorHandler(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, err)
	}))
	_, err := m.RegisterListener("e", eventbustest.FailFirst[int](-1, errDown).Handle)
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	ft.finish()
	assert.Empty(t, ft.messages(), "the test's handler took the failure")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 1)
	assert.True(t, errors.Is(got[0], errDown))
}
