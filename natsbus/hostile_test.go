package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jsReceiver is a JetStream consumer bridge on stream IN ("in.>"), with a
// raw JetStream client that stores whatever a hostile publisher would.
type jsReceiver struct {
	ts     *testServer
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	m      *eventbus.EventManager[order]
	b      *natsbus.Bridge[order]
	errs   *errorLog
	got    chan eventbus.Event[order]
}

func newJSReceiver(t *testing.T, cfg natsbus.JetStreamConfig, opts ...serverOpt) *jsReceiver {
	t.Helper()
	r := &jsReceiver{ts: startServer(t, append([]serverOpt{withJetStream(t.TempDir())}, opts...)...)}
	r.nc = connect(t, r.ts)
	r.stream = createStream(t, r.nc, "IN", "in.>")
	var err error
	r.js, err = jetstream.New(r.nc)
	require.NoError(t, err)
	r.m = newManager(t)
	r.errs = newErrorLog()
	r.got = make(chan eventbus.Event[order], 1000)
	_, err = r.m.RegisterListener("in.>", func(_ context.Context, e eventbus.Event[order]) error {
		r.got <- e
		return nil
	})
	require.NoError(t, err)
	cfg.Stream, cfg.Durable = "IN", "d"
	r.b = newBridge(t, r.m, connect(t, r.ts), natsbus.Inbound("in.>"),
		natsbus.WithJetStream(cfg), natsbus.WithErrorHandler(r.errs.handle))
	return r
}

// store stores a message in the stream as any publisher could.
func (r *jsReceiver) store(t *testing.T, msg *nats.Msg) {
	t.Helper()
	_, err := r.js.PublishMsg(ctxTimeout(t, 10*time.Second), msg)
	require.NoError(t, err)
}

func (r *jsReceiver) good(t *testing.T, id int) {
	t.Helper()
	r.store(t, &nats.Msg{Subject: fmt.Sprintf("in.good.%d", id), Data: fmt.Appendf(nil, `{"id":%d}`, id)})
}

// A stored message with an empty payload and a Status header looks like a
// server reply to nats.go's pull consumer, which stopped for good on
// "Status: 400" (issue 19 point 5): nothing later was delivered. The
// bridge refuses that message (counted, reported, terminated) and goes on.
func TestJetStreamStatusLookalikeDoesNotStopInbound(t *testing.T) {
	r := newJSReceiver(t, natsbus.JetStreamConfig{})
	r.store(t, &nats.Msg{Subject: "in.evil", Header: nats.Header{"Status": {"400"}, "Description": {"Bad Request"}}})
	for i := range 5 {
		r.good(t, i)
	}
	for i := range 5 {
		assert.Equal(t, i, receive(t, r.got).Data.ID, "delivered in order after the look-alike")
	}
	var me *natsbus.MessageError
	require.ErrorAs(t, r.errs.next(t), &me)
	assert.Equal(t, "in.evil", me.Subject)
	assert.ErrorIs(t, me, natsbus.ErrDecode)
	consumerSettled(t, r.stream, "d")
	st := r.b.Stats()
	assert.Equal(t, uint64(5), st.Received, "%+v", st)
	assert.Equal(t, uint64(1), st.DecodeErrors, "%+v", st)
	assert.Equal(t, uint64(1), st.Terminated, "%+v", st)
	assert.Zero(t, st.Redelivered, "%+v", st)
}

// Every stored message, whatever it looks like, is delivered or refused
// with a count and a *MessageError, and terminated (issue 19 point 6:
// empty payloads with Status 100, 404, 408 or 409 vanished uncounted,
// and "Status: 503" is what nats.go's NextMsg swallows as an error).
func TestJetStreamEveryStoredMessageIsAccountedFor(t *testing.T) {
	r := newJSReceiver(t, natsbus.JetStreamConfig{})
	shapes := []nats.Header{
		{"Status": {"100"}, "Description": {"Idle Heartbeat"}},
		{"Status": {"100"}, "Description": {"FlowControl Request"}},
		{"Status": {"404"}, "Description": {"No Messages"}},
		{"Status": {"408"}, "Description": {"Request Timeout"}, "Nats-Pending-Messages": {"1"}, "Nats-Pending-Bytes": {"0"}},
		{"Status": {"409"}, "Description": {"Leadership Change"}},
		{"Status": {"409"}, "Description": {"Consumer Deleted"}},
		{"Status": {"409"}, "Description": {"Batch Completed"}},
		{"Status": {"503"}},
		{"Status": {"400"}},
		{"Status": {""}},
	}
	for i, h := range shapes {
		r.store(t, &nats.Msg{Subject: fmt.Sprintf("in.evil.%d", i), Header: h})
		r.good(t, i)
	}
	for i := range shapes {
		assert.Equal(t, i, receive(t, r.got).Data.ID)
	}
	consumerSettled(t, r.stream, "d")
	require.NoError(t, r.b.Close(ctxTimeout(t, 10*time.Second)))

	refused := map[string]bool{}
	for _, err := range r.errs.all() {
		var me *natsbus.MessageError
		if errors.As(err, &me) {
			assert.ErrorIs(t, err, natsbus.ErrDecode)
			refused[me.Subject] = true
		} else {
			assert.ErrorIs(t, err, natsbus.ErrConsumerInterrupted, "only refusals and interruptions are reported")
		}
	}
	for i := range shapes {
		assert.True(t, refused[fmt.Sprintf("in.evil.%d", i)], "message %d (%v) refused and reported", i, shapes[i])
	}
	st := r.b.Stats()
	assert.Equal(t, uint64(len(shapes)), st.Received, "%+v", st)
	assert.Equal(t, uint64(len(shapes)), st.DecodeErrors, "%+v", st)
	assert.Equal(t, uint64(len(shapes)), st.Terminated, "%+v", st)
}

// nextCounterID is what a publisher would guess as the bridge's next event
// ID if IDs were a prefix plus a counter (as they were before issue 19):
// the last character incremented in the NUID alphabet.
func nextCounterID(id string, step int) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := []byte(id)
	carry := step
	for i := len(b) - 1; i >= 0 && carry > 0; i-- {
		v := strings.IndexByte(digits, b[i]) + carry
		b[i] = digits[v%len(digits)]
		carry = v / len(digits)
	}
	return string(b)
}

// A publisher that sees the bridge's event IDs cannot store a message under
// one of its next IDs and so make the stream drop the bridge's own event as
// a duplicate (issue 19 point 7: the IDs were a visible prefix plus a
// counter).
func TestJetStreamEventIDsCannotBeGuessed(t *testing.T) {
	ts := startServer(t, withJetStream(t.TempDir()))
	nc, raw := connect(t, ts), connect(t, ts)
	stream := createStream(t, nc, "S", "s.>")
	js, err := jetstream.New(raw)
	require.NoError(t, err)
	m := newManager(t)
	errs := newErrorLog()
	b := newBridge(t, m, nc, natsbus.Outbound("s.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S"}), natsbus.WithErrorHandler(errs.handle))
	ctx := ctxTimeout(t, 20*time.Second)

	require.NoError(t, m.EmitSync(ctx, "s.first", order{ID: 1}))
	require.NoError(t, b.Flush(ctx))
	seen, err := stream.GetLastMsgForSubject(ctx, "s.first")
	require.NoError(t, err)
	id := seen.Header.Get(natsbus.HeaderID)
	require.NotEmpty(t, id)

	// The attacker claims the next 100 IDs a counter would give.
	const ahead = 100
	for i := 1; i <= ahead; i++ {
		_, err := js.PublishMsg(ctx, &nats.Msg{Subject: "s.attack", Data: []byte(`{"id":666}`),
			Header: nats.Header{"Nats-Msg-Id": {nextCounterID(id, i)}}})
		require.NoError(t, err)
	}
	for i := range ahead {
		require.NoError(t, m.EmitSync(ctx, fmt.Sprintf("s.real.%d", i), order{ID: i}))
	}
	require.NoError(t, b.Flush(ctx))
	st := b.Stats()
	assert.Zero(t, st.Duplicates, "no event of the bridge taken for a duplicate: %+v", st)
	assert.Equal(t, uint64(ahead+1), st.Published, "%+v", st)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1+2*ahead), info.State.Msgs, "the bridge's events were all stored")
	assert.Empty(t, errs.all())
}

// The messages a JetStream bridge takes from the server ahead of its
// listeners are bounded in bytes (issue 19 point 8): with a listener stuck
// on the first message, the server hands over no more than PullMaxBytes of
// messages, where nats.go's consumer took a whole batch whatever the size.
func TestJetStreamInboundMemoryIsBoundedInBytes(t *testing.T) {
	const (
		size  = 64 << 10
		total = 60
	)
	r := newJSReceiver(t, natsbus.JetStreamConfig{PullMaxBytes: 1, PullBatch: 100, MaxAckPending: 1000})
	release := make(chan struct{})
	entered := make(chan struct{}, total)
	_, err := r.m.RegisterListener("in.>", func(context.Context, eventbus.Event[order]) error {
		entered <- struct{}{}
		<-release
		return nil
	})
	require.NoError(t, err)
	blob := strings.Repeat("x", size)
	for i := range total {
		r.store(t, &nats.Msg{Subject: fmt.Sprintf("in.big.%d", i), Data: fmt.Appendf(nil, `{"id":%d,"blob":%q}`, i, blob)})
	}
	receive(t, entered) // the listener holds the first message

	// Wait until the server has handed over all it will: messages out and
	// no pull left waiting.
	var info *jetstream.ConsumerInfo
	require.Eventually(t, func() bool {
		c, err := r.stream.Consumer(context.Background(), "d")
		if err != nil {
			return false
		}
		info, err = c.Info(context.Background())
		return err == nil && info.NumAckPending > 0 && info.NumWaiting == 0
	}, 20*time.Second, 5*time.Millisecond)
	// The bound is max(PullMaxBytes, max payload + 8 KiB) = 1 MiB + 8 KiB
	// here: 16 messages of a bit more than 64 KiB, plus none in handling
	// beyond the first (already counted).
	maxBytes := int(r.nc.MaxPayload()) + 8<<10
	assert.LessOrEqual(t, info.NumAckPending, maxBytes/size+1, "messages out at once")
	t.Logf("%d of %d messages (%d KiB each) out while the listener is stuck", info.NumAckPending, total, size>>10)
	close(release)
	for range total - 1 {
		receive(t, entered)
	}
	consumerSettled(t, r.stream, "d")
	assert.Equal(t, uint64(total), r.b.Stats().Received)
}

// A stored message whose header block nats.go cannot parse is refused as
// such in JetStream mode too (nats.go's consumer used to hand it over as
// a message without headers).
func TestJetStreamMalformedHeaderBlockIsRefused(t *testing.T) {
	r := newJSReceiver(t, natsbus.JetStreamConfig{})
	publishRaw(t, r.ts, "in.badheader", "GARBAGE\r\nno colon\r\n\r\n", `{"id":1}`)
	r.good(t, 2)
	assert.Equal(t, 2, receive(t, r.got).Data.ID)
	err := r.errs.next(t)
	assert.ErrorIs(t, err, natsbus.ErrBadHeader)
	assert.ErrorContains(t, err, `"in.badheader"`)
	consumerSettled(t, r.stream, "d")
	st := r.b.Stats()
	assert.Equal(t, uint64(1), st.DecodeErrors, "%+v", st)
	assert.Equal(t, uint64(1), st.Terminated, "%+v", st)
}

// With WithSyncInbound, what a core bridge holds for a stuck listener is
// bounded by the pending limits (issue 19 point 8: the bridge drained
// nats.go's buffer into the EventManager's queue, 4,096 events per listener,
// so WithPendingLimits bounded nothing): past them nats.go drops, and every
// drop is counted.
func TestCoreSyncInboundIsBoundedByPendingLimits(t *testing.T) {
	const (
		size  = 128 << 10
		total = 30
		limit = 1 << 20 // 8 messages
	)
	ts := startServer(t)
	nc, pub := connect(t, ts), connect(t, ts)
	m := newManager(t)
	errs := newErrorLog()
	b := newBridge(t, m, nc, natsbus.Inbound("in.>"), natsbus.WithSyncInbound(),
		natsbus.WithPendingLimits(1000, limit), natsbus.WithErrorHandler(errs.handle))
	entered := make(chan struct{}, total)
	release := make(chan struct{})
	_, err := m.RegisterListener("in.>", func(context.Context, eventbus.Event[order]) error {
		entered <- struct{}{}
		<-release
		return nil
	})
	require.NoError(t, err)
	blob := strings.Repeat("x", size)
	for i := range total {
		require.NoError(t, pub.Publish(fmt.Sprintf("in.big.%d", i), fmt.Appendf(nil, `{"id":%d,"blob":%q}`, i, blob)))
		if i == 0 {
			require.NoError(t, pub.Flush())
			receive(t, entered) // the listener holds the first message
		}
	}
	require.NoError(t, pub.Flush())
	require.Eventually(t, func() bool { return nc.Stats().InMsgs >= total }, 20*time.Second, time.Millisecond,
		"every message reached the receiving client")
	close(release)
	require.Eventually(t, func() bool {
		st := b.Stats()
		return st.Received+st.Dropped == total
	}, 20*time.Second, time.Millisecond, "every message delivered or counted as dropped")
	st := b.Stats()
	// At most the pending limit (8 messages) waited in nats.go, plus the
	// one being handled; the others were dropped.
	assert.GreaterOrEqual(t, st.Dropped, uint64(total-limit/size-1), "%+v", st)
	assert.ErrorIs(t, errs.next(t), natsbus.ErrSlowConsumer)
}

// A consumer loop that is interrupted (here: its durable consumer is
// deleted under it, and made again) reports it and resumes by itself
// (issue 19 points 3 and 5: nats.go's consume loop stopped for good).
func TestJetStreamConsumerResumesAfterInterruption(t *testing.T) {
	r := newJSReceiver(t, natsbus.JetStreamConfig{})
	r.good(t, 1)
	assert.Equal(t, 1, receive(t, r.got).Data.ID)
	consumerSettled(t, r.stream, "d")
	ctx := ctxTimeout(t, 20*time.Second)
	c, err := r.stream.Consumer(ctx, "d")
	require.NoError(t, err)
	cfg := c.CachedInfo().Config
	require.NoError(t, r.stream.DeleteConsumer(ctx, "d"))
	assert.ErrorIs(t, r.errs.next(t), natsbus.ErrConsumerInterrupted, "reported")

	cfg.DeliverPolicy = jetstream.DeliverNewPolicy // as an operator would, to skip what was handled
	_, err = r.stream.CreateConsumer(ctx, cfg)
	require.NoError(t, err)
	r.good(t, 2)
	assert.Equal(t, 2, receive(t, r.got).Data.ID, "resumed")
	assert.Positive(t, r.b.Stats().ConsumerRestarts)
}
