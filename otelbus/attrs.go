package otelbus

import (
	"sync"
	"sync/atomic"

	"github.com/eventbus-go/eventbus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Attribute keys and values this package sets besides the semantic
// conventions' ones.
const (
	// System is the messaging.system value.
	System = "eventbus"
	// OutcomeKey is the eventbus.deliveries attribute that says what became
	// of a delivery: eventbus.Outcome's String ("delivered", "failed", ...).
	OutcomeKey = attribute.Key("eventbus.outcome")
	// AttemptKey is the consumer span attribute numbering the attempt,
	// from 1 (eventbus.Delivery.Attempt + 1).
	AttemptKey = attribute.Key("eventbus.delivery.attempt")
	// ManagerKey names the EventManager on its gauges (see ManagerName).
	ManagerKey = attribute.Key("eventbus.manager.name")
)

// _maxCached bounds the cached attribute sets; past it, sets are built on
// every call (only a mapping with many values gets there).
const _maxCached = 4096

var (
	systemKV      = semconv.MessagingSystemKey.String(System)
	opPublish     = semconv.MessagingOperationName("publish")
	opProcess     = semconv.MessagingOperationName("process")
	opTypeSend    = semconv.MessagingOperationTypeKey.String("send")
	opTypeProcess = semconv.MessagingOperationTypeKey.String("process")
)

// _outcomes is how many Outcome values have a cached attribute set.
const _outcomes = int(eventbus.OutcomeAbandoned) + 1

// emitAttrs are the cached attributes of emits of one (mapped) name.
type emitAttrs struct {
	spanName string
	kvs      []attribute.KeyValue
	sent     metric.MeasurementOption
}

// pairAttrs are the cached attributes of deliveries of one (mapped) event
// name to one (mapped) listener name.
type pairAttrs struct {
	spanName string
	kvs      []attribute.KeyValue
	base     metric.MeasurementOption // duration, wait, retries
	outcome  [_outcomes]metric.MeasurementOption
}

type pairKey struct{ event, listener string }

// cache holds the attribute sets, bounded by _maxCached entries.
type cache struct {
	emits sync.Map // string → *emitAttrs
	pairs sync.Map // pairKey → *pairAttrs
	n     atomic.Int64
}

func (c *cache) emit(event string) *emitAttrs {
	if v, ok := c.emits.Load(event); ok {
		return v.(*emitAttrs)
	}
	kvs := []attribute.KeyValue{systemKV, opPublish, semconv.MessagingDestinationName(event)}
	a := &emitAttrs{
		spanName: "publish " + event,
		kvs:      kvs,
		sent:     metric.WithAttributeSet(attribute.NewSet(kvs...)),
	}
	if c.n.Load() >= _maxCached {
		return a
	}
	v, loaded := c.emits.LoadOrStore(event, a)
	if !loaded {
		c.n.Add(1)
	}
	return v.(*emitAttrs)
}

func (c *cache) pair(event, listener string) *pairAttrs {
	k := pairKey{event, listener}
	if v, ok := c.pairs.Load(k); ok {
		return v.(*pairAttrs)
	}
	kvs := []attribute.KeyValue{systemKV, opProcess, semconv.MessagingDestinationName(event),
		semconv.MessagingDestinationSubscriptionName(listener)}
	a := &pairAttrs{
		spanName: "process " + event,
		kvs:      kvs,
		base:     metric.WithAttributeSet(attribute.NewSet(kvs...)),
	}
	for i := range a.outcome {
		a.outcome[i] = metric.WithAttributeSet(attribute.NewSet(append(kvs[:len(kvs):len(kvs)], OutcomeKey.String(eventbus.Outcome(i).String()))...))
	}
	if c.n.Load() >= _maxCached {
		return a
	}
	v, loaded := c.pairs.LoadOrStore(k, a)
	if !loaded {
		c.n.Add(1)
	}
	return v.(*pairAttrs)
}

// outcomeOpt returns the attribute option of a delivery with outcome o.
func (a *pairAttrs) outcomeOpt(o eventbus.Outcome) metric.MeasurementOption {
	if int(o) < len(a.outcome) {
		return a.outcome[o]
	}
	return metric.WithAttributeSet(attribute.NewSet(append(a.kvs[:len(a.kvs):len(a.kvs)], OutcomeKey.String(o.String()))...))
}

// with returns the option of kvs plus extra.
func with(kvs []attribute.KeyValue, extra ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(append(kvs[:len(kvs):len(kvs)], extra...)...))
}
