package natsbus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two replicas share a queue group and both subscribe to two overlapping
// patterns: the server hands each message to one subscription of the
// group, whichever pattern it belongs to, and it must be delivered exactly
// once across the replicas (issue 13: about half were lost).
func TestCoreQueueGroupOverlappingPatternsDeliverEachOnce(t *testing.T) {
	ts := startServer(t)
	raw := connect(t, ts)
	var (
		mu  sync.Mutex
		got = map[string]int{}
	)
	type replica struct {
		m *eventbus.EventManager[order]
		b *natsbus.Bridge[order]
	}
	var replicas []replica
	for range 2 {
		m := newManager(t)
		b := newBridge(t, m, connect(t, ts), natsbus.Inbound("order.>", "order.*"), natsbus.WithQueueGroup("workers"))
		_, err := m.RegisterListener("order.>", func(_ context.Context, e eventbus.Event[order]) error {
			mu.Lock()
			got[e.Name]++
			mu.Unlock()
			return nil
		})
		require.NoError(t, err)
		replicas = append(replicas, replica{m, b})
	}

	// order.<n> matches both patterns, order.deep.<n> only order.>.
	var want []string
	for i := range 100 {
		want = append(want, fmt.Sprintf("order.%d", i), fmt.Sprintf("order.deep.%d", i))
	}
	for _, subject := range want {
		require.NoError(t, raw.Publish(subject, []byte(`{"id":1}`)))
	}
	require.NoError(t, raw.Flush()) // the server has routed every message

	var received uint64
	for _, r := range replicas {
		ctx := ctxTimeout(t, 10*time.Second)
		require.NoError(t, r.b.Drain(ctx), "delivers what the client buffered")
		require.NoError(t, r.m.Flush(ctx))
		received += r.b.Stats().Received
	}
	mu.Lock()
	defer mu.Unlock()
	wrong := map[string]int{} // subject: deliveries, where not exactly one
	for _, subject := range want {
		if got[subject] != 1 {
			wrong[subject] = got[subject]
		}
	}
	assert.Empty(t, wrong, "%d of %d messages not delivered exactly once", len(wrong), len(want))
	assert.Len(t, got, len(want))
	assert.Equal(t, uint64(len(want)), received, "Stats.Received over the replicas")
}
