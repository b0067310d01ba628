package natsbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Inbound messages the bridge refuses are each counted and reported, and
// the bridge keeps delivering (issue 13: a forged origin was skipped
// silently, a malformed header block and an unexpected Content-Type were
// not noticed).
func TestCoreRefusedInputIsCountedAndReported(t *testing.T) {
	ts := startServer(t)
	nc, raw := connect(t, ts), connect(t, ts)
	m := newManager(t)
	errs := newErrorLog()
	b := newBridge(t, m, nc, natsbus.Inbound("in.>"), natsbus.WithErrorHandler(errs.handle))
	got := make(chan string, 10)
	_, err := m.RegisterListener("in.>", func(_ context.Context, e eventbus.Event[order]) error {
		got <- e.Name
		return nil
	})
	require.NoError(t, err)
	pub := func(subject string, h nats.Header) {
		t.Helper()
		require.NoError(t, raw.PublishMsg(&nats.Msg{Subject: subject, Header: h, Data: []byte(`{"id":1}`)}))
		require.NoError(t, raw.Flush())
	}

	// Forged origin: the receiver's own, with an ID it did not make.
	pub("in.forged", nats.Header{natsbus.HeaderOrigin: {b.Origin()}, natsbus.HeaderID: {"0123456789abcdefghijkl"}})
	err = errs.next(t)
	assert.ErrorIs(t, err, natsbus.ErrForgedOrigin)
	var me *natsbus.MessageError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, "in.forged", me.Subject)
	assert.Equal(t, "0123456789abcdefghijkl", me.ID)

	// Malformed header block: nats.go cannot parse it.
	publishRaw(t, ts, "in.badheader", "GARBAGE\r\nno colon\r\n\r\n", `{"id":1}`)
	err = errs.next(t)
	assert.ErrorIs(t, err, natsbus.ErrBadHeader)
	assert.ErrorIs(t, err, natsbus.ErrDecode)
	assert.ErrorContains(t, err, `"in.badheader"`)

	// A Content-Type the JSON codec does not read.
	pub("in.text", nats.Header{natsbus.HeaderContentType: {"text/plain"}})
	err = errs.next(t)
	assert.ErrorIs(t, err, natsbus.ErrContentType)
	assert.ErrorIs(t, err, natsbus.ErrDecode)
	assert.ErrorContains(t, err, "text/plain")

	// Accepted: JSON with parameters, or no Content-Type at all.
	pub("in.json", nats.Header{natsbus.HeaderContentType: {"Application/JSON; charset=utf-8"}})
	assert.Equal(t, "in.json", receive(t, got))
	pub("in.plain", nil)
	assert.Equal(t, "in.plain", receive(t, got))

	require.NoError(t, b.Drain(ctxTimeout(t, 10*time.Second)), "waits for the message callbacks")
	st := b.Stats()
	assert.Equal(t, uint64(1), st.ForgedOrigin)
	assert.Equal(t, uint64(2), st.DecodeErrors, "bad header block and Content-Type")
	assert.Equal(t, uint64(2), st.Received)
	assert.Zero(t, st.SkippedOwn)
	assert.Len(t, errs.all(), 3, "one report each")
	assert.Empty(t, got, "nothing refused was delivered")
}

// An ID that begins with the bridge's prefix (which every message it sends
// shows) but that the bridge did not make is refused as forged, not
// skipped as the bridge's own: the bridge checks the ID's tag, which only
// it can make. (Only the prefix was checked: a message with the bridge's
// origin and its prefix was dropped silently, counted as SkippedOwn.) The
// bridge's own messages are still skipped.
func TestForgedIDWithTheBridgesPrefixIsRefused(t *testing.T) {
	ts := startServer(t)
	nc, raw := connect(t, ts), connect(t, ts)
	m := newManager(t)
	errs := newErrorLog()
	b := newBridge(t, m, nc, natsbus.Outbound("loop.>"), natsbus.Inbound("loop.>", "in.>"), natsbus.WithErrorHandler(errs.handle))
	got := make(chan string, 10)
	_, err := m.RegisterListener("in.>", func(_ context.Context, e eventbus.Event[order]) error {
		got <- e.Name
		return nil
	})
	require.NoError(t, err)
	seen, err := raw.SubscribeSync("loop.>")
	require.NoError(t, err)
	require.NoError(t, raw.Flush())

	// The bridge's own message comes back on its inbound subscription: skipped.
	require.NoError(t, m.EmitSync(ctxTimeout(t, 5*time.Second), "loop.x", order{ID: 1}))
	msg, err := seen.NextMsg(5 * time.Second)
	require.NoError(t, err)
	id := msg.Header.Get(natsbus.HeaderID)
	require.Len(t, id, 28)

	for i, forged := range []string{
		id[:12] + "0000000000000000",              // the prefix, any rest
		id[:22] + "000000",                        // a real ID's random part, another tag
		id[:12] + "zzzzzzzzzz" + id[22:],          // a real ID's tag, another random part
		id[:27] + string(rune('A'+(id[27]+1)%26)), // one character of the tag changed
	} {
		if forged == id {
			continue
		}
		subject := "in.forged" + string(rune('a'+i))
		require.NoError(t, raw.PublishMsg(&nats.Msg{Subject: subject, Data: []byte(`{"id":2}`),
			Header: nats.Header{natsbus.HeaderOrigin: {b.Origin()}, natsbus.HeaderID: {forged}}}))
		err := errs.next(t)
		assert.ErrorIs(t, err, natsbus.ErrForgedOrigin, forged)
		var me *natsbus.MessageError
		require.ErrorAs(t, err, &me)
		assert.Equal(t, subject, me.Subject)
		assert.Equal(t, forged, me.ID)
	}
	require.NoError(t, raw.PublishMsg(&nats.Msg{Subject: "in.sentinel", Data: []byte(`{"id":3}`)}))
	require.NoError(t, raw.Flush())
	assert.Equal(t, "in.sentinel", receive(t, (<-chan string)(got)), "no forged message is delivered")
	st := b.Stats()
	assert.Equal(t, uint64(4), st.ForgedOrigin)
	assert.Equal(t, uint64(1), st.SkippedOwn, "the bridge's own message")
	assert.Len(t, errs.all(), 4, "one report each, nothing else")
}

// In JetStream mode refused messages are terminated, not acked or
// redelivered, and counted and reported the same way.
func TestJetStreamRefusedInputIsTerminated(t *testing.T) {
	ts := startServer(t, withJetStream(t.TempDir()))
	nc := connect(t, ts)
	stream := createStream(t, nc, "IN", "in.>")
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	m := newManager(t)
	errs := newErrorLog()
	b := newBridge(t, m, nc, natsbus.Inbound("in.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "IN", Durable: "d"}),
		natsbus.WithErrorHandler(errs.handle))
	got := make(chan string, 10)
	_, err = m.RegisterListener("in.>", func(_ context.Context, e eventbus.Event[order]) error {
		got <- e.Name
		return nil
	})
	require.NoError(t, err)

	ctx := ctxTimeout(t, 10*time.Second)
	pub := func(subject string, h nats.Header) {
		t.Helper()
		_, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: h, Data: []byte(`{"id":1}`)})
		require.NoError(t, err)
	}
	pub("in.forged", nats.Header{natsbus.HeaderOrigin: {b.Origin()}, natsbus.HeaderID: {"0123456789abcdefghijkl"}})
	assert.ErrorIs(t, errs.next(t), natsbus.ErrForgedOrigin)
	pub("in.text", nats.Header{natsbus.HeaderContentType: {"text/plain"}})
	assert.ErrorIs(t, errs.next(t), natsbus.ErrContentType)
	pub("in.good", nil)
	assert.Equal(t, "in.good", receive(t, got))

	consumerSettled(t, stream, "d")
	st := b.Stats()
	assert.Equal(t, uint64(1), st.ForgedOrigin)
	assert.Equal(t, uint64(1), st.DecodeErrors)
	assert.Equal(t, uint64(2), st.Terminated)
	assert.Equal(t, uint64(1), st.Received)
	assert.Zero(t, st.Redelivered)
}
