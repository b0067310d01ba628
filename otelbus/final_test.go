package otelbus_test

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/otelbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Consumer spans and the failed attempts' eventbus.deliveries points say
// whether a failure is final (a dead letter) or will be retried.
func TestFinalFailureIsToldFromARetriedOne(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex // guards deadLetters: the error handler runs on any worker
	var deadLetters []*eventbus.ListenerError
	ctx := ctxTimeout(t)
	m := eventbus.New[int](eventbus.WithObserver(f.obs), eventbus.WithWorkers(2),
		eventbus.WithErrorHandler(func(_ context.Context, lerr *eventbus.ListenerError) {
			mu.Lock()
			defer mu.Unlock()
			deadLetters = append(deadLetters, lerr)
		}))
	defer m.Close(ctx) //nolint:errcheck // closed below; this is for a failed require
	boom := errors.New("boom")

	hopeless, err := m.RegisterListener("hopeless", func(context.Context, eventbus.Event[int]) error { return boom },
		eventbus.Name("hopeless"), eventbus.Retry(2, 0, 0))
	require.NoError(t, err)
	runs := 0 // Ordered: one attempt at a time
	flaky, err := m.RegisterListener("flaky", func(context.Context, eventbus.Event[int]) error {
		runs++
		if runs == 1 {
			panic("first attempt")
		}
		return nil
	}, eventbus.Name("flaky"), eventbus.Retry(2, 0, 0), eventbus.Ordered())
	require.NoError(t, err)
	once, err := m.RegisterListener("once", func(context.Context, eventbus.Event[int]) error { return boom }, eventbus.Name("once"))
	require.NoError(t, err)

	require.NoError(t, m.Emit(ctx, "hopeless", 0))
	require.NoError(t, m.Emit(ctx, "flaky", 0))
	require.NoError(t, m.Emit(ctx, "once", 0))
	sctx, root := f.tp.Tracer("test").Start(ctx, "sync")
	require.Error(t, m.EmitSync(sctx, "hopeless", 1), "EmitSync runs each listener once: final")
	root.End()
	require.NoError(t, m.Close(ctx))
	mu.Lock()
	require.Len(t, deadLetters, 2, "hopeless's and once's")
	mu.Unlock()

	// The spans of each listener's attempts, by attempt number.
	type attempt struct {
		n     int64
		final bool
		code  codes.Code
	}
	attempts := func(l *eventbus.Listener, spans []tracetest.SpanStub) []attempt {
		var as []attempt
		for _, s := range spans {
			if v, _ := attr(s.Attributes, "messaging.destination.subscription.name"); v.AsString() != l.Name() {
				continue
			}
			n, _ := attr(s.Attributes, otelbus.AttemptKey)
			fin, ok := attr(s.Attributes, otelbus.FinalKey)
			require.True(t, ok, "every consumer span says whether it is final")
			as = append(as, attempt{n.AsInt64(), fin.AsBool(), s.Status.Code})
		}
		sort.Slice(as, func(i, j int) bool { return as[i].n < as[j].n })
		return as
	}
	spans := f.spans()
	var pool, inSync []tracetest.SpanStub
	for _, s := range spans["process hopeless"] {
		if s.SpanContext.TraceID() == root.SpanContext().TraceID() {
			inSync = append(inSync, s)
		} else {
			pool = append(pool, s)
		}
	}
	assert.Equal(t, []attempt{{1, false, codes.Error}, {2, false, codes.Error}, {3, true, codes.Error}}, attempts(hopeless, pool),
		"two retried failures, then a final one")
	assert.Equal(t, []attempt{{1, true, codes.Error}}, attempts(hopeless, inSync), "EmitSync's only attempt is final")
	assert.Equal(t, []attempt{{1, false, codes.Error}, {2, false, codes.Unset}}, attempts(flaky, spans["process flaky"]),
		"the retry that succeeded could itself have been retried")
	assert.Equal(t, []attempt{{1, true, codes.Error}}, attempts(once, spans["process once"]), "no Retry: final")

	rm := f.collect()
	for _, l := range []*eventbus.Listener{hopeless, flaky, once} {
		checkListener(t, rm, l)
	}
	s := m.Stats()
	assert.Equal(t, int64(s.Retried), sum(rm, otelbus.MetricDeliveries, notFinal), "retried attempts")
	assert.Equal(t, int64(s.Failed+s.Panicked), sum(rm, otelbus.MetricDeliveries, final), "final failures")
	assert.Equal(t, int64(len(deadLetters)+1), sum(rm, otelbus.MetricDeliveries, final), "the dead letters, and EmitSync's failure")
	assert.Equal(t, int64(1), sum(rm, otelbus.MetricDeliveries, sub(flaky), outcome(eventbus.OutcomePanicked), notFinal))
}
