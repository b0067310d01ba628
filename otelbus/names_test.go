package otelbus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/otelbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

func TestLimitKeepsTheFirstNames(t *testing.T) {
	limit := otelbus.Limit(2)
	assert.Equal(t, "a", limit("a"))
	assert.Equal(t, "b", limit("b"))
	assert.Equal(t, otelbus.Other, limit("c"))
	assert.Equal(t, "a", limit("a"), "a kept name stays kept")
	assert.Equal(t, otelbus.Other, otelbus.Limit(0)("a"))

	// Concurrent callers: still at most n names kept.
	limit = otelbus.Limit(10)
	kept := sync.Map{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				if v := limit(fmt.Sprint(g, ".", i)); v != otelbus.Other {
					kept.Store(v, true)
				}
			}
		})
	}
	wg.Wait()
	n := 0
	kept.Range(func(any, any) bool { n++; return true })
	assert.Equal(t, 10, n)
}

func TestPatternsMapNamesToPatterns(t *testing.T) {
	p := otelbus.Patterns("user.*.created", "user.>")
	assert.Equal(t, "user.*.created", p("user.42.created"))
	assert.Equal(t, "user.>", p("user.42.deleted"))
	assert.Equal(t, otelbus.Other, p("order.created"))
}

// Dynamic names stay bounded in metrics and span names, while spans keep
// the full name as an attribute.
func TestCardinalityIsBounded(t *testing.T) {
	f := newFixture(t, otelbus.WithEventNames(otelbus.Patterns("user.*")), otelbus.WithListenerNames(otelbus.Limit(1)))
	m := newManager[int](t, f)
	first, err := m.RegisterListener("user.*", func(context.Context, eventbus.Event[int]) error { return nil })
	require.NoError(t, err)
	second, err := m.RegisterListener("user.>", func(context.Context, eventbus.Event[int]) error { return nil })
	require.NoError(t, err)
	ctx := ctxTimeout(t)
	for i := range 50 {
		require.NoError(t, m.EmitSync(ctx, fmt.Sprintf("user.%d", i), i))
	}
	require.NoError(t, m.EmitSync(ctx, "order", 0))

	rm := f.collect()
	assert.Equal(t, int64(100), sum(rm, otelbus.MetricDeliveries, semconv.MessagingDestinationName("user.*")))
	assert.Equal(t, int64(50), sum(rm, otelbus.MetricSent, semconv.MessagingDestinationName("user.*")))
	assert.Equal(t, int64(1), sum(rm, otelbus.MetricSent, semconv.MessagingDestinationName(otelbus.Other)))
	assert.Equal(t, int64(50), sum(rm, otelbus.MetricDeliveries, sub(first)), "the first listener keeps its name")
	assert.Equal(t, int64(50), sum(rm, otelbus.MetricDeliveries, semconv.MessagingDestinationSubscriptionName(otelbus.Other)),
		"the second (%s) is other", otelbus.ListenerName(second))

	spans := f.spans()
	assert.Len(t, spans["publish user.*"], 50, "span names use the mapped name")
	assert.Len(t, spans["process user.*"], 100)
	v, _ := attr(spans["process user.*"][0].Attributes, semconv.MessagingDestinationNameKey)
	assert.Regexp(t, `^user\.\d+$`, v.AsString(), "the attribute keeps the full name")
}
