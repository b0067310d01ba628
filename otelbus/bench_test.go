package otelbus_test

import (
	"context"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/otelbus"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Per-delivery overhead of the observer: go test -run '^$' -bench . -benchmem
//
//	off        no observer (the core's baseline)
//	noop       the Observer on OpenTelemetry's no-op providers (the API
//	           without an SDK)
//	metrics    the SDK's metrics (a manual reader, aggregating), no tracing
//	sampled    metrics, and every span recorded by the SDK (a processor that
//	           drops ended spans stands for an exporter)
//	unsampled  metrics, and the SDK's tracer with a sampler that records
//	           nothing (a trace another service chose not to sample)

// dropSpans is a span processor that keeps nothing.
type dropSpans struct{}

func (dropSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (dropSpans) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (dropSpans) Shutdown(context.Context) error                  { return nil }
func (dropSpans) ForceFlush(context.Context) error                { return nil }

type variant struct {
	name string
	opts func(b *testing.B) []otelbus.Option // nil: no observer
}

var variants = []variant{
	{"off", nil},
	{"noop", func(*testing.B) []otelbus.Option {
		return []otelbus.Option{otelbus.WithTracerProvider(tracenoop.NewTracerProvider()), otelbus.WithMeterProvider(metricnoop.NewMeterProvider())}
	}},
	{"metrics", func(b *testing.B) []otelbus.Option {
		return []otelbus.Option{otelbus.WithTracerProvider(tracenoop.NewTracerProvider()), otelbus.WithMeterProvider(sdkMeter(b))}
	}},
	{"sampled", func(b *testing.B) []otelbus.Option {
		return []otelbus.Option{otelbus.WithTracerProvider(sdkTracer(b, sdktrace.AlwaysSample())), otelbus.WithMeterProvider(sdkMeter(b))}
	}},
	{"unsampled", func(b *testing.B) []otelbus.Option {
		return []otelbus.Option{otelbus.WithTracerProvider(sdkTracer(b, sdktrace.NeverSample())), otelbus.WithMeterProvider(sdkMeter(b))}
	}},
}

func sdkMeter(b *testing.B) *sdkmetric.MeterProvider {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return mp
}

func sdkTracer(b *testing.B, s sdktrace.Sampler) *sdktrace.TracerProvider {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(s), sdktrace.WithSpanProcessor(dropSpans{}))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

func benchManager(b *testing.B, v variant, listeners int) *eventbus.EventManager[int] {
	var opts []eventbus.Option
	if v.opts != nil {
		obs, err := otelbus.New(v.opts(b)...)
		if err != nil {
			b.Fatal(err)
		}
		opts = append(opts, eventbus.WithObserver(obs))
	}
	m := eventbus.New[int](opts...)
	b.Cleanup(func() { _ = m.Close(context.Background()) })
	for range listeners {
		if _, err := m.RegisterListener("order.created", func(context.Context, eventbus.Event[int]) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

func BenchmarkEmitSync1(b *testing.B)  { benchEmitSync(b, 1) }
func BenchmarkEmitSync10(b *testing.B) { benchEmitSync(b, 10) }

func benchEmitSync(b *testing.B, listeners int) {
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			m := benchManager(b, v, listeners)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_ = m.EmitSync(ctx, "order.created", 1)
			}
		})
	}
}

func BenchmarkEmit1(b *testing.B) {
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			m := benchManager(b, v, 1)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_ = m.Emit(ctx, "order.created", 1)
			}
			if err := m.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}
