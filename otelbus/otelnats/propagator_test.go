package otelnats_test

import (
	"context"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/eventbus-go/eventbus/otelbus"
	"github.com/eventbus-go/eventbus/otelbus/otelnats"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

var _ natsbus.Propagator = otelnats.Propagator()

// startServer runs a nats-server in this process on a random loopback
// port until the test ends.
func startServer(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	require.True(t, s.ReadyForConnections(10*time.Second), "nats-server not ready")
	return s.ClientURL()
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// service is one process: an observed EventManager and its bridge.
type service struct {
	m *eventbus.EventManager[int]
}

func newService(t *testing.T, tp trace.TracerProvider, nc *nats.Conn, opts ...natsbus.Option) *service {
	t.Helper()
	obs, err := otelbus.New(otelbus.WithTracerProvider(tp))
	require.NoError(t, err)
	m := eventbus.New[int](eventbus.WithObserver(obs))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, m.Close(ctx))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsbus.New(ctx, m, nc, append(opts, natsbus.WithPropagator(otelnats.Propagator()))...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, b.Close(ctx))
	})
	return &service{m: m}
}

// A trace crosses two bridges: HTTP on A → publish on A → the outbound
// listener's process span on A → (NATS) → publish of the inbound event on
// B → process on B, all in one trace.
func TestTraceCrossesTwoBridges(t *testing.T) {
	url := startServer(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)) // both services export to one backend
	t.Cleanup(func() { assert.NoError(t, tp.Shutdown(context.Background())) })
	ncA, ncB, ncRaw := connect(t, url), connect(t, url), connect(t, url)

	a := newService(t, tp, ncA, natsbus.Outbound("order.>"))
	b := newService(t, tp, ncB, natsbus.Inbound("order.>"))
	got := make(chan trace.SpanContext, 1)
	shipping, err := b.m.RegisterListener("order.created", func(ctx context.Context, e eventbus.Event[int]) error {
		got <- trace.SpanContextFromContext(ctx)
		return nil
	}, eventbus.Name("shipping"))
	require.NoError(t, err)
	raw := make(chan *nats.Msg, 1)
	sub, err := ncRaw.ChanSubscribe("order.>", raw)
	require.NoError(t, err)
	defer func() { assert.NoError(t, sub.Unsubscribe()) }()
	require.NoError(t, ncRaw.Flush())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx, http := tp.Tracer("test").Start(ctx, "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
	require.NoError(t, a.m.Emit(ctx, "order.created", 42))
	http.End()
	var inHandler trace.SpanContext
	select {
	case inHandler = <-got:
	case <-ctx.Done():
		t.Fatal("B's listener did not run")
	}
	require.NoError(t, a.m.Flush(ctx))
	require.NoError(t, b.m.Flush(ctx))

	var msg *nats.Msg
	select {
	case msg = <-raw:
	case <-ctx.Done():
		t.Fatal("no message on NATS")
	}
	assert.Regexp(t, `^00-`+http.SpanContext().TraceID().String()+`-[0-9a-f]{16}-01$`, msg.Header.Get("traceparent"), "W3C traceparent on the wire")

	spans := exp.GetSpans()
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
		assert.Equal(t, http.SpanContext().TraceID(), s.SpanContext.TraceID(), "%s is in the request's trace", s.Name)
	}
	require.Len(t, byName["publish order.created"], 2, "A's emit and B's inbound emit")
	require.Len(t, byName["process order.created"], 2, "A's bridge listener and B's shipping")
	var pubA, pubB, procA, procB tracetest.SpanStub
	for _, s := range byName["publish order.created"] {
		if s.Parent.SpanID() == http.SpanContext().SpanID() {
			pubA = s
		} else {
			pubB = s
		}
	}
	for _, s := range byName["process order.created"] {
		if s.Parent.SpanID() == pubA.SpanContext.SpanID() {
			procA = s
		} else {
			procB = s
		}
	}
	require.True(t, pubA.SpanContext.IsValid() && pubB.SpanContext.IsValid() && procA.SpanContext.IsValid() && procB.SpanContext.IsValid(),
		"every span found: %v", byName)
	assert.Equal(t, procA.SpanContext.SpanID(), pubB.Parent.SpanID(), "B's inbound emit is a child of A's bridge delivery")
	assert.True(t, pubB.Parent.IsRemote(), "its parent came over NATS")
	assert.Equal(t, pubB.SpanContext.SpanID(), procB.Parent.SpanID(), "B's listener runs under B's emit")
	assert.Equal(t, procB.SpanContext.SpanID(), inHandler.SpanID(), "the handler's context carries its span")
	assert.Equal(t, trace.SpanKindProducer, pubB.SpanKind)
	assert.Equal(t, trace.SpanKindConsumer, procB.SpanKind)
	assert.Contains(t, procB.Attributes, otelbus.AttemptKey.Int(1))
	assert.Equal(t, "shipping", shipping.Name())
}

func TestPropagatorRoundTrip(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { assert.NoError(t, tp.Shutdown(context.Background())) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "x")
	defer span.End()
	p := otelnats.Propagator()

	h := nats.Header{}
	p.Inject(ctx, h)
	require.NotEmpty(t, h.Get("traceparent"), "lower-case W3C key")
	got := trace.SpanContextFromContext(p.Extract(context.Background(), h))
	assert.Equal(t, span.SpanContext().TraceID(), got.TraceID())
	assert.Equal(t, span.SpanContext().SpanID(), got.SpanID())
	assert.True(t, got.IsRemote())

	canon := nats.Header{"Traceparent": h["traceparent"]}
	assert.Equal(t, span.SpanContext().SpanID(), trace.SpanContextFromContext(p.Extract(context.Background(), canon)).SpanID(),
		"a key in another case is found")

	empty := nats.Header{}
	p.Inject(context.Background(), empty)
	assert.Empty(t, empty, "no span, no headers")
	assert.False(t, trace.SpanContextFromContext(p.Extract(context.Background(), nats.Header{"traceparent": {"garbage"}})).IsValid())

	both := otelnats.Propagator(otelnats.WithTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})), nil)
	h = nats.Header{}
	both.Inject(ctx, h)
	assert.NotEmpty(t, h.Get("traceparent"))
}
