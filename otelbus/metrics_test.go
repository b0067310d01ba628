package otelbus_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/eventbustest"
	"github.com/eventbus-go/eventbus/otelbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

func outcome(o eventbus.Outcome) attribute.KeyValue { return otelbus.OutcomeKey.String(o.String()) }

var (
	final    = otelbus.FinalKey.Bool(true)
	notFinal = otelbus.FinalKey.Bool(false)
)

func sub(l *eventbus.Listener) attribute.KeyValue {
	return semconv.MessagingDestinationSubscriptionName(otelbus.ListenerName(l))
}

// checkListener checks a listener's delivery counters against its Stats.
func checkListener(t *testing.T, rm metricdata.ResourceMetrics, l *eventbus.Listener) {
	t.Helper()
	s := l.Stats()
	name := otelbus.ListenerName(l)
	d := func(o eventbus.Outcome) int64 { return sum(rm, otelbus.MetricDeliveries, sub(l), outcome(o)) }
	assert.Equal(t, int64(s.Delivered), d(eventbus.OutcomeDelivered), "%s: delivered", name)
	assert.Equal(t, int64(s.Skipped), d(eventbus.OutcomeSkipped), "%s: skipped", name)
	assert.Equal(t, int64(s.Dropped), d(eventbus.OutcomeDropped), "%s: dropped", name)
	assert.Equal(t, int64(s.Retried), sum(rm, otelbus.MetricRetries, sub(l)), "%s: retries", name)
	assert.Equal(t, int64(s.Failed+s.Panicked+s.Retried), d(eventbus.OutcomeFailed)+d(eventbus.OutcomePanicked),
		"%s: failed and panicked attempts are the failed and panicked deliveries plus the attempts retried", name)
	df := func(o eventbus.Outcome, f attribute.KeyValue) int64 {
		return sum(rm, otelbus.MetricDeliveries, sub(l), outcome(o), f)
	}
	assert.Equal(t, int64(s.Failed), df(eventbus.OutcomeFailed, final), "%s: final failures", name)
	assert.Equal(t, int64(s.Panicked), df(eventbus.OutcomePanicked, final), "%s: final panics", name)
	assert.Equal(t, int64(s.Retried), df(eventbus.OutcomeFailed, notFinal)+df(eventbus.OutcomePanicked, notFinal),
		"%s: the attempts that failed and were retried", name)
	for _, o := range []eventbus.Outcome{eventbus.OutcomeDelivered, eventbus.OutcomeSkipped, eventbus.OutcomeDropped, eventbus.OutcomeAbandoned} {
		assert.Equal(t, d(o), sum(rm, otelbus.MetricDeliveries, sub(l), outcome(o), absent(otelbus.FinalKey)), "%s: %s has no %s", name, o, otelbus.FinalKey)
	}
}

// checkBacklogs checks that the backlog gauge reports every listener m
// lists, without Track, and nothing else.
func checkBacklogs(t *testing.T, rm metricdata.ResourceMetrics, m *eventbus.EventManager[int], mgr attribute.KeyValue) {
	t.Helper()
	var total int64
	for _, l := range m.Listeners() {
		n := int64(l.Stats().Pending)
		total += n
		assert.Equal(t, n, sum(rm, otelbus.MetricBacklog, mgr, sub(l)), "backlog of %s", otelbus.ListenerName(l))
		assert.Equal(t, 1, points(rm, otelbus.MetricBacklog, mgr, sub(l)), "one series for %s", otelbus.ListenerName(l))
	}
	assert.Equal(t, total, sum(rm, otelbus.MetricBacklog, mgr), "no other backlog")
	assert.Equal(t, len(m.Listeners()), points(rm, otelbus.MetricBacklog, mgr), "one series per listener")
}

// TestMetricsMatchStats drives every outcome and checks each metric against
// Stats: the EventManager's and each listener's.
func TestMetricsMatchStats(t *testing.T) {
	f := newFixture(t)
	m := eventbus.New[int](eventbus.WithObserver(f.obs), eventbus.WithWorkers(2), eventbus.WithErrorHandler(func(error) {}))
	defer m.Close(context.Background()) //nolint:errcheck // closed below; this is for a failed require
	reg, err := f.obs.Instrument(m, otelbus.ManagerName("orders"))
	require.NoError(t, err)
	defer func() { assert.NoError(t, reg.Unregister()) }()
	ctx := ctxTimeout(t)
	boom := errors.New("boom")

	ok, err := m.RegisterListener("ok", func(context.Context, eventbus.Event[int]) error { return nil })
	require.NoError(t, err)
	bad, err := m.RegisterListener("bad", func(context.Context, eventbus.Event[int]) error { return boom })
	require.NoError(t, err)
	pan, err := m.RegisterListener("panic", func(context.Context, eventbus.Event[int]) error { panic("kaboom") })
	require.NoError(t, err)
	var flakyRuns atomic.Int64
	flaky, err := m.RegisterListener("flaky", func(context.Context, eventbus.Event[int]) error {
		if flakyRuns.Add(1)%2 == 1 {
			return boom // every first attempt fails, its retry succeeds
		}
		return nil
	}, eventbus.Retry(3, time.Millisecond, time.Millisecond), eventbus.Ordered())
	require.NoError(t, err)
	hopeless, err := m.RegisterListener("hopeless", func(context.Context, eventbus.Event[int]) error { return boom },
		eventbus.Retry(2, time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	all := []*eventbus.Listener{ok, bad, pan, flaky, hopeless}

	// Phase 1: delivered, failed, panicked, retried, refused; sync and pool.
	for i := range 3 {
		require.NoError(t, m.Emit(ctx, "ok", i))
	}
	require.NoError(t, m.Emit(ctx, "bad", 0))
	require.NoError(t, m.Emit(ctx, "panic", 0))
	require.NoError(t, m.Emit(ctx, "flaky", 0))
	require.NoError(t, m.Emit(ctx, "flaky", 1))
	require.NoError(t, m.Emit(ctx, "hopeless", 0))
	require.NoError(t, m.Emit(ctx, "nobody", 0), "matches no listener: emitted, delivers nothing")
	require.NoError(t, m.EmitSync(ctx, "ok", 9))
	require.Error(t, m.EmitSync(ctx, "bad", 9))
	require.ErrorIs(t, m.Emit(ctx, "not valid", 0), eventbus.ErrInvalidName)
	require.NoError(t, m.Flush(ctx))

	// Phase 2: a dropped and a skipped delivery; the gauges while two
	// listeners hold a worker each and have a backlog.
	dropBlock, releaseDrop := eventbustest.Block[int](t)
	drop, err := m.RegisterListener("drop", dropBlock.Handle, eventbus.Ordered(), eventbus.QueueSize(1), eventbus.OnOverflow(eventbus.OverflowDropNewest))
	require.NoError(t, err)
	skipBlock, releaseSkip := eventbustest.Block[int](t)
	skip, err := m.RegisterListener("skip", skipBlock.Handle, eventbus.Ordered())
	require.NoError(t, err)
	all = append(all, drop, skip)
	require.NoError(t, m.Emit(ctx, "drop", 0))
	dropBlock.WaitEntered(ctx, 1)
	require.NoError(t, m.Emit(ctx, "drop", 1)) // queued
	require.NoError(t, m.Emit(ctx, "drop", 2)) // dropped
	require.NoError(t, m.Emit(ctx, "skip", 0))
	skipBlock.WaitEntered(ctx, 1)
	require.NoError(t, m.Emit(ctx, "skip", 1))
	require.NoError(t, m.Emit(ctx, "skip", 2))

	rm := f.collect()
	s := m.Stats()
	mgr := otelbus.ManagerKey.String("orders")
	assert.Equal(t, 2, s.Running, "precondition: both blocked")
	assert.Equal(t, int64(s.Workers), sum(rm, otelbus.MetricWorkers, mgr), "workers")
	assert.Equal(t, int64(s.Stalled), sum(rm, otelbus.MetricStalled, mgr), "stalled workers")
	assert.Equal(t, int64(s.Running), sum(rm, otelbus.MetricRunning, mgr), "running")
	assert.Equal(t, int64(s.Queued), sum(rm, otelbus.MetricQueued, mgr), "queued")
	checkBacklogs(t, rm, m, mgr)
	assert.Equal(t, int64(1), sum(rm, otelbus.MetricBacklog, sub(drop)))
	assert.Equal(t, int64(2), sum(rm, otelbus.MetricBacklog, sub(skip)))

	skip.Unregister() // its two queued deliveries are skipped
	rm = f.collect()
	assert.Zero(t, points(rm, otelbus.MetricBacklog, sub(skip)), "an unregistered listener leaves the gauge")
	checkBacklogs(t, rm, m, mgr)
	releaseSkip()
	releaseDrop()
	require.NoError(t, m.Flush(ctx))

	// Phase 3: Close gives up on a blocked listener and abandons its
	// backlog.
	hang, releaseHang := eventbustest.Block[int](t)
	defer releaseHang()
	abandon, err := m.RegisterListener("abandon", hang.Handle, eventbus.Ordered())
	require.NoError(t, err)
	all = append(all, abandon)
	require.NoError(t, m.Emit(ctx, "abandon", 0))
	hang.WaitEntered(ctx, 1)
	require.NoError(t, m.Emit(ctx, "abandon", 1))
	require.NoError(t, m.Emit(ctx, "abandon", 2))
	expired, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, m.Close(expired), context.Canceled)
	require.NoError(t, m.Close(ctx), "waits for the workers, the cancelled handler included")

	rm = f.collect()
	s = m.Stats()
	require.NotZero(t, s.Abandoned, "precondition")
	require.NotZero(t, s.Dropped, "precondition")
	require.NotZero(t, s.Skipped, "precondition")
	require.NotZero(t, s.Retried, "precondition")
	require.NotZero(t, s.Rejected, "precondition")
	d := func(o eventbus.Outcome) int64 { return sum(rm, otelbus.MetricDeliveries, outcome(o)) }

	assert.Equal(t, int64(s.Emitted), sum(rm, otelbus.MetricSent, absent(semconv.ErrorTypeKey)), "emitted")
	assert.Equal(t, int64(s.Rejected), sum(rm, otelbus.MetricSent)-sum(rm, otelbus.MetricSent, absent(semconv.ErrorTypeKey)), "refused emits carry error.type")
	assert.Equal(t, int64(s.Delivered), d(eventbus.OutcomeDelivered), "delivered")
	assert.Equal(t, int64(s.Skipped), d(eventbus.OutcomeSkipped), "skipped")
	assert.Equal(t, int64(s.Dropped), d(eventbus.OutcomeDropped), "dropped")
	assert.Equal(t, int64(s.Abandoned), d(eventbus.OutcomeAbandoned), "abandoned")
	assert.Equal(t, int64(s.Retried), sum(rm, otelbus.MetricRetries), "retries")
	assert.Equal(t, int64(s.Panicked), d(eventbus.OutcomePanicked), "panicked: no panic was retried")
	assert.Equal(t, int64(s.Failed+s.Retried), d(eventbus.OutcomeFailed), "failed attempts: failed deliveries plus the attempts retried")
	assert.Equal(t, int64(s.Failed), sum(rm, otelbus.MetricDeliveries, outcome(eventbus.OutcomeFailed), final), "final failures")
	assert.Equal(t, int64(s.Panicked), sum(rm, otelbus.MetricDeliveries, outcome(eventbus.OutcomePanicked), final), "final panics")
	assert.Equal(t, int64(s.Retried), sum(rm, otelbus.MetricDeliveries, notFinal), "attempts retried")
	assert.Equal(t, int64(s.Matched), d(eventbus.OutcomeDelivered)+d(eventbus.OutcomeFailed)+d(eventbus.OutcomePanicked)+
		d(eventbus.OutcomeSkipped)+d(eventbus.OutcomeDropped)+d(eventbus.OutcomeAbandoned)-int64(s.Retried), "every delivery is counted once, besides its retries")
	attempts := s.Delivered + s.Failed + s.Panicked + s.Retried
	assert.Equal(t, attempts, count(rm, otelbus.MetricDuration), "one duration per attempt")
	assert.Equal(t, attempts-s.Retried-2, count(rm, otelbus.MetricWait), "one wait per pool delivery that ran, at its first attempt (not the two EmitSync ones)")
	assert.Equal(t, uint64(s.Failed+s.Panicked+s.Retried), count(rm, otelbus.MetricDuration, semconv.ErrorTypeKey.String("*errors.errorString"))+
		count(rm, otelbus.MetricDuration, semconv.ErrorTypeKey.String("*eventbus.PanicError"))+
		count(rm, otelbus.MetricDuration, semconv.ErrorTypeKey.String("context.canceledError")), "failed attempts carry error.type")
	for _, l := range all {
		checkListener(t, rm, l)
	}
	assert.Equal(t, int64(1), sum(rm, otelbus.MetricSent, semconv.MessagingDestinationName(otelbus.Other))+
		sum(rm, otelbus.MetricSent, semconv.MessagingDestinationName("not valid")), "the refused emit, by name")

	require.NoError(t, reg.Unregister())
	rm = f.collect()
	assert.Zero(t, sum(rm, otelbus.MetricWorkers, mgr), "no gauges once unregistered")
	assert.ErrorIs(t, reg.Track(ok), otelbus.ErrUnregistered)
}

func TestInstrumentRefusesBadInput(t *testing.T) {
	f := newFixture(t)
	_, err := f.obs.Instrument(nil)
	assert.ErrorIs(t, err, otelbus.ErrNilManager)
	var m *eventbus.EventManager[int]
	_, err = f.obs.Instrument(m)
	assert.ErrorIs(t, err, otelbus.ErrNilManager, "a typed nil")
	_, err = f.obs.Instrument(eventbus.New[int](), otelbus.ManagerName(""))
	assert.ErrorIs(t, err, otelbus.ErrInvalidOption)

	reg, err := f.obs.Instrument(eventbus.New[int]())
	require.NoError(t, err)
	assert.ErrorIs(t, reg.Track(nil), otelbus.ErrNilListener)
	assert.ErrorIs(t, reg.Untrack(nil), otelbus.ErrNilListener)
	require.NoError(t, reg.Unregister())
	require.NoError(t, reg.Unregister(), "idempotent")

	_, err = otelbus.New(otelbus.WithTracerProvider(nil))
	assert.ErrorIs(t, err, otelbus.ErrInvalidOption)
	_, err = otelbus.New(otelbus.WithMeterProvider(nil))
	assert.ErrorIs(t, err, otelbus.ErrInvalidOption)
	_, err = otelbus.New(otelbus.WithEventNames(nil))
	assert.ErrorIs(t, err, otelbus.ErrInvalidOption)
	_, err = otelbus.New(otelbus.WithListenerNames(nil))
	assert.ErrorIs(t, err, otelbus.ErrInvalidOption)
}

// EmitSyncTo to a listener that is unregistered, or a Once listener that
// has fired, returns ErrUnregistered: the event was emitted and its
// delivery skipped (Stats counts Emitted and Skipped), not refused. Its
// send is counted without error.type and its publish span has no Error
// status. (otelbus counted it as refused, so the sent metric no longer
// matched Stats.Emitted and Stats.Rejected.)
func TestEmitSyncToASkippedListenerIsNotRefused(t *testing.T) {
	f := newFixture(t)
	m := newManager[int](t, f)
	ctx := ctxTimeout(t)
	once, err := m.RegisterListener("x", func(context.Context, eventbus.Event[int]) error { return nil }, eventbus.Once())
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(ctx, "x", 1))
	require.NoError(t, m.EmitSync(ctx, "x", 2)) // no listener left: emitted, matched by none
	err = m.EmitSyncTo(ctx, once, "x", 3)
	require.ErrorIs(t, err, eventbus.ErrUnregistered)
	require.Error(t, m.EmitSync(ctx, "x..y", 4), "one refusal, for contrast")

	s := m.Stats()
	require.Equal(t, uint64(3), s.Emitted)
	require.Equal(t, uint64(1), s.Rejected)
	require.Equal(t, uint64(1), s.Skipped)
	rm := f.collect()
	assert.Equal(t, int64(s.Emitted), sum(rm, otelbus.MetricSent, absent(semconv.ErrorTypeKey)))
	assert.Equal(t, int64(s.Rejected), sum(rm, otelbus.MetricSent)-sum(rm, otelbus.MetricSent, absent(semconv.ErrorTypeKey)))
	assert.Equal(t, int64(s.Skipped), sum(rm, otelbus.MetricDeliveries, outcome(eventbus.OutcomeSkipped)))
	errored := 0
	for _, sp := range f.spans()["publish x"] {
		if sp.Status.Code == codes.Error {
			errored++
		}
	}
	assert.Zero(t, errored, "no publish span of x is an error")
}

// A delivery whose middleware finds the listener unregistered (Unregister
// returned while it ran) and does not call the handler is skipped: no
// attempt ran, so no duration is recorded, and its process span ends with
// eventbus.outcome skipped and no Error status. (It was recorded as a
// successful attempt: the duration histogram counted one more than
// Delivered + Failed + Panicked + Retried.)
func TestDeliverySkippedInMiddlewareIsNoAttempt(t *testing.T) {
	f := newFixture(t)
	m := newManager[int](t, f)
	ctx := ctxTimeout(t)
	in, release := make(chan struct{}), make(chan struct{})
	var ran atomic.Int64
	l, err := m.RegisterListener("x", func(context.Context, eventbus.Event[int]) error {
		ran.Add(1)
		return nil
	}, eventbus.Use(func(next eventbus.Handler[int]) eventbus.Handler[int] {
		return func(ctx context.Context, e eventbus.Event[int]) error {
			close(in)
			<-release
			return next(ctx, e)
		}
	}))
	require.NoError(t, err)
	require.NoError(t, m.Emit(ctx, "x", 1))
	<-in
	l.Unregister() // returns while the middleware runs
	close(release)
	require.NoError(t, m.Flush(ctx))

	require.Zero(t, ran.Load())
	s := m.Stats()
	require.Equal(t, uint64(1), s.Skipped)
	rm := f.collect()
	assert.Equal(t, s.Delivered+s.Failed+s.Panicked+s.Retried, count(rm, otelbus.MetricDuration))
	checkListener(t, rm, l)
	sp := one(t, f.spans(), "process x")
	assert.NotEqual(t, codes.Error, sp.Status.Code)
	v, ok := attr(sp.Attributes, otelbus.OutcomeKey)
	assert.True(t, ok, "the process span says it was skipped")
	assert.Equal(t, eventbus.OutcomeSkipped.String(), v.AsString())
}
