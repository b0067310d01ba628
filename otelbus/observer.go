package otelbus

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/eventbus-go/eventbus"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
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
// of the emit's span, ended when the handler returns. A pool attempt that
// ends in runtime.Goexit (t.FailNow in a test listener) is a failed attempt,
// in its span and in every metric, as in Stats (the EventManager reports it
// to done as OutcomeFailed); an EmitSync listener that calls it ends the
// caller's goroutine, and neither its span nor the emit's ends, nor is it
// counted, as Stats do not count it. A delivery that never runs (skipped,
// dropped, abandoned; see eventbus.Observer.Lost) is an internal span
// "discard <event>", a child of the emit's span (so in the emit's trace),
// that starts and ends when the delivery is given up, with status Error for
// dropped and abandoned ones.
//
// Consumer spans carry eventbus.delivery.final ([FinalKey]), and so do the
// eventbus.deliveries points of failed and panicked attempts, so that final
// failures (dead letters) are told from retried ones. Measurements of a
// delivery are made with its span's context, so that exemplars point at it.
type Observer struct {
	cfg    config
	tracer trace.Tracer
	in     instruments
	cache  cache
	emits  sync.Pool // of *emitting
	starts sync.Pool // of *processing
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
	// The states keep their done function bound, so that returning it
	// allocates nothing.
	o.emits.New = func() any {
		e := &emitting{o: o}
		e.done = e.finish
		return e
	}
	o.starts.New = func() any {
		p := &processing{o: o}
		p.done = p.finish
		return p
	}
	return o, nil
}

// emitting is an emit in progress.
type emitting struct {
	o    *Observer
	ctx  context.Context
	span trace.Span
	a    *emitAttrs
	done func(error) // finish
}

// Emit starts the producer span of an emit; see eventbus.Observer.
func (o *Observer) Emit(ctx context.Context, name string) (context.Context, func(error)) {
	mapped := o.cfg.events(name)
	a := o.cache.emit(mapped)
	opts := a.start
	if mapped != name {
		opts = []trace.SpanStartOption{opts[0], trace.WithAttributes(systemKV, opTypeSend, opPublish, semconv.MessagingDestinationName(name))}
	}
	ctx, span := o.tracer.Start(ctx, a.spanName, opts...)
	e := o.emits.Get().(*emitting)
	e.ctx, e.span, e.a = ctx, span, a
	return ctx, e.done
}

func (e *emitting) finish(err error) {
	o, ctx, span, a := e.o, e.ctx, e.span, e.a
	e.ctx, e.span, e.a = nil, nil, nil
	o.emits.Put(e)
	if err == nil || !refused(err) {
		o.in.sent.Add(ctx, 1, a.sent...)
		span.End()
		return
	}
	et := semconv.ErrorType(err)
	o.in.sent.Add(ctx, 1, with(a.kvs, et))
	span.SetAttributes(et)
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	span.End()
}

// refused reports whether an emit's error means the event was refused,
// rather than (for EmitSync) delivered to listeners that failed: EmitSync
// returns their *ListenerError as is, or several joined. EmitSyncTo's
// ErrUnregistered is no refusal either: the event was emitted, and its
// delivery skipped (Stats counts it in Emitted and Skipped).
func refused(err error) bool {
	if errors.Is(err, eventbus.ErrUnregistered) {
		return false
	}
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

// processing is a handler attempt in progress.
type processing struct {
	o     *Observer
	ctx   context.Context
	span  trace.Span
	a     *pairAttrs
	start time.Time
	final bool                          // eventbus.Delivery.Final
	done  func(eventbus.Outcome, error) // finish
}

// Start starts the consumer span of a handler attempt; see
// eventbus.Observer.
func (o *Observer) Start(ctx context.Context, d eventbus.Delivery) (context.Context, func(eventbus.Outcome, error)) {
	start := time.Now()
	lname := listenerName(d.Listener)
	event, listener := o.cfg.events(d.Event), o.cfg.listeners(lname)
	a := o.cache.pair(event, listener)
	opts := a.start
	if event != d.Event || listener != lname {
		opts = []trace.SpanStartOption{opts[0], trace.WithAttributes(consumerKVs(d.Event, lname)...)}
	}
	ctx, span := o.tracer.Start(ctx, a.spanName, opts...)
	if span.IsRecording() {
		span.SetAttributes(semconv.MessagingDestinationTemplate(pattern(d.Listener)), AttemptKey.Int(d.Attempt+1), FinalKey.Bool(d.Final))
	}
	// Measured with the span's context, so that exemplars point at it.
	if d.Attempt > 0 {
		o.in.retries.Add(ctx, 1, a.add...)
	} else if !d.Accepted.IsZero() {
		o.in.wait.Record(ctx, start.Sub(d.Accepted).Seconds(), a.wait...)
	}
	p := o.starts.Get().(*processing)
	p.ctx, p.span, p.a, p.start, p.final = ctx, span, a, start, d.Final
	return ctx, p.done
}

func (p *processing) finish(oc eventbus.Outcome, err error) {
	o, ctx, span, a, start, final := p.o, p.ctx, p.span, p.a, p.start, p.final
	p.ctx, p.span, p.a = nil, nil, nil
	o.starts.Put(p)
	took := time.Since(start).Seconds()
	o.in.deliveries.Add(ctx, 1, a.outcomeOpts(oc, final)...)
	if oc == eventbus.OutcomeSkipped {
		// Its middleware found the listener unregistered and did not run
		// the handler: no attempt, so no duration (Stats counts it
		// Skipped, not Delivered).
		span.SetAttributes(OutcomeKey.String(oc.String()))
		span.End()
		return
	}
	if err == nil {
		o.in.duration.Record(ctx, took, a.duration...)
		span.End()
		return
	}
	et := semconv.ErrorType(err)
	o.in.duration.Record(ctx, took, metric.RecordOption(with(a.kvs, et)))
	span.SetAttributes(et, OutcomeKey.String(oc.String()))
	var pe *eventbus.PanicError
	if errors.As(err, &pe) {
		span.RecordError(err, trace.WithAttributes(semconv.ExceptionStacktrace(string(pe.Stack))))
	} else {
		span.RecordError(err)
	}
	span.SetStatus(codes.Error, err.Error())
	span.End()
}

// Lost records a delivery that does not run (see eventbus.Observer): a
// "discard <event>" span, a child of the span in ctx (the emit's, so in the
// emit's trace; a new trace if ctx has none), that starts and ends at once,
// and the delivery in eventbus.deliveries (and eventbus.retries when an
// earlier attempt failed), measured with the span's context.
func (o *Observer) Lost(ctx context.Context, d eventbus.Delivery, oc eventbus.Outcome) {
	lname := listenerName(d.Listener)
	event, listener := o.cfg.events(d.Event), o.cfg.listeners(lname)
	a := o.cache.pair(event, listener)
	opts := a.discard
	if event != d.Event || listener != lname {
		opts = []trace.SpanStartOption{opts[0], trace.WithAttributes(discardKVs(d.Event, lname)...)}
	}
	ctx, span := o.tracer.Start(ctx, a.discardName, opts...)
	if span.IsRecording() {
		span.SetAttributes(semconv.MessagingDestinationTemplate(pattern(d.Listener)), AttemptKey.Int(d.Attempt+1), OutcomeKey.String(oc.String()))
		if oc != eventbus.OutcomeSkipped {
			// Dropped and abandoned deliveries are losses; skipped ones
			// (Unregister, a Once listener that had fired) are by design.
			span.SetAttributes(semconv.ErrorTypeKey.String(oc.String()))
			span.SetStatus(codes.Error, "delivery "+oc.String())
		}
	}
	span.End()
	if d.Attempt > 0 {
		o.in.retries.Add(ctx, 1, a.add...)
	}
	o.in.deliveries.Add(ctx, 1, a.outcomeOpts(oc, true)...)
}

// pattern is the pattern l was registered with ("" for nil).
func pattern(l *eventbus.Listener) string {
	if l == nil {
		return ""
	}
	return l.Pattern()
}
