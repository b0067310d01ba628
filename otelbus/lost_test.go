package otelbus_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/eventbustest"
	"github.com/eventbus-go/eventbus/otelbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// A delivery that does not run (dropped, skipped, abandoned, and skipped
// while waiting to be retried) is a "discard" span, a child of its emit's
// span, and is counted with its span's context: the counter's exemplar
// points at that span.
func TestLostDeliveriesHaveASpanInTheEmitsTrace(t *testing.T) {
	f := newFixture(t)
	ctx := ctxTimeout(t)
	m := eventbus.New[int](eventbus.WithObserver(f.obs), eventbus.WithWorkers(4),
		eventbus.WithErrorHandler(func(context.Context, *eventbus.ListenerError) {}))
	defer m.Close(ctx) //nolint:errcheck // closed below; this is for a failed require
	// emit emits in a trace of its own, and returns it.
	emit := func(name string, n int) trace.TraceID {
		t.Helper()
		rctx, req := f.tp.Tracer("test").Start(ctx, "request "+name)
		defer req.End()
		require.NoError(t, m.Emit(rctx, name, n))
		return req.SpanContext().TraceID()
	}

	// Dropped: a queue of one, full, drops the newest.
	dropBlock, releaseDrop := eventbustest.Block[int](t)
	drop, err := m.RegisterListener("drop", dropBlock.Handle, eventbus.Name("drop"), eventbus.Ordered(), eventbus.QueueSize(1),
		eventbus.OnOverflow(eventbus.OverflowDropNewest))
	require.NoError(t, err)
	emit("drop", 0)
	dropBlock.WaitEntered(ctx, 1)
	emit("drop", 1)
	dropped := emit("drop", 2)

	// Skipped: queued behind a blocked delivery when the listener is
	// unregistered.
	skipBlock, releaseSkip := eventbustest.Block[int](t)
	skip, err := m.RegisterListener("skip", skipBlock.Handle, eventbus.Name("skip"), eventbus.Ordered())
	require.NoError(t, err)
	emit("skip", 0)
	skipBlock.WaitEntered(ctx, 1)
	skipped := emit("skip", 1)
	skip.Unregister()
	releaseSkip()

	// Skipped after a failed attempt: the handler unregisters its listener
	// and fails, and the retry, queued at once, is skipped.
	var retry *eventbus.Listener
	retry, err = m.RegisterListener("retry", func(context.Context, eventbus.Event[int]) error {
		retry.Unregister() // set before the emit
		return errors.New("boom")
	}, eventbus.Name("retry"), eventbus.Retry(1, 0, 0))
	require.NoError(t, err)
	retried := emit("retry", 0)
	releaseDrop()
	require.NoError(t, m.Flush(ctx))

	// Abandoned: queued behind a blocked delivery when Close gives up.
	hang, releaseHang := eventbustest.Block[int](t)
	defer releaseHang()
	abandon, err := m.RegisterListener("abandon", hang.Handle, eventbus.Name("abandon"), eventbus.Ordered())
	require.NoError(t, err)
	emit("abandon", 0)
	hang.WaitEntered(ctx, 1)
	abandoned := emit("abandon", 1)
	expired, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, m.Close(expired), context.Canceled)
	require.NoError(t, m.Close(ctx))

	s := m.Stats()
	require.Equal(t, uint64(1), s.Dropped, "precondition")
	require.Equal(t, uint64(2), s.Skipped, "precondition")
	require.Equal(t, uint64(1), s.Abandoned, "precondition")
	require.Equal(t, uint64(1), s.Retried, "precondition")

	spans := f.exp.GetSpans()
	rm := f.collect()
	for _, c := range []struct {
		l        *eventbus.Listener
		trace    trace.TraceID
		outcome  eventbus.Outcome
		attempt  int
		loss     bool // status Error
		retriedN int64
	}{
		{drop, dropped, eventbus.OutcomeDropped, 1, true, 0},
		{skip, skipped, eventbus.OutcomeSkipped, 1, false, 0},
		{retry, retried, eventbus.OutcomeSkipped, 2, false, 1},
		{abandon, abandoned, eventbus.OutcomeAbandoned, 1, true, 0},
	} {
		name := c.l.Name()
		publish := inTrace(t, spans, c.trace, "publish "+name)
		discard := inTrace(t, spans, c.trace, "discard "+name)
		assert.Equal(t, publish.SpanContext.SpanID(), discard.Parent.SpanID(), "%s: a child of the emit's span", name)
		assert.Equal(t, trace.SpanKindInternal, discard.SpanKind, name)
		assert.Subset(t, discard.Attributes, []attribute.KeyValue{
			semconv.MessagingSystemKey.String("eventbus"),
			semconv.MessagingOperationTypeKey.String("settle"),
			semconv.MessagingOperationName("discard"),
			semconv.MessagingDestinationName(name),
			semconv.MessagingDestinationSubscriptionName(name),
			semconv.MessagingDestinationTemplate(c.l.Pattern()),
			otelbus.OutcomeKey.String(c.outcome.String()),
			otelbus.AttemptKey.Int(c.attempt),
		}, name)
		if c.loss {
			assert.Equal(t, codes.Error, discard.Status.Code, name)
			assert.Contains(t, discard.Attributes, semconv.ErrorTypeKey.String(c.outcome.String()), name)
		} else {
			assert.Equal(t, codes.Unset, discard.Status.Code, "%s: a skip is no error", name)
			_, ok := attr(discard.Attributes, semconv.ErrorTypeKey)
			assert.False(t, ok, name)
		}

		checkListener(t, rm, c.l)
		assert.Equal(t, c.retriedN, sum(rm, otelbus.MetricRetries, sub(c.l)), "%s: retries", name)
		ex := exemplars(rm, otelbus.MetricDeliveries, sub(c.l), outcome(c.outcome))
		require.Len(t, ex, 1, "%s: the lost delivery's exemplar", name)
		assert.Equal(t, discard.SpanContext.TraceID(), trace.TraceID(ex[0].TraceID), "%s: the exemplar is in the emit's trace", name)
		assert.Equal(t, discard.SpanContext.SpanID(), trace.SpanID(ex[0].SpanID), "%s: the exemplar points at the discard span", name)
	}
	var discards int
	for _, sp := range spans {
		if strings.HasPrefix(sp.Name, "discard ") {
			discards++
		}
	}
	assert.Equal(t, int(s.Dropped+s.Skipped+s.Abandoned), discards, "one discard span per lost delivery")
}

// inTrace returns the only span named name in trace id.
func inTrace(t *testing.T, spans tracetest.SpanStubs, id trace.TraceID, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range spans {
		if s.SpanContext.TraceID() == id && s.Name == name {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "spans named %q in trace %s", name, id)
	return found[0]
}

// exemplars returns the exemplars of the int64 sum points of metric name
// whose attributes match.
func exemplars(rm metricdata.ResourceMetrics, name string, want ...attribute.KeyValue) []metricdata.Exemplar[int64] {
	m := find(rm, name)
	if m == nil {
		return nil
	}
	var ex []metricdata.Exemplar[int64]
	for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
		if matches(p.Attributes, want) {
			ex = append(ex, p.Exemplars...)
		}
	}
	return ex
}
