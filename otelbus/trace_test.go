package otelbus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/otelbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// orderFlow registers billing (which emits order.paid from its handler,
// with the handler's context), audit on order.>, and shipping on
// order.paid. emit is how billing emits.
func orderFlow(t *testing.T, m *eventbus.EventManager[int], emit func(context.Context, string, int) error) (billing, audit, shipping *eventbus.Listener) {
	t.Helper()
	var err error
	billing, err = m.RegisterListener("order.created", func(ctx context.Context, e eventbus.Event[int]) error {
		return emit(ctx, "order.paid", e.Data)
	})
	require.NoError(t, err)
	audit, err = m.RegisterListener("order.*", func(context.Context, eventbus.Event[int]) error { return nil })
	require.NoError(t, err)
	shipping, err = m.RegisterListener("order.paid", func(context.Context, eventbus.Event[int]) error { return nil })
	require.NoError(t, err)
	return billing, audit, shipping
}

// checkTree checks HTTP → publish order.created → process (billing, audit)
// → publish order.paid (under billing's) → process (shipping, audit).
func checkTree(t *testing.T, f *fixture, billing, audit, shipping *eventbus.Listener) {
	t.Helper()
	spans := f.spans()
	http := one(t, spans, "GET /orders")
	created := one(t, spans, "publish order.created")
	paid := one(t, spans, "publish order.paid")
	require.Len(t, spans["process order.created"], 2, "billing and audit")
	require.Len(t, spans["process order.paid"], 2, "shipping and audit")
	assert.Len(t, f.exp.GetSpans(), 7)

	byListener := func(ss []tracetest.SpanStub, l *eventbus.Listener) tracetest.SpanStub {
		t.Helper()
		for _, s := range ss {
			if v, _ := attr(s.Attributes, semconv.MessagingDestinationSubscriptionNameKey); v.AsString() == otelbus.ListenerName(l) {
				return s
			}
		}
		require.Failf(t, "no span", "for listener %q", otelbus.ListenerName(l))
		return tracetest.SpanStub{}
	}
	bill := byListener(spans["process order.created"], billing)
	auditCreated := byListener(spans["process order.created"], audit)
	ship := byListener(spans["process order.paid"], shipping)
	auditPaid := byListener(spans["process order.paid"], audit)

	for _, s := range f.exp.GetSpans() {
		assert.Equal(t, http.SpanContext.TraceID(), s.SpanContext.TraceID(), "%s is in the request's trace", s.Name)
	}
	parent := func(child, parent tracetest.SpanStub) {
		t.Helper()
		assert.Equal(t, parent.SpanContext.SpanID(), child.Parent.SpanID(), "%s is a child of %s", child.Name, parent.Name)
	}
	parent(created, http)
	parent(bill, created)
	parent(auditCreated, created)
	parent(paid, bill)
	parent(ship, paid)
	parent(auditPaid, paid)

	assert.Equal(t, trace.SpanKindServer, http.SpanKind)
	for _, s := range []tracetest.SpanStub{created, paid} {
		assert.Equal(t, trace.SpanKindProducer, s.SpanKind, s.Name)
		assert.Equal(t, codes.Unset, s.Status.Code, s.Name)
		assert.Subset(t, s.Attributes, []attribute.KeyValue{
			semconv.MessagingSystemKey.String("eventbus"),
			semconv.MessagingOperationTypeKey.String("send"),
			semconv.MessagingOperationName("publish"),
			semconv.MessagingDestinationName(strings.TrimPrefix(s.Name, "publish ")),
		}, s.Name)
	}
	for _, c := range []struct {
		s     tracetest.SpanStub
		l     *eventbus.Listener
		event string
	}{{bill, billing, "order.created"}, {auditCreated, audit, "order.created"}, {ship, shipping, "order.paid"}, {auditPaid, audit, "order.paid"}} {
		assert.Equal(t, trace.SpanKindConsumer, c.s.SpanKind, c.s.Name)
		assert.Equal(t, codes.Unset, c.s.Status.Code, c.s.Name)
		assert.Subset(t, c.s.Attributes, []attribute.KeyValue{
			semconv.MessagingSystemKey.String("eventbus"),
			semconv.MessagingOperationTypeKey.String("process"),
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(c.event),
			semconv.MessagingDestinationSubscriptionName(otelbus.ListenerName(c.l)),
			semconv.MessagingDestinationTemplate(c.l.Pattern()),
			otelbus.AttemptKey.Int(1),
		}, c.s.Name)
		assert.False(t, c.s.StartTime.Before(created.StartTime), "a delivery starts after its emit")
	}
}

func TestTraceNestsThroughEmit(t *testing.T) {
	f := newFixture(t)
	m := newManager[int](t, f)
	billing, audit, shipping := orderFlow(t, m, m.Emit)

	ctx, http := f.tp.Tracer("test").Start(ctxTimeout(t), "GET /orders", trace.WithSpanKind(trace.SpanKindServer))
	require.NoError(t, m.Emit(ctx, "order.created", 1))
	http.End()
	require.NoError(t, m.Flush(ctx)) // order.created
	require.NoError(t, m.Flush(ctx)) // order.paid, emitted by billing before it returned
	checkTree(t, f, billing, audit, shipping)
}

func TestTraceNestsThroughEmitSync(t *testing.T) {
	f := newFixture(t)
	m := newManager[int](t, f)
	billing, audit, shipping := orderFlow(t, m, m.EmitSync)

	ctx, http := f.tp.Tracer("test").Start(ctxTimeout(t), "GET /orders", trace.WithSpanKind(trace.SpanKindServer))
	require.NoError(t, m.EmitSync(ctx, "order.created", 1))
	http.End()
	checkTree(t, f, billing, audit, shipping)
	spans := f.spans()
	created := one(t, spans, "publish order.created")
	for _, s := range f.exp.GetSpans() {
		if s.Name != "GET /orders" {
			assert.False(t, s.EndTime.After(created.EndTime), "EmitSync's span covers %s", s.Name)
		}
	}
}

func TestTraceWithoutParentStartsATrace(t *testing.T) {
	f := newFixture(t)
	m := newManager[int](t, f)
	_, err := m.RegisterListener("a", func(context.Context, eventbus.Event[int]) error { return nil })
	require.NoError(t, err)
	require.NoError(t, m.TryEmit("a", 1))
	require.NoError(t, m.Flush(ctxTimeout(t)))
	spans := f.spans()
	pub, proc := one(t, spans, "publish a"), one(t, spans, "process a")
	assert.False(t, pub.Parent.IsValid(), "no span in the context: a root span")
	assert.Equal(t, pub.SpanContext.SpanID(), proc.Parent.SpanID())
}

func TestTraceFailuresPanicsAndRetries(t *testing.T) {
	f := newFixture(t)
	m := newManager[int](t, f, eventbus.WithErrorHandler(func(error) {}))
	boom := errors.New("boom")
	_, err := m.RegisterListener("fail", func(context.Context, eventbus.Event[int]) error { return boom })
	require.NoError(t, err)
	_, err = m.RegisterListener("panic", func(context.Context, eventbus.Event[int]) error { panic("kaboom") })
	require.NoError(t, err)
	tries := 0
	_, err = m.RegisterListener("flaky", func(context.Context, eventbus.Event[int]) error {
		tries++ // Retry runs attempts one after another
		if tries < 3 {
			return boom
		}
		return nil
	}, eventbus.Retry(2, time.Millisecond, time.Millisecond))
	require.NoError(t, err)

	ctx := ctxTimeout(t)
	require.NoError(t, m.Emit(ctx, "fail", 1))
	require.NoError(t, m.Emit(ctx, "panic", 1))
	require.NoError(t, m.Emit(ctx, "flaky", 1))
	require.NoError(t, m.Flush(ctx))
	require.Error(t, m.EmitSync(ctx, "fail", 2), "EmitSync returns the listener's failure")
	require.ErrorIs(t, m.Emit(ctx, "not valid", 1), eventbus.ErrInvalidName)

	spans := f.spans()
	require.Len(t, spans["process fail"], 2)
	for _, s := range spans["process fail"] {
		assert.Equal(t, codes.Error, s.Status.Code)
		assert.Equal(t, "boom", s.Status.Description)
		assert.Contains(t, s.Attributes, semconv.ErrorTypeKey.String("*errors.errorString"))
		assert.Contains(t, s.Attributes, otelbus.OutcomeKey.String("failed"))
		require.Len(t, s.Events, 1)
		assert.Equal(t, "exception", s.Events[0].Name)
	}
	for _, s := range spans["publish fail"] {
		assert.Equal(t, codes.Unset, s.Status.Code, "emits that were accepted are not failures, EmitSync's included")
	}

	p := one(t, spans, "process panic")
	assert.Equal(t, codes.Error, p.Status.Code)
	assert.Contains(t, p.Status.Description, "kaboom")
	assert.Contains(t, p.Attributes, otelbus.OutcomeKey.String("panicked"))
	require.Len(t, p.Events, 1)
	stack, ok := attr(p.Events[0].Attributes, semconv.ExceptionStacktraceKey)
	require.True(t, ok, "the panic's stack is recorded")
	assert.Contains(t, stack.AsString(), "TestTraceFailuresPanicsAndRetries", "the stack of the panic, not of the observer")

	flaky := spans["process flaky"]
	require.Len(t, flaky, 3)
	for i, s := range flaky {
		v, _ := attr(s.Attributes, otelbus.AttemptKey)
		assert.Equal(t, int64(i+1), v.AsInt64(), "attempts are numbered from 1")
		want := codes.Error
		if i == 2 {
			want = codes.Unset
		}
		assert.Equal(t, want, s.Status.Code, "attempt %d", i+1)
		assert.Equal(t, one(t, spans, "publish flaky").SpanContext.SpanID(), s.Parent.SpanID(), "every attempt is a child of the emit")
	}

	bad := one(t, spans, "publish not valid")
	assert.Equal(t, codes.Error, bad.Status.Code, "a refused emit is an error")
	assert.Contains(t, bad.Status.Description, "invalid")
	assert.Empty(t, spans["process not valid"])
}

// EmitSync's joined listener failures are not a refused emit.
func TestEmitSyncFailuresAreNotRefusals(t *testing.T) {
	f := newFixture(t)
	m := newManager[int](t, f)
	for range 2 {
		_, err := m.RegisterListener("twice", func(context.Context, eventbus.Event[int]) error { return errors.New("no") })
		require.NoError(t, err)
	}
	err := m.EmitSync(ctxTimeout(t), "twice", 1)
	var lerr *eventbus.ListenerError
	require.ErrorAs(t, err, &lerr, "precondition: both failures, joined")
	assert.Equal(t, codes.Unset, one(t, f.spans(), "publish twice").Status.Code)
	rm := f.collect()
	assert.Equal(t, int64(1), sum(rm, otelbus.MetricSent, absent(semconv.ErrorTypeKey)))
	assert.Equal(t, int64(m.Stats().Emitted), sum(rm, otelbus.MetricSent, absent(semconv.ErrorTypeKey)))
	assert.Equal(t, int64(2), sum(rm, otelbus.MetricDeliveries, outcome(eventbus.OutcomeFailed)))
}
