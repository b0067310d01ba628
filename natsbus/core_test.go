package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two EventManagers, each with its own bridge and connection, exchange
// events both ways: orders go from A to B, and B answers with billing events
// that come back to A.
func TestCoreTwoManagersBothWays(t *testing.T) {
	ts := startServer(t)
	ncA, ncB := connect(t, ts), connect(t, ts)
	mA, mB := newManager(t), newManager(t)
	newBridge(t, mA, ncA, natsbus.Outbound("orders.>"), natsbus.Inbound("billing.*.done"))
	newBridge(t, mB, ncB, natsbus.Outbound("billing.>"), natsbus.Inbound("orders.*.created"))

	// B bills every created order; A collects the answers.
	_, err := mB.RegisterListener("orders.*.created", func(ctx context.Context, e eventbus.Event[order]) error {
		region := strings.Split(e.Name, ".")[1]
		return mB.EmitSync(ctx, "billing."+region+".done", e.Data)
	})
	require.NoError(t, err)
	done := make(chan eventbus.Event[order], 10)
	_, err = mA.RegisterListener("billing.*.done", func(_ context.Context, e eventbus.Event[order]) error {
		done <- e
		return nil
	})
	require.NoError(t, err)

	ctx := ctxTimeout(t, 10*time.Second)
	require.NoError(t, mA.EmitSync(ctx, "orders.eu.created", order{ID: 1, Item: "book"}))
	require.NoError(t, mA.EmitSync(ctx, "orders.eu.cancelled", order{ID: 2})) // B does not listen
	require.NoError(t, mA.EmitSync(ctx, "orders.us.created", order{ID: 3, Item: "pen"}))

	got := map[string]order{}
	for range 2 {
		e := receive(t, done)
		got[e.Name] = e.Data
	}
	assert.Equal(t, map[string]order{
		"billing.eu.done": {ID: 1, Item: "book"},
		"billing.us.done": {ID: 3, Item: "pen"},
	}, got)
}

// A pattern selects the same events whether the listener is local or sits
// behind a bridge in another EventManager.
func TestCoreWildcardsMatchLocalAndRemote(t *testing.T) {
	names := []string{
		"orders.eu.created", "orders.us.created", "orders.eu.cancelled",
		"orders.created", "orders.eu.created.v2", "billing.eu.created", "orders",
	}
	tests := []struct {
		pattern string
		marker  string // a name the pattern matches, sent last
	}{
		{"orders.*.created", "orders.zz.created"},
		{"orders.>", "orders.zz"},
		{"*.eu.*", "zz.eu.zz"},
		{"orders.eu.>", "orders.eu.zz"},
		{">", "zz"},
		{"orders", "orders"},
	}
	ts := startServer(t)
	ncA, ncB := connect(t, ts), connect(t, ts)
	mA := newManager(t)
	newBridge(t, mA, ncA, natsbus.Outbound(">"))

	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			var mu sync.Mutex
			var local, remote []string
			markerSeen := make(chan struct{}, 1)
			collect := func(dst *[]string, marker bool) eventbus.Handler[order] {
				return func(_ context.Context, e eventbus.Event[order]) error {
					if e.Data.ID == -1 {
						if marker {
							markerSeen <- struct{}{}
						}
						return nil
					}
					mu.Lock()
					*dst = append(*dst, e.Name)
					mu.Unlock()
					return nil
				}
			}
			l, err := mA.RegisterListener(tt.pattern, collect(&local, false))
			require.NoError(t, err)
			defer l.Unregister()

			// One worker keeps B's deliveries in arrival order, and one
			// inbound subscription keeps arrival in publish order, so the
			// marker comes last.
			mB := eventbus.New[order](eventbus.WithWorkers(1))
			defer mB.Close(context.Background())
			_, err = mB.RegisterListener(">", collect(&remote, true))
			require.NoError(t, err)
			b, err := natsbus.New(ctxTimeout(t, 5*time.Second), mB, ncB, natsbus.Inbound(tt.pattern))
			require.NoError(t, err)
			defer b.Close(context.Background())

			ctx := ctxTimeout(t, 10*time.Second)
			for i, n := range names {
				require.NoError(t, mA.EmitSync(ctx, n, order{ID: i}))
			}
			require.NoError(t, mA.EmitSync(ctx, tt.marker, order{ID: -1}))
			receive(t, markerSeen)
			require.NoError(t, mB.Flush(ctx))

			var want []string
			for _, n := range names {
				if eventbus.MatchPattern(tt.pattern, n) {
					want = append(want, n)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			sort.Strings(local)
			sort.Strings(remote)
			sort.Strings(want)
			assert.Equal(t, want, local, "local listener")
			assert.Equal(t, want, remote, "remote listener")
		})
	}
}

// Inbound and outbound patterns overlap on both sides: an event crosses
// once and is neither echoed back by the receiver nor re-emitted by the
// sender from its own publish.
func TestCoreNoLoops(t *testing.T) {
	ts := startServer(t)
	ncA, ncB := connect(t, ts), connect(t, ts)
	mA, mB := newManager(t), newManager(t)
	both := []natsbus.Option{natsbus.Outbound("x.>"), natsbus.Inbound("x.>")}
	bA := newBridge(t, mA, ncA, both...)
	bB := newBridge(t, mB, ncB, both...)

	var countA, countB int
	var mu sync.Mutex
	gotB := make(chan struct{}, 1)
	_, err := mA.RegisterListener("x.>", func(context.Context, eventbus.Event[order]) error {
		mu.Lock()
		countA++
		mu.Unlock()
		return nil
	})
	require.NoError(t, err)
	_, err = mB.RegisterListener("x.>", func(ctx context.Context, e eventbus.Event[order]) error {
		info, ok := natsbus.InfoFromContext(ctx)
		assert.True(t, ok, "remote event carries its message info")
		assert.Equal(t, bA.Origin(), info.Origin)
		assert.Equal(t, "x.1", info.Subject)
		assert.NotEmpty(t, info.ID)
		mu.Lock()
		countB++
		mu.Unlock()
		gotB <- struct{}{}
		return nil
	})
	require.NoError(t, err)

	ctx := ctxTimeout(t, 10*time.Second)
	require.NoError(t, mA.EmitSync(ctx, "x.1", order{ID: 1}))
	receive(t, gotB)
	require.NoError(t, mB.Flush(ctx))
	require.NoError(t, bB.Flush(ctx))
	// A sees its own publish come back from the server and skips it.
	require.Eventually(t, func() bool { return bA.Stats().SkippedOwn == 1 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, mA.Flush(ctx))

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 1, countA, "A handled its own event once, locally")
	assert.Equal(t, 1, countB, "B handled the event once")
	assert.Equal(t, uint64(1), bA.Stats().Published)
	assert.Equal(t, uint64(0), bB.Stats().Published, "B must not send the event back")
	assert.Equal(t, uint64(1), bB.Stats().Received)
}

// A core-mode listener that has an inbound event finds it counted in
// Received (it is counted before the emit), with and without
// WithSyncInbound; a refused emit takes its count back.
func TestCoreReceivedCountsWhatListenersHave(t *testing.T) {
	for _, syncIn := range []bool{false, true} {
		t.Run(fmt.Sprintf("sync %v", syncIn), func(t *testing.T) {
			ts := startServer(t)
			nc, raw := connect(t, ts), connect(t, ts)
			m := newManager(t)
			opts := []natsbus.Option{natsbus.Inbound("in.>"), natsbus.WithErrorHandler(func(error) {})}
			if syncIn {
				opts = append(opts, natsbus.WithSyncInbound())
			}
			b := newBridge(t, m, nc, opts...)
			seen := make(chan uint64, 3)
			_, err := m.RegisterListener("in.>", func(_ context.Context, e eventbus.Event[order]) error {
				seen <- b.Stats().Received
				if e.Data.ID == 3 {
					return errors.New("refused")
				}
				return nil
			})
			require.NoError(t, err)
			for id := 1; id <= 3; id++ {
				require.NoError(t, raw.Publish("in.x", []byte(fmt.Sprintf(`{"id":%d}`, id))))
				assert.Equal(t, uint64(id), receive(t, seen), "event %d is counted when its listener runs", id)
			}
			require.NoError(t, b.Close(ctxTimeout(t, 10*time.Second)))
			want := uint64(3)
			if syncIn {
				want = 2 // the failed EmitSync takes its count back
			}
			assert.Equal(t, want, b.Stats().Received)
		})
	}
}

type correlationKey struct{}

func TestCoreContextValuesTravelInHeaders(t *testing.T) {
	ts := startServer(t)
	ncA, ncB := connect(t, ts), connect(t, ts)
	mA, mB := newManager(t), newManager(t)
	prop := natsbus.WithPropagator(natsbus.ContextValue("Correlation-Id", correlationKey{}))
	newBridge(t, mA, ncA, natsbus.Outbound("a.>"), prop, natsbus.WithSubjectPrefix("svc1."))
	newBridge(t, mB, ncB, natsbus.Inbound("a.>"), prop, natsbus.WithSubjectPrefix("svc1."))

	got := make(chan string, 1)
	_, err := mB.RegisterListener("a.>", func(ctx context.Context, e eventbus.Event[order]) error {
		v, _ := ctx.Value(correlationKey{}).(string)
		info, _ := natsbus.InfoFromContext(ctx)
		got <- e.Name + " " + info.Subject + " " + v
		return nil
	})
	require.NoError(t, err)

	// Also check the raw message a non-Go service would see.
	raw := make(chan *nats.Msg, 1)
	sub, err := ncB.ChanSubscribe("svc1.a.>", raw)
	require.NoError(t, err)
	defer sub.Unsubscribe()
	require.NoError(t, ncB.Flush())

	ctx := context.WithValue(ctxTimeout(t, 10*time.Second), correlationKey{}, "req-42")
	require.NoError(t, mA.Emit(ctx, "a.b", order{ID: 7, Item: "x"}))
	assert.Equal(t, "a.b svc1.a.b req-42", receive(t, got))

	msg := receive(t, raw)
	assert.Equal(t, "svc1.a.b", msg.Subject)
	assert.JSONEq(t, `{"id":7,"item":"x"}`, string(msg.Data))
	assert.Equal(t, "a.b", msg.Header.Get(natsbus.HeaderName))
	assert.Empty(t, msg.Header.Get(natsbus.HeaderContentType), "JSON is the default: no Content-Type")
	assert.Equal(t, "req-42", msg.Header.Get("Correlation-Id"))
	assert.Len(t, msg.Header.Get(natsbus.HeaderID), 28)
	assert.NotEmpty(t, msg.Header.Get(natsbus.HeaderOrigin))
	assert.Empty(t, msg.Header.Get("Nats-Msg-Id"), "core mode sends no de-duplication ID")
}

// Malformed payloads and bad subjects are reported with the subject and the
// reason; the bridge keeps delivering.
func TestCoreMalformedInput(t *testing.T) {
	ts := startServer(t)
	nc, raw := connect(t, ts), connect(t, ts)
	m := newManager(t)
	errs := newErrorLog()
	b := newBridge(t, m, nc, natsbus.Inbound("in.>"), natsbus.WithErrorHandler(errs.handle))
	got := make(chan order, 1)
	_, err := m.RegisterListener("in.>", func(_ context.Context, e eventbus.Event[order]) error {
		got <- e.Data
		return nil
	})
	require.NoError(t, err)

	require.NoError(t, raw.Publish("in.bad", []byte("{not json")))
	err = errs.next(t)
	assert.ErrorIs(t, err, natsbus.ErrDecode)
	var me *natsbus.MessageError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, "in.bad", me.Subject)
	assert.Contains(t, err.Error(), `"in.bad"`)

	// The server accepts subjects that are not valid event names.
	require.NoError(t, raw.Publish("in.a*b", []byte(`{"id":1}`)))
	err = errs.next(t)
	assert.ErrorIs(t, err, natsbus.ErrInvalidSubject)
	assert.ErrorIs(t, err, eventbus.ErrInvalidName)

	require.NoError(t, raw.Publish("in.good", []byte(`{"id":2}`)))
	assert.Equal(t, order{ID: 2}, receive(t, got))
	assert.Equal(t, uint64(2), b.Stats().DecodeErrors)
	assert.Equal(t, uint64(1), b.Stats().Received)
}

func TestCoreOversizedPayload(t *testing.T) {
	ts := startServer(t, withMaxPayload(1024))
	ncA, ncB := connect(t, ts), connect(t, ts)
	mA, mB := newManager(t), newManager(t)
	bA := newBridge(t, mA, ncA, natsbus.Outbound("big.>"))
	newBridge(t, mB, ncB, natsbus.Inbound("big.>"))
	got := make(chan order, 1)
	_, err := mB.RegisterListener("big.>", func(_ context.Context, e eventbus.Event[order]) error {
		got <- e.Data
		return nil
	})
	require.NoError(t, err)

	ctx := ctxTimeout(t, 10*time.Second)
	err = mA.EmitSync(ctx, "big.one", order{ID: 1, Blob: strings.Repeat("x", 2000)})
	require.Error(t, err)
	assert.ErrorIs(t, err, natsbus.ErrPayloadTooLarge)
	assert.ErrorIs(t, err, nats.ErrMaxPayload)
	assert.Contains(t, err.Error(), "server allows 1024")
	var pe *natsbus.PublishError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "big.one", pe.Event)

	require.NoError(t, mA.EmitSync(ctx, "big.two", order{ID: 2}))
	assert.Equal(t, order{ID: 2}, receive(t, got))
	assert.Equal(t, uint64(1), bA.Stats().PublishErrors)
	assert.Equal(t, uint64(1), bA.Stats().Published)
}

func TestSubjectValidation(t *testing.T) {
	ts := startServer(t)
	nc := connect(t, ts)
	m := newManager(t)
	tests := []struct {
		name string
		opts []natsbus.Option
		want error
	}{
		{"no patterns", nil, natsbus.ErrConfig},
		{"system prefix", []natsbus.Option{natsbus.Outbound(">"), natsbus.WithSubjectPrefix("$SYS.")}, natsbus.ErrInvalidSubject},
		{"prefix without dot", []natsbus.Option{natsbus.Outbound(">"), natsbus.WithSubjectPrefix("svc")}, natsbus.ErrInvalidSubject},
		{"prefix with empty token", []natsbus.Option{natsbus.Outbound(">"), natsbus.WithSubjectPrefix("a..")}, natsbus.ErrInvalidSubject},
		{"wildcard prefix", []natsbus.Option{natsbus.Outbound(">"), natsbus.WithSubjectPrefix("a.*.")}, natsbus.ErrInvalidSubject},
		{"system pattern", []natsbus.Option{natsbus.Inbound("$JS.>")}, natsbus.ErrInvalidSubject},
		{"bad pattern", []natsbus.Option{natsbus.Outbound("a.>.b")}, eventbus.ErrInvalidPattern},
		{"space in pattern", []natsbus.Option{natsbus.Inbound("a b")}, eventbus.ErrInvalidPattern},
		{"queue group in JetStream", []natsbus.Option{natsbus.Inbound("a"), natsbus.WithQueueGroup("q"), natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S", Durable: "d"})}, natsbus.ErrConfig},
		{"empty stream", []natsbus.Option{natsbus.Inbound("a"), natsbus.WithJetStream(natsbus.JetStreamConfig{})}, natsbus.ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := natsbus.New(context.Background(), m, nc, tt.opts...)
			assert.Nil(t, b)
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.want)
			assert.ErrorIs(t, err, natsbus.ErrConfig)
			assert.True(t, strings.HasPrefix(err.Error(), "natsbus: "), err.Error())
		})
	}
	_, err := natsbus.New[order](context.Background(), nil, nc, natsbus.Outbound(">"))
	assert.ErrorIs(t, err, natsbus.ErrConfig)
	_, err = natsbus.New(context.Background(), m, nil, natsbus.Outbound(">"))
	assert.ErrorIs(t, err, natsbus.ErrConfig)

	// Without a prefix, an event in the '$' namespace is refused at
	// publish time, with an error the emitter sees.
	b := newBridge(t, m, nc, natsbus.Outbound(">"))
	err = m.EmitSync(ctxTimeout(t, 5*time.Second), "$SYS.REQ.SERVER.PING", order{})
	assert.ErrorIs(t, err, natsbus.ErrInvalidSubject)
	assert.Equal(t, uint64(1), b.Stats().PublishErrors)
}

// A local side that cannot keep up makes the NATS client drop messages; the
// bridge counts and reports them, and every message is either delivered or
// reported dropped.
func TestCoreSlowConsumerIsReported(t *testing.T) {
	ts := startServer(t)
	nc, raw := connect(t, ts), connect(t, ts)
	m := newManager(t, eventbus.WithWorkers(1), eventbus.WithQueueSize(1))
	errs := newErrorLog()
	b := newBridge(t, m, nc, natsbus.Inbound("load.>"),
		natsbus.WithPendingLimits(10, 1<<20), natsbus.WithErrorHandler(errs.handle))
	release := make(chan struct{})
	var mu sync.Mutex
	count := 0
	_, err := m.RegisterListener("load.>", func(context.Context, eventbus.Event[order]) error {
		<-release
		mu.Lock()
		count++
		mu.Unlock()
		return nil
	})
	require.NoError(t, err)

	const total = 200
	for i := range total {
		require.NoError(t, raw.Publish(fmt.Sprintf("load.%d", i), []byte(`{"id":1}`)))
	}
	require.NoError(t, raw.Flush())
	err = errs.next(t)
	assert.ErrorIs(t, err, natsbus.ErrSlowConsumer)
	assert.Contains(t, err.Error(), `"load.>"`)
	close(release)

	require.NoError(t, b.Drain(ctxTimeout(t, 10*time.Second)))
	require.NoError(t, m.Flush(ctxTimeout(t, 10*time.Second)))
	st := b.Stats()
	assert.Positive(t, st.Dropped)
	assert.Equal(t, uint64(total), st.Dropped+st.Received, "each message delivered or reported dropped: %+v", st)
	mu.Lock()
	assert.Equal(t, int(st.Received), count)
	mu.Unlock()
	var reported uint64
	for _, err := range errs.all() {
		if errors.Is(err, natsbus.ErrSlowConsumer) {
			var n uint64
			_, _ = fmt.Sscanf(err.Error()[strings.LastIndex(err.Error(), ": ")+2:], "%d", &n)
			reported += n
		}
	}
	assert.Equal(t, st.Dropped, reported, "every drop is reported")
}

// While the server is away, core publishes fill nats.go's reconnect buffer
// and then fail with an error: never a silent drop.
func TestCorePublishWhileDisconnected(t *testing.T) {
	ts := startServer(t)
	nc := connect(t, ts, nats.ReconnectBufSize(2048))
	m := newManager(t)
	newBridge(t, m, nc, natsbus.Outbound("out.>"))
	ctx := ctxTimeout(t, 10*time.Second)
	require.NoError(t, m.EmitSync(ctx, "out.before", order{ID: 1}))

	ts.stop()
	require.Eventually(t, func() bool { return !nc.IsConnected() }, 10*time.Second, 5*time.Millisecond)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		err = m.EmitSync(ctx, "out.during", order{ID: i, Blob: strings.Repeat("x", 100)})
	}
	require.Error(t, err)
	assert.ErrorIs(t, err, nats.ErrReconnectBufExceeded)
	var pe *natsbus.PublishError
	assert.ErrorAs(t, err, &pe)
}

func TestCloseIsIdempotentAndStopsPublishing(t *testing.T) {
	ts := startServer(t)
	nc := connect(t, ts)
	m := newManager(t)
	b, err := natsbus.New(context.Background(), m, nc, natsbus.Outbound("a.>"), natsbus.Inbound("b.>"))
	require.NoError(t, err)
	ctx := ctxTimeout(t, 5*time.Second)
	require.NoError(t, m.EmitSync(ctx, "a.1", order{}))
	require.NoError(t, b.Close(ctx))
	require.NoError(t, b.Close(ctx))
	require.NoError(t, b.Drain(ctx))
	require.NoError(t, m.EmitSync(ctx, "a.2", order{}), "listener is gone: nothing to fail")
	assert.Equal(t, uint64(1), b.Stats().Published)
}
