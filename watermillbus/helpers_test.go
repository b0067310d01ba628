package watermillbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventbus-go/eventbus/watermillbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hangGuard bounds every wait of these tests, so that a missing message
// fails the test instead of hanging it; it is not a timing expectation.
const hangGuard = 30 * time.Second

// newPubSub returns a PubSub closed (and checked) when the test ends.
func newPubSub(t testing.TB, opts ...watermillbus.Option) *watermillbus.PubSub {
	t.Helper()
	ps, err := watermillbus.New(opts...)
	require.NoError(t, err, "New")
	t.Cleanup(func() { assert.NoError(t, ps.Close(), "Close at cleanup") })
	return ps
}

// subscribe subscribes with a context that ends with the test.
func subscribe(t testing.TB, ps *watermillbus.PubSub, topic string) <-chan *message.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := ps.Subscribe(ctx, topic)
	require.NoError(t, err, "Subscribe(%q)", topic)
	return ch
}

// publish publishes one message per payload and returns them.
func publish(t testing.TB, ps *watermillbus.PubSub, topic string, payloads ...string) []*message.Message {
	t.Helper()
	msgs := make([]*message.Message, len(payloads))
	for i, p := range payloads {
		msgs[i] = message.NewMessage(p, []byte(p))
	}
	require.NoError(t, ps.Publish(topic, msgs...), "Publish to %q", topic)
	return msgs
}

// receive returns the next message of ch.
func receive(t testing.TB, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.True(t, ok, "channel closed while a message was expected")
		return m
	case <-time.After(hangGuard):
		require.FailNow(t, "no message")
		return nil
	}
}

// receiveAcked receives n messages, acks each, and returns their UUIDs.
func receiveAcked(t testing.TB, ch <-chan *message.Message, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for range n {
		m := receive(t, ch)
		ids = append(ids, m.UUID)
		require.True(t, m.Ack(), "Ack")
	}
	return ids
}

// requireClosed waits until ch is closed, failing on any message.
func requireClosed(t testing.TB, ch <-chan *message.Message) {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.False(t, ok, "message %v received where the channel should be closed", m)
	case <-time.After(hangGuard):
		require.FailNow(t, "channel not closed")
	}
}
