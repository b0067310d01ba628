package otelbus

import (
	"context"
	"errors"
	"time"

	"github.com/eventbus-go/eventbus"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// ScopeName is the instrumentation scope of the tracer and meter.
const ScopeName = "github.com/eventbus-go/eventbus/otelbus"

// Observer is an eventbus.Observer that turns emits and deliveries into
// OpenTelemetry spans and metrics. Create it with [New]; pass it to
// eventbus.WithObserver. One Observer may observe several EventManagers.
// Its methods are safe for concurrent use, do not block, and are called by
// the EventManager: user code need not call them.
//
// Spans: an emit is a producer span "publish <event>" whose parent is the
// span in the emitter's context (none: a new trace), ended when the emit
// returns; a handler attempt is a consumer span "process <event>", a child
// of the emit's span, ended when the handler returns. A handler that calls
// runtime.Goexit never ends its span. Deliveries that never run (skipped,
// dropped, abandoned) have no span: they are counted in eventbus.deliveries.
type Observer struct {
	cfg    config
	tracer trace.Tracer
	in     instruments
	cache  cache
}

var _ eventbus.Observer = (*Observer)(nil)

// New returns an Observer configured by opts. It fails with an error
// matching ErrInvalidOption for a nil option value, or with the meter's
// error if an instrument cannot be created.
func New(opts ...Option) (*Observer, error) {
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, err
	}
	o := &Observer{
		cfg:    cfg,
		tracer: cfg.tp.Tracer(ScopeName),
	}
	o.in, err = newInstruments(cfg.mp.Meter(ScopeName))
	if err != nil {
		return nil, err
	}
	return o, nil
}

// Emit starts the producer span of an emit; see eventbus.Observer.
func (o *Observer) Emit(ctx context.Context, name string) (context.Context, func(error)) {
	a := o.cache.emit(o.cfg.events(name))
	ctx, span := o.tracer.Start(ctx, a.spanName, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(systemKV, opTypeSend, opPublish, semconv.MessagingDestinationName(name)))
	return ctx, func(err error) {
		if err != nil && refused(err) {
			et := semconv.ErrorType(err)
			o.in.sent.Add(ctx, 1, with(a.kvs, et))
			span.SetAttributes(et)
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else {
			o.in.sent.Add(ctx, 1, a.sent)
		}
		span.End()
	}
}

// refused reports whether an emit's error means the event was refused,
// rather than (for EmitSync) delivered to listeners that failed: EmitSync
// returns their *ListenerError as is, or several joined.
func refused(err error) bool {
	switch e := err.(type) {
	case *eventbus.ListenerError:
		return false
	case interface{ Unwrap() []error }:
		for _, x := range e.Unwrap() {
			if _, ok := x.(*eventbus.ListenerError); !ok {
				return true
			}
		}
		return false
	}
	return true
}

// Start starts the consumer span of a handler attempt; see
// eventbus.Observer.
func (o *Observer) Start(ctx context.Context, d eventbus.Delivery) (context.Context, func(eventbus.Outcome, error)) {
	start := time.Now()
	lname := listenerName(d.Listener)
	a := o.cache.pair(o.cfg.events(d.Event), o.cfg.listeners(lname))
	if d.Attempt > 0 {
		o.in.retries.Add(ctx, 1, a.base)
	} else if !d.Accepted.IsZero() {
		o.in.wait.Record(ctx, start.Sub(d.Accepted).Seconds(), a.base)
	}
	pattern := ""
	if d.Listener != nil {
		pattern = d.Listener.Pattern()
	}
	ctx, span := o.tracer.Start(ctx, a.spanName, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(start),
		trace.WithAttributes(systemKV, opTypeProcess, opProcess, semconv.MessagingDestinationName(d.Event),
			semconv.MessagingDestinationSubscriptionName(lname), semconv.MessagingDestinationTemplate(pattern),
			AttemptKey.Int(d.Attempt+1)))
	return ctx, func(oc eventbus.Outcome, err error) {
		end := time.Now()
		o.in.deliveries.Add(ctx, 1, a.outcomeOpt(oc))
		if oc == eventbus.OutcomeDelivered || err == nil {
			o.in.duration.Record(ctx, end.Sub(start).Seconds(), a.base)
			span.End(trace.WithTimestamp(end))
			return
		}
		et := semconv.ErrorType(err)
		o.in.duration.Record(ctx, end.Sub(start).Seconds(), with(a.kvs, et))
		span.SetAttributes(et, OutcomeKey.String(oc.String()))
		var pe *eventbus.PanicError
		if errors.As(err, &pe) {
			span.RecordError(err, trace.WithAttributes(semconv.ExceptionStacktrace(string(pe.Stack))))
		} else {
			span.RecordError(err)
		}
		span.SetStatus(codes.Error, err.Error())
		span.End(trace.WithTimestamp(end))
	}
}

// Lost counts a delivery that does not run; see eventbus.Observer.
func (o *Observer) Lost(d eventbus.Delivery, oc eventbus.Outcome) {
	a := o.cache.pair(o.cfg.events(d.Event), o.cfg.listeners(listenerName(d.Listener)))
	ctx := context.Background()
	if d.Attempt > 0 {
		o.in.retries.Add(ctx, 1, a.base)
	}
	o.in.deliveries.Add(ctx, 1, a.outcomeOpt(oc))
}
