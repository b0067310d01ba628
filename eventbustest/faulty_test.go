package eventbustest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/eventbustest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errDown = errors.New("warehouse down")

func TestFailFirstSucceedsAfterNFailures(t *testing.T) {
	m := eventbustest.NewManager[int](t)
	f := eventbustest.FailFirst[int](2, errDown)
	l, err := m.RegisterListener("e", f.Handle, eventbus.Ordered())
	require.NoError(t, err)
	for i := range 4 {
		require.NoError(t, m.Emit(context.Background(), "e", i))
	}
	errs := m.WaitErrors(deadline(t), 2)
	for _, err := range errs {
		assert.ErrorIs(t, err, errDown)
	}
	m.WaitIdle(deadline(t))
	assert.Equal(t, 4, f.Calls())
	assert.Equal(t, 2, f.Failures())
	assert.Equal(t, uint64(2), l.Stats().Delivered)
	assert.Equal(t, uint64(2), l.Stats().Failed)
}

func TestFailFirstUnderRetry(t *testing.T) {
	m := eventbustest.NewManager[int](t)
	f := eventbustest.FailFirst[int](2, errDown)
	l, err := m.RegisterListener("e", f.Handle, eventbus.Retry(2, time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	m.WaitIdle(deadline(t))
	assert.Equal(t, 3, f.Calls(), "two failed attempts and the one that succeeded")
	assert.Equal(t, uint64(2), l.Stats().Retried)
	assert.Equal(t, uint64(1), l.Stats().Delivered)
	assert.Empty(t, m.TakeErrors(), "a retry that succeeds reports nothing")
}

func TestFailFirstEdgeCounts(t *testing.T) {
	ctx := context.Background()
	never := eventbustest.FailFirst[int](0, errDown)
	always := eventbustest.FailFirst[int](-1, nil)
	for range 3 {
		assert.NoError(t, never.Handle(ctx, eventbus.Event[int]{}))
		assert.ErrorIs(t, always.Handle(ctx, eventbus.Event[int]{}), eventbustest.ErrInjected)
	}
	assert.Equal(t, 0, never.Failures())
	assert.Equal(t, 3, always.Failures())
	assert.Equal(t, 3, always.Calls())
}

func TestPanicFirstPanicsThenSucceeds(t *testing.T) {
	m := eventbustest.NewManager[int](t)
	p := eventbustest.PanicFirst[int](1, "boom")
	_, err := m.RegisterListener("e", p.Handle)
	require.NoError(t, err)
	err = m.EmitSync(context.Background(), "e", 1)
	var pe *eventbus.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "boom", pe.Value)
	assert.NoError(t, m.EmitSync(context.Background(), "e", 2))
	assert.Equal(t, 2, p.Calls())
	assert.Equal(t, 1, p.Failures())
}

func TestPanicFirstOnThePoolReachesTheErrorHandler(t *testing.T) {
	m := eventbustest.NewManager[int](t)
	p := eventbustest.PanicFirst[int](-1, nil)
	_, err := m.RegisterListener("e", p.Handle)
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	errs := m.WaitErrors(deadline(t), 1)
	var pe *eventbus.PanicError
	require.ErrorAs(t, errs[0], &pe)
	assert.ErrorIs(t, errs[0], eventbustest.ErrInjected, "a nil value panics with ErrInjected")
	m.WaitIdle(deadline(t)) // Stats are settled after Flush, not when the error is reported
	assert.Equal(t, uint64(1), m.Stats().Panicked)
}
