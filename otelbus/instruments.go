package otelbus

import (
	"errors"

	"go.opentelemetry.io/otel/metric"
)

// Instrument names. The messaging.* ones are the semantic conventions'; the
// eventbus.* ones have no convention.
const (
	MetricSent       = "messaging.client.sent.messages" // counter: emits, rejected ones with error.type
	MetricDeliveries = "eventbus.deliveries"            // counter: handler attempts and lost deliveries, by eventbus.outcome (and eventbus.delivery.final)
	MetricRetries    = "eventbus.retries"               // counter: deliveries run (or lost) again after a failed attempt
	MetricDuration   = "messaging.process.duration"     // histogram, seconds: handler attempts
	MetricWait       = "eventbus.delivery.wait"         // histogram, seconds: accept to first attempt, pool only
	MetricBacklog    = "eventbus.listener.backlog"      // up-down counter: each listener's Pending
	MetricWorkers    = "eventbus.workers"               // up-down counter: Stats.Workers
	MetricStalled    = "eventbus.workers.stalled"       // up-down counter: Stats.Stalled
	MetricQueued     = "eventbus.deliveries.queued"     // up-down counter: Stats.Queued
	MetricRunning    = "eventbus.deliveries.running"    // up-down counter: Stats.Running
)

// _durationBuckets suit in-process handlers: from 10 µs to 10 s.
var _durationBuckets = []float64{
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

type instruments struct {
	sent, deliveries, retries                  metric.Int64Counter
	duration, wait                             metric.Float64Histogram
	backlog, workers, stalled, queued, running metric.Int64ObservableUpDownCounter
}

func newInstruments(m metric.Meter) (instruments, error) {
	var in instruments
	var err, e error
	in.sent, e = m.Int64Counter(MetricSent, metric.WithUnit("{message}"),
		metric.WithDescription("Events emitted (Emit, TryEmit, EmitSync); those refused carry error.type."))
	err = errors.Join(err, e)
	in.deliveries, e = m.Int64Counter(MetricDeliveries, metric.WithUnit("{delivery}"),
		metric.WithDescription("Handler attempts by outcome (delivered, failed, panicked), and deliveries that did not run (skipped, dropped, abandoned)."))
	err = errors.Join(err, e)
	in.retries, e = m.Int64Counter(MetricRetries, metric.WithUnit("{delivery}"),
		metric.WithDescription("Deliveries run again (or lost while waiting to be) after a failed attempt."))
	err = errors.Join(err, e)
	in.duration, e = m.Float64Histogram(MetricDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of processing operation: one handler attempt."),
		metric.WithExplicitBucketBoundaries(_durationBuckets...))
	err = errors.Join(err, e)
	in.wait, e = m.Float64Histogram(MetricWait, metric.WithUnit("s"),
		metric.WithDescription("Time from Emit accepting a delivery to its first attempt starting (worker pool only)."),
		metric.WithExplicitBucketBoundaries(_durationBuckets...))
	err = errors.Join(err, e)
	in.backlog, e = m.Int64ObservableUpDownCounter(MetricBacklog, metric.WithUnit("{delivery}"),
		metric.WithDescription("Deliveries waiting for a listener, retries waiting out a backoff included."))
	err = errors.Join(err, e)
	in.workers, e = m.Int64ObservableUpDownCounter(MetricWorkers, metric.WithUnit("{worker}"),
		metric.WithDescription("Worker goroutines, stalled ones included."))
	err = errors.Join(err, e)
	in.stalled, e = m.Int64ObservableUpDownCounter(MetricStalled, metric.WithUnit("{worker}"),
		metric.WithDescription("Workers whose handler has run long enough to be replaced."))
	err = errors.Join(err, e)
	in.queued, e = m.Int64ObservableUpDownCounter(MetricQueued, metric.WithUnit("{delivery}"),
		metric.WithDescription("Deliveries waiting on the pool, retries waiting out a backoff included."))
	err = errors.Join(err, e)
	in.running, e = m.Int64ObservableUpDownCounter(MetricRunning, metric.WithUnit("{delivery}"),
		metric.WithDescription("Deliveries running on the pool."))
	err = errors.Join(err, e)
	return in, err
}
