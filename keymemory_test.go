package eventbus_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Key memory comes back: once 100,000 keys of an OrderedBy listener have
// drained, the live heap is within 1 MB of what it was before them. On
// 0a1e6ca the key map (and the ready list) stayed at their peak: 5.9 MB.
func TestKeyMemoryComesBackAfterKeysDrain(t *testing.T) {
	const keys = 100_000
	m := newManager[int](t, eventbus.WithQueueSize(keys)) // every key queued at once
	var got atomic.Int64
	_, err := m.RegisterListener("order", func(context.Context, eventbus.Event[int]) error {
		got.Add(1)
		return nil
	}, eventbus.OrderedBy(func(e eventbus.Event[int]) string { return strconv.Itoa(e.Data) }))
	require.NoError(t, err)
	// Warm up: the pool, its workers and a few keys exist before we measure.
	for i := range 100 {
		require.NoError(t, m.Emit(context.Background(), "order", -i))
	}
	require.NoError(t, m.Flush(context.Background()))
	before := liveHeap()

	for i := range keys {
		require.NoError(t, m.Emit(context.Background(), "order", i))
	}
	require.NoError(t, m.Flush(context.Background()))
	after := liveHeap()
	assert.Equal(t, int64(keys+100), got.Load())
	grown := int64(after) - int64(before)
	t.Logf("live heap %d before, %d after %d keys drained (%+d bytes)", before, after, keys, grown)
	assert.LessOrEqual(t, grown, int64(1<<20), "live heap grew by %d bytes", grown)
	checkAccounting(t, m.Stats())
}
