package otelbus_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/otelbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// A handler attempt that ends in runtime.Goexit (t.FailNow, a failing
// require in a test listener) is a failed attempt in every metric, as in
// Stats, and its span ends with an error.
func TestGoexitAttemptIsCountedAndEnded(t *testing.T) {
	f := newFixture(t)
	m := newManager[int](t, f, eventbus.WithErrorHandler(func(error) {}))
	ctx := ctxTimeout(t)
	var ls []*eventbus.Listener
	for _, h := range []eventbus.Handler[int]{
		func(context.Context, eventbus.Event[int]) error { return nil },
		func(context.Context, eventbus.Event[int]) error { runtime.Goexit(); return nil },
		func(context.Context, eventbus.Event[int]) error { return nil },
	} {
		l, err := m.RegisterListener("e", h)
		require.NoError(t, err)
		ls = append(ls, l)
	}
	require.NoError(t, m.Emit(ctx, "e", 1))
	require.NoError(t, m.Flush(ctx))

	s := m.Stats()
	require.Equal(t, uint64(2), s.Delivered, "precondition")
	require.Equal(t, uint64(1), s.Failed, "precondition: Stats count the Goexit as a failure")
	rm := f.collect()
	d := func(o eventbus.Outcome) int64 { return sum(rm, otelbus.MetricDeliveries, outcome(o)) }
	assert.Equal(t, int64(s.Delivered), d(eventbus.OutcomeDelivered), "delivered")
	assert.Equal(t, int64(s.Failed), d(eventbus.OutcomeFailed), "failed")
	assert.Equal(t, s.Delivered+s.Failed, count(rm, otelbus.MetricDuration), "one duration per attempt")
	assert.Equal(t, s.Failed, count(rm, otelbus.MetricDuration, semconv.ErrorTypeKey.String("*errors.errorString")), "the Goexit's duration carries error.type")
	for _, l := range ls {
		checkListener(t, rm, l)
	}

	spans := f.spans()["process e"]
	require.Len(t, spans, 3, "every attempt's span ended")
	var failedSpans int
	for _, sp := range spans {
		if sp.Status.Code == codes.Error {
			failedSpans++
			assert.Contains(t, sp.Status.Description, "Goexit")
			assert.Contains(t, sp.Attributes, otelbus.OutcomeKey.String("failed"))
		}
	}
	assert.Equal(t, 1, failedSpans, "the Goexit's span is an error")
}
