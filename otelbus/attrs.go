package otelbus

import (
	"github.com/eventbus-go/eventbus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys and values this package sets besides the semantic
// conventions' ones.
const (
	// System is the messaging.system value.
	System = "eventbus"
	// OutcomeKey is the eventbus.deliveries attribute that says what became
	// of a delivery: eventbus.Outcome's String ("delivered", "failed", ...).
	// Consumer spans of failed attempts carry it too, and so do "discard"
	// spans (deliveries that did not run).
	OutcomeKey = attribute.Key("eventbus.outcome")
	// AttemptKey is the consumer and "discard" span attribute numbering the
	// attempt, from 1 (eventbus.Delivery.Attempt + 1); on a discard span, the
	// attempt that did not run.
	AttemptKey = attribute.Key("eventbus.delivery.attempt")
	// ManagerKey names the EventManager on its gauges (see ManagerName).
	ManagerKey = attribute.Key("eventbus.manager.name")
	// FinalKey tells a final failure from one that will be retried
	// (eventbus.Delivery.Final): true when no retry follows, so the failure
	// reaches the error handler (a dead letter); false when the delivery
	// will be attempted again (or lost while waiting to be). The
	// eventbus.deliveries points of failed and panicked attempts carry it,
	// and so does every consumer span (whether a failure of that attempt
	// would be final).
	FinalKey = attribute.Key("eventbus.delivery.final")
)

// _maxCached bounds the cached attribute sets of each kind; past it, sets
// are built on every call (only a name mapping with many values gets
// there).
const _maxCached = 4096

var (
	systemKV      = semconv.MessagingSystemKey.String(System)
	opPublish     = semconv.MessagingOperationName("publish")
	opProcess     = semconv.MessagingOperationName("process")
	opTypeSend    = semconv.MessagingOperationTypeKey.String("send")
	opTypeProcess = semconv.MessagingOperationTypeKey.String("process")
	opTypeSettle  = semconv.MessagingOperationTypeKey.String("settle")
	opDiscard     = semconv.MessagingOperationName("discard")
)

// _outcomes is how many Outcome values have a cached attribute set.
const _outcomes = int(eventbus.OutcomeAbandoned) + 1

// emitAttrs are the cached attributes of emits of one mapped name.
type emitAttrs struct {
	spanName string
	kvs      []attribute.KeyValue // the metric attributes
	start    []trace.SpanStartOption
	sent     []metric.AddOption
}

// pairAttrs are the cached attributes of deliveries of one mapped event
// name to one mapped listener name.
type pairAttrs struct {
	event, listener string // the mapped names
	spanName        string
	kvs             []attribute.KeyValue // messaging.process.duration's attributes
	names           []attribute.KeyValue // the eventbus.* metrics' attributes
	start           []trace.SpanStartOption
	discardName     string // the span name of a delivery that does not run
	discard         []trace.SpanStartOption
	add             []metric.AddOption    // eventbus.retries
	wait            []metric.RecordOption // eventbus.delivery.wait
	duration        []metric.RecordOption // messaging.process.duration
	// outcome holds eventbus.deliveries' options by outcome: [0] for an
	// attempt that is not final, [1] for a final one or a lost delivery.
	// Only failed and panicked differ between the two (FinalKey).
	outcome [2][_outcomes][]metric.AddOption
}

type pairKey struct{ event, listener string }

// cache holds the attribute sets of mapped names.
type cache struct {
	emits cowMap[string, *emitAttrs]
	pairs cowMap[pairKey, *pairAttrs]
}

// emit returns the attributes of emits whose name maps to event.
func (c *cache) emit(event string) *emitAttrs {
	if a, ok := c.emits.load(event); ok {
		return a
	}
	kvs := []attribute.KeyValue{systemKV, opPublish, semconv.MessagingDestinationName(event)}
	a := &emitAttrs{
		spanName: "publish " + event,
		kvs:      kvs,
		start: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(systemKV, opTypeSend, opPublish, semconv.MessagingDestinationName(event))},
		sent: []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(kvs...))},
	}
	a, _ = c.emits.store(event, a, _maxCached)
	return a
}

// pair returns the attributes of deliveries whose event and listener names
// map to event and listener.
func (c *cache) pair(event, listener string) *pairAttrs {
	k := pairKey{event, listener}
	if a, ok := c.pairs.load(k); ok {
		return a
	}
	// messaging.process.duration has the conventions' attributes; the
	// eventbus.* metrics only the names (fewer attributes cost less per
	// measurement).
	names := []attribute.KeyValue{semconv.MessagingDestinationName(event), semconv.MessagingDestinationSubscriptionName(listener)}
	kvs := append([]attribute.KeyValue{systemKV, opProcess}, names...)
	short := metric.WithAttributeSet(attribute.NewSet(names...))
	a := &pairAttrs{
		event:    event,
		listener: listener,
		spanName: "process " + event,
		kvs:      kvs,
		names:    names,
		start: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(consumerKVs(event, listener)...)},
		discardName: "discard " + event,
		discard: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(discardKVs(event, listener)...)},
		add:      []metric.AddOption{short},
		wait:     []metric.RecordOption{short},
		duration: []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kvs...))},
	}
	for i := range _outcomes {
		oc := eventbus.Outcome(i)
		if failure(oc) {
			a.outcome[0][i] = []metric.AddOption{with(names, OutcomeKey.String(oc.String()), FinalKey.Bool(false))}
			a.outcome[1][i] = []metric.AddOption{with(names, OutcomeKey.String(oc.String()), FinalKey.Bool(true))}
			continue
		}
		a.outcome[0][i] = []metric.AddOption{with(names, OutcomeKey.String(oc.String()))}
		a.outcome[1][i] = a.outcome[0][i]
	}
	a, _ = c.pairs.store(k, a, _maxCached)
	return a
}

// consumerKVs are the attributes a consumer span starts with.
func consumerKVs(event, listener string) []attribute.KeyValue {
	return []attribute.KeyValue{systemKV, opTypeProcess, opProcess, semconv.MessagingDestinationName(event),
		semconv.MessagingDestinationSubscriptionName(listener)}
}

// discardKVs are the attributes a span of a delivery that does not run
// starts with.
func discardKVs(event, listener string) []attribute.KeyValue {
	return []attribute.KeyValue{systemKV, opTypeSettle, opDiscard, semconv.MessagingDestinationName(event),
		semconv.MessagingDestinationSubscriptionName(listener)}
}

// failure reports whether o is a failed attempt, the outcomes that carry
// FinalKey.
func failure(o eventbus.Outcome) bool {
	return o == eventbus.OutcomeFailed || o == eventbus.OutcomePanicked
}

// outcomeOpts returns the attribute options of a delivery with outcome o;
// final is the attempt's eventbus.Delivery.Final (ignored unless o is a
// failure).
func (a *pairAttrs) outcomeOpts(o eventbus.Outcome, final bool) []metric.AddOption {
	f := 0
	if final {
		f = 1
	}
	if int(o) < _outcomes {
		return a.outcome[f][o]
	}
	return []metric.AddOption{with(a.names, OutcomeKey.String(o.String()))}
}

// with returns the option of kvs plus extra.
func with(kvs []attribute.KeyValue, extra ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(append(kvs[:len(kvs):len(kvs)], extra...)...))
}
