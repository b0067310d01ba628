package eventbus_test

import (
	"context"
	"sync"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEmitToReachesOneListenerInItsOrder(t *testing.T) {
	m := newManager[int](t)
	var mu sync.Mutex
	var got []int
	target, err := m.RegisterListener("topic.*", func(_ context.Context, e eventbus.Event[int]) error {
		mu.Lock()
		got = append(got, e.Data)
		mu.Unlock()
		return nil
	}, eventbus.Ordered())
	require.NoError(t, err)
	other := make(chan int, 10)
	_, err = m.RegisterListener("topic.a", func(_ context.Context, e eventbus.Event[int]) error {
		other <- e.Data
		return nil
	})
	require.NoError(t, err)

	for i := range 3 { // a replay, then a live event
		require.NoError(t, eventbus.EmitTo(context.Background(), m, target, "topic.a", i))
	}
	require.NoError(t, m.Emit(context.Background(), "topic.a", 3))
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, []int{0, 1, 2, 3}, got, "in order, replay first")
	assert.Len(t, other, 1, "the other listener got only the live event")
	assert.Equal(t, uint64(4), target.Stats().Delivered)
	checkAccounting(t, m.Stats())

	assert.ErrorIs(t, eventbus.EmitTo(context.Background(), m, target, "other.a", 0), eventbus.ErrInvalidName, "the pattern must match")
	assert.ErrorIs(t, eventbus.EmitTo(context.Background(), m, target, "topic.*", 0), eventbus.ErrInvalidName)
	foreign := newManager[int](t)
	assert.ErrorIs(t, eventbus.EmitTo(context.Background(), foreign, target, "topic.a", 0), eventbus.ErrInvalidOption)
	require.NoError(t, m.Close(context.Background()))
	assert.ErrorIs(t, eventbus.EmitTo(context.Background(), m, target, "topic.a", 0), eventbus.ErrClosed)
}

func TestEmitToChecksTheDeclaredType(t *testing.T) {
	m := newManager[any](t)
	_, err := eventbus.NewTopic[int](m, "count")
	require.NoError(t, err)
	l, err := m.RegisterListener("count", func(context.Context, eventbus.Event[any]) error { return nil })
	require.NoError(t, err)
	assert.ErrorIs(t, eventbus.EmitTo[any](context.Background(), m, l, "count", "not an int"), eventbus.ErrTypeMismatch)
	require.NoError(t, eventbus.EmitTo[any](context.Background(), m, l, "count", 1))
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, uint64(1), l.Stats().Delivered)
}
