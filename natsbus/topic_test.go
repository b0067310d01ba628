package natsbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type shipped struct {
	ID      int    `json:"id"`
	Carrier string `json:"carrier"`
}

// newAnyManager returns an EventManager[any], closed in t.Cleanup.
func newAnyManager(t testing.TB, opts ...eventbus.Option) *eventbus.EventManager[any] {
	t.Helper()
	m := eventbus.New[any](opts...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

// newAnyBridge starts a bridge of an EventManager[any] and closes it in
// t.Cleanup.
func newAnyBridge(t testing.TB, m *eventbus.EventManager[any], nc *nats.Conn, opts ...natsbus.Option) *natsbus.Bridge[any] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsbus.New(ctx, m, nc, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

// Between two EventManager[any], each behind its own bridge, a payload of
// a name the receiver declared with NewTopic arrives as the declared type;
// undeclared names keep arriving as the codec decodes an any.
func TestTypedTopicsAcrossBridges(t *testing.T) {
	for _, mode := range []string{"core", "jetstream"} {
		t.Run(mode, func(t *testing.T) {
			var ts *testServer
			var outOpts, inOpts []natsbus.Option
			if mode == "core" {
				ts = startServer(t)
			} else {
				ts = startServer(t, withJetStream(t.TempDir()))
			}
			ncA, ncB := connect(t, ts), connect(t, ts)
			if mode == "jetstream" {
				createStream(t, ncA, "ORDERS", "order.>")
				outOpts = append(outOpts, natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "ORDERS"}))
				inOpts = append(inOpts, natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "ORDERS", Durable: "b"}))
			}
			mA, mB := newAnyManager(t), newAnyManager(t)
			errsB := newErrorLog()
			bA := newAnyBridge(t, mA, ncA, append(outOpts, natsbus.Outbound("order.>"))...)
			newAnyBridge(t, mB, ncB, append(inOpts, natsbus.Inbound("order.>"), natsbus.WithErrorHandler(errsB.handle))...)

			// The sender declares its topics too, but need not: the receiver's
			// declarations decide.
			createdA, err := eventbus.NewTopic[order](mA, "order.created")
			require.NoError(t, err)
			createdB, err := eventbus.NewTopic[order](mB, "order.created")
			require.NoError(t, err)
			shippedB, err := eventbus.NewTopic[*shipped](mB, "order.shipped")
			require.NoError(t, err)
			_, err = eventbus.NewTopic[int](mB, "order.weird")
			require.NoError(t, err)

			typed := make(chan eventbus.Event[order], 10)
			_, err = createdB.Listen(func(_ context.Context, e eventbus.Event[order]) error {
				typed <- e
				return nil
			})
			require.NoError(t, err)
			ships := make(chan *shipped, 10)
			_, err = shippedB.Listen(func(_ context.Context, e eventbus.Event[*shipped]) error {
				ships <- e.Data
				return nil
			})
			require.NoError(t, err)
			all := make(chan eventbus.Event[any], 10)
			_, err = mB.RegisterListener("order.>", func(_ context.Context, e eventbus.Event[any]) error {
				all <- e
				return nil
			}, eventbus.Ordered())
			require.NoError(t, err)

			ctx := ctxTimeout(t, 30*time.Second)
			require.NoError(t, createdA.EmitSync(ctx, order{ID: 1, Item: "book"}))
			require.NoError(t, mA.EmitSync(ctx, "order.shipped", shipped{ID: 1, Carrier: "post"}), "undeclared on A")
			require.NoError(t, mA.EmitSync(ctx, "order.note", order{ID: 1, Item: "gift wrap"}), "undeclared on B")
			require.NoError(t, mA.EmitSync(ctx, "order.weird", "not an int"), "declared as int on B")
			require.NoError(t, bA.Flush(ctx))

			e := receive(t, typed)
			assert.Equal(t, eventbus.Event[order]{Name: "order.created", Data: order{ID: 1, Item: "book"}}, e)
			assert.Equal(t, &shipped{ID: 1, Carrier: "post"}, receive(t, ships), "a pointer topic gets a pointer")
			got := map[string]any{}
			for range 3 {
				e := receive(t, all)
				got[e.Name] = e.Data
			}
			assert.Equal(t, map[string]any{
				"order.created": order{ID: 1, Item: "book"},
				"order.shipped": &shipped{ID: 1, Carrier: "post"},
				"order.note":    map[string]any{"id": float64(1), "item": "gift wrap"}, // undeclared: as before
			}, got, "the wildcard listener sees each declared type")

			err = errsB.next(t)
			assert.ErrorIs(t, err, natsbus.ErrDecode, "a payload that does not decode into the declared type")
			var me *natsbus.MessageError
			require.ErrorAs(t, err, &me)
			assert.Equal(t, "order.weird", me.Subject)
		})
	}
}
