package otelbus_test

import (
	"context"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/eventbustest"
	"github.com/eventbus-go/eventbus/otelbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// backlogged registers an Ordered listener named name on m, blocks it on
// its first delivery and queues n more behind it, so that its Pending is n.
func backlogged(t *testing.T, m *eventbus.EventManager[int], name string, n int) *eventbus.Listener {
	t.Helper()
	ctx := ctxTimeout(t)
	b, release := eventbustest.Block[int](t)
	l, err := m.RegisterListener(name, b.Handle, eventbus.Name(name), eventbus.Ordered())
	require.NoError(t, err)
	for i := range n + 1 {
		require.NoError(t, m.Emit(ctx, name, i))
		if i == 0 {
			b.WaitEntered(ctx, 1)
		}
	}
	require.Equal(t, n, l.Stats().Pending, "precondition: %s's backlog", name)
	t.Cleanup(release)
	return l
}

// Every listener's backlog is reported without Track, under its mapped
// name: listeners that map to the same name are summed, so the gauge has no
// more series than the mapping has values.
func TestBacklogOfEveryListenerIsBounded(t *testing.T) {
	f := newFixture(t, otelbus.WithListenerNames(otelbus.Patterns("billing")))
	m := newManager[int](t, f, eventbus.WithWorkers(4))
	reg, err := f.obs.Instrument(m)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, reg.Unregister()) })

	billing := backlogged(t, m, "billing", 2)
	mail1 := backlogged(t, m, "mail.1", 3)
	mail2 := backlogged(t, m, "mail.2", 1)
	idle, err := m.RegisterListener("idle", func(context.Context, eventbus.Event[int]) error { return nil }, eventbus.Name("idle"))
	require.NoError(t, err)

	rm := f.collect()
	billingKV := semconv.MessagingDestinationSubscriptionName("billing")
	other := semconv.MessagingDestinationSubscriptionName(otelbus.Other)
	assert.Equal(t, int64(billing.Stats().Pending), sum(rm, otelbus.MetricBacklog, billingKV))
	assert.Equal(t, int64(mail1.Stats().Pending+mail2.Stats().Pending+idle.Stats().Pending), sum(rm, otelbus.MetricBacklog, other),
		"the listeners the mapping does not keep, summed")
	assert.Equal(t, 2, points(rm, otelbus.MetricBacklog), "two series: billing and "+otelbus.Other)
	assert.Equal(t, int64(6), sum(rm, otelbus.MetricBacklog))
	assert.Equal(t, int64(m.Stats().Queued), sum(rm, otelbus.MetricBacklog), "the backlogs add up to the pool's queue")
}

// statsOnly is a StatsSource that does not list its listeners.
type statsOnly struct{ m *eventbus.EventManager[int] }

func (s statsOnly) Stats() eventbus.Stats { return s.m.Stats() }

// Track still reports the listeners of a StatsSource that does not list
// them, and a listener both listed and tracked is counted once.
func TestTrackStillWorks(t *testing.T) {
	f := newFixture(t)
	m := newManager[int](t, f, eventbus.WithWorkers(4))
	a := backlogged(t, m, "a", 2)
	b := backlogged(t, m, "b", 1)
	subA := semconv.MessagingDestinationSubscriptionName("a")
	subB := semconv.MessagingDestinationSubscriptionName("b")
	x, y := otelbus.ManagerKey.String("listed"), otelbus.ManagerKey.String("stats-only")

	listed, err := f.obs.Instrument(m, otelbus.ManagerName("listed"))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, listed.Unregister()) })
	require.NoError(t, listed.Track(a)) // deprecated: the path this tests
	hidden, err := f.obs.Instrument(statsOnly{m}, otelbus.ManagerName("stats-only"))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, hidden.Unregister()) })
	require.NoError(t, hidden.Track(b)) // deprecated: the path this tests

	rm := f.collect()
	assert.Equal(t, int64(2), sum(rm, otelbus.MetricBacklog, x, subA), "listed and tracked: counted once")
	assert.Equal(t, int64(1), sum(rm, otelbus.MetricBacklog, x, subB), "listed")
	assert.Equal(t, 2, points(rm, otelbus.MetricBacklog, x))
	assert.Equal(t, int64(1), sum(rm, otelbus.MetricBacklog, y, subB), "tracked")
	assert.Equal(t, 1, points(rm, otelbus.MetricBacklog, y), "a source that does not list: only what is tracked")
	assert.Equal(t, int64(m.Stats().Workers), sum(rm, otelbus.MetricWorkers, y), "its gauges are reported")

	require.NoError(t, listed.Untrack(a)) // deprecated: the path this tests
	require.NoError(t, hidden.Untrack(b)) // deprecated: the path this tests
	rm = f.collect()
	assert.Equal(t, int64(2), sum(rm, otelbus.MetricBacklog, x, subA), "untracked, still listed")
	assert.Zero(t, points(rm, otelbus.MetricBacklog, y), "untracked, not listed")
}

// Two instrumented EventManagers report their listeners under their own
// manager names.
func TestBacklogPerManager(t *testing.T) {
	f := newFixture(t)
	m1 := newManager[int](t, f, eventbus.WithWorkers(2))
	m2 := newManager[int](t, f, eventbus.WithWorkers(2))
	for name, m := range map[string]*eventbus.EventManager[int]{"one": m1, "two": m2} {
		reg, err := f.obs.Instrument(m, otelbus.ManagerName(name))
		require.NoError(t, err)
		t.Cleanup(func() { assert.NoError(t, reg.Unregister()) })
	}
	backlogged(t, m1, "a", 1)
	backlogged(t, m2, "a", 3)
	sub := semconv.MessagingDestinationSubscriptionName("a")

	rm := f.collect()
	assert.Equal(t, int64(1), sum(rm, otelbus.MetricBacklog, otelbus.ManagerKey.String("one"), sub))
	assert.Equal(t, int64(3), sum(rm, otelbus.MetricBacklog, otelbus.ManagerKey.String("two"), sub))
	assert.Equal(t, 2, points(rm, otelbus.MetricBacklog))
}
