package eventbus_test

import (
	"context"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// blockingLostObserver holds Observer.Lost for a dropped delivery until
// released, so that a test can look at the counters meanwhile.
type blockingLostObserver struct {
	in, out chan struct{}
}

func (o blockingLostObserver) Emit(ctx context.Context, _ string) (context.Context, func(error)) {
	return ctx, func(error) {}
}

func (o blockingLostObserver) Start(ctx context.Context, _ eventbus.Delivery) (context.Context, func(eventbus.Outcome, error)) {
	return ctx, func(eventbus.Outcome, error) {}
}

func (o blockingLostObserver) Lost(_ context.Context, _ eventbus.Delivery, oc eventbus.Outcome) {
	if oc == eventbus.OutcomeDropped {
		o.in <- struct{}{}
		<-o.out
	}
}

// A drop is counted for the listener when it is counted for the manager,
// before the Observer hears of it: a Flush that returns after the drop,
// or a Stats read, finds both.
func TestDropIsCountedForTheListenerWithTheManager(t *testing.T) {
	o := blockingLostObserver{in: make(chan struct{}), out: make(chan struct{})}
	m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithObserver(o), eventbus.WithErrorHandler(func(error) {}))
	started, release := make(chan struct{}), make(chan struct{})
	l, err := m.RegisterListener("x", func(_ context.Context, e eventbus.Event[int]) error {
		if e.Data == 0 {
			close(started)
			<-release
		}
		return nil
	}, eventbus.QueueSize(1), eventbus.OnOverflow(eventbus.OverflowDropNewest))
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "x", 0))
	<-started
	require.NoError(t, m.Emit(context.Background(), "x", 1)) // queued: the backlog is full
	emitted := make(chan error, 1)
	go func() { emitted <- m.Emit(context.Background(), "x", 2) }() // dropped
	<-o.in
	manager, listener := m.Stats().Dropped, l.Stats().Dropped
	close(o.out)
	require.NoError(t, <-emitted)
	close(release)
	require.NoError(t, m.Flush(context.Background()))
	assert.Equal(t, uint64(1), manager)
	assert.Equal(t, manager, listener, "counted for the listener when for the manager")
	assert.Equal(t, uint64(1), l.Stats().Dropped)
}
