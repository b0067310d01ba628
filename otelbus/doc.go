// Package otelbus instruments an eventbus.EventManager with OpenTelemetry
// traces and metrics, following the OpenTelemetry semantic conventions for
// messaging (semconv v1.43.0). It lives in its own module so that the core
// eventbus module keeps no OpenTelemetry dependency.
//
// Create an [Observer] with [New] and pass it to eventbus.WithObserver:
//
//	obs, err := otelbus.New(otelbus.WithTracerProvider(tp), otelbus.WithMeterProvider(mp))
//	m := eventbus.New[Order](eventbus.WithObserver(obs))
//	reg, err := obs.Instrument(m, otelbus.ManagerName("orders")) // backlog and worker gauges
//	defer reg.Unregister()
//
// Traces: every Emit, TryEmit and EmitSync is a producer span named
// "publish <event>", a child of the span in the emitter's context, and every
// handler attempt is a consumer span named "process <event>", a child of the
// emit's span (listeners receive the emitter's context values), so an HTTP
// request's trace continues into every listener and into the events those
// listeners emit. Failed attempts set the span's status to Error and record
// the error; a panic is recorded with its stack. A delivery that never runs
// (skipped, dropped, abandoned) is a "discard <event>" span in the emit's
// trace.
//
// Metrics: emits (messaging.client.sent.messages), deliveries by outcome
// (eventbus.deliveries), retries (eventbus.retries), handler duration
// (messaging.process.duration), time waited in the backlog
// (eventbus.delivery.wait), and, for managers passed to Instrument, the
// backlog of every listener and the pool's workers, queued and running
// deliveries. Failed attempts say whether they are final
// (eventbus.delivery.final, [FinalKey]): a final failure is a dead letter,
// one that is not will be retried. Event and listener names reach metric
// attributes and span names through bounded mappings (see
// [WithEventNames]).
//
// [LogHandler] adds the trace and span IDs of a record's context to log
// lines, so that what listeners log joins their spans. Package otelnats
// carries the trace context across NATS with natsbus.
package otelbus
