package otelbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/otelbus"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// fixture is an Observer wired to in-memory trace and metric readers.
type fixture struct {
	t      testing.TB
	exp    *tracetest.InMemoryExporter
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	obs    *otelbus.Observer
}

func newFixture(t testing.TB, opts ...otelbus.Option) *fixture {
	t.Helper()
	f := &fixture{t: t, exp: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	f.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(f.exp))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader))
	t.Cleanup(func() {
		require.NoError(t, f.tp.Shutdown(context.Background()))
		require.NoError(t, mp.Shutdown(context.Background()))
	})
	obs, err := otelbus.New(append([]otelbus.Option{otelbus.WithTracerProvider(f.tp), otelbus.WithMeterProvider(mp)}, opts...)...)
	require.NoError(t, err)
	f.obs = obs
	return f
}

// newManager returns an EventManager observed by f, closed when the test
// ends (register it after f, so that it closes first).
func newManager[T any](t testing.TB, f *fixture, opts ...eventbus.Option) *eventbus.EventManager[T] {
	t.Helper()
	m := eventbus.New[T](append([]eventbus.Option{eventbus.WithObserver(f.obs)}, opts...)...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, m.Close(ctx), "Close at cleanup")
	})
	return m
}

// spans returns the ended spans, keyed by name; a name ended several times
// keeps them all, in the order they ended.
func (f *fixture) spans() map[string][]tracetest.SpanStub {
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range f.exp.GetSpans() {
		byName[s.Name] = append(byName[s.Name], s)
	}
	return byName
}

// one returns the only span named name.
func one(t testing.TB, spans map[string][]tracetest.SpanStub, name string) tracetest.SpanStub {
	t.Helper()
	require.Len(t, spans[name], 1, "spans named %q", name)
	return spans[name][0]
}

// collect reads every metric once.
func (f *fixture) collect() metricdata.ResourceMetrics {
	f.t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(f.t, f.reader.Collect(context.Background(), &rm))
	return rm
}

// find returns the metric named name, or nil.
func find(rm metricdata.ResourceMetrics, name string) *metricdata.Metrics {
	for _, sm := range rm.ScopeMetrics {
		for i := range sm.Metrics {
			if sm.Metrics[i].Name == name {
				return &sm.Metrics[i]
			}
		}
	}
	return nil
}

// matches reports whether set has every attribute of want; a want with an
// empty value requires the key to be absent.
func matches(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		v, ok := set.Value(kv.Key)
		if kv.Value.Type() == attribute.EMPTY {
			if ok {
				return false
			}
			continue
		}
		if !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// absent is a KeyValue that requires key to be absent (see matches).
func absent(key attribute.Key) attribute.KeyValue { return attribute.KeyValue{Key: key} }

// sum adds up the int64 sum points of metric name whose attributes match.
func sum(rm metricdata.ResourceMetrics, name string, want ...attribute.KeyValue) int64 {
	m := find(rm, name)
	if m == nil {
		return 0
	}
	var n int64
	for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
		if matches(p.Attributes, want) {
			n += p.Value
		}
	}
	return n
}

// points counts the int64 sum points of metric name whose attributes
// match.
func points(rm metricdata.ResourceMetrics, name string, want ...attribute.KeyValue) int {
	m := find(rm, name)
	if m == nil {
		return 0
	}
	n := 0
	for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
		if matches(p.Attributes, want) {
			n++
		}
	}
	return n
}

// count adds up the counts of the histogram points of metric name whose
// attributes match.
func count(rm metricdata.ResourceMetrics, name string, want ...attribute.KeyValue) uint64 {
	m := find(rm, name)
	if m == nil {
		return 0
	}
	var n uint64
	for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
		if matches(p.Attributes, want) {
			n += p.Count
		}
	}
	return n
}

// attr returns the value of key among kvs, and whether it is there.
func attr(kvs []attribute.KeyValue, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func ctxTimeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
