package eventbus_test

import (
	"context"
	"errors"
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

// A DropOldest listener's backlog can be past its bound when a retry goes
// back to its mailbox at once (or a yielded batch hands back what it had not
// started); an emit then drops the oldest deliveries until the new one fits,
// each counted, and no delivery goes uncounted.
func TestDropOldestPastTheBoundCountsEveryDelivery(t *testing.T) {
	m := newManager[int](t, eventbus.WithWorkers(1), eventbus.WithMaxWorkers(1), eventbus.WithErrorHandler(func(error) {}))
	started, release := make(chan int, 1), make(chan struct{})
	var ran []int // read after Flush
	a, err := m.RegisterListener("a", func(_ context.Context, e eventbus.Event[int]) error {
		ran = append(ran, e.Data)
		if e.Data == 1 && len(ran) == 1 {
			started <- 1
			<-release
			return errors.New("fails once; retried at once")
		}
		return nil
	}, eventbus.QueueSize(1), eventbus.OnOverflow(eventbus.OverflowDropOldest), eventbus.Retry(1, 0, 0))
	require.NoError(t, err)
	bStarted, bRelease := make(chan struct{}), make(chan struct{})
	_, err = m.RegisterListener("b", func(context.Context, eventbus.Event[int]) error {
		close(bStarted)
		<-bRelease
		return nil
	})
	require.NoError(t, err)
	ctx := context.Background()

	require.NoError(t, m.Emit(ctx, "a", 1))
	<-started                               // the only worker runs a's first delivery
	require.NoError(t, m.Emit(ctx, "a", 2)) // a's backlog: [2], at its bound
	require.NoError(t, m.Emit(ctx, "b", 1)) // b waits for the worker, ahead of a
	close(release)                          // 1 fails: its retry goes back in front, [1 2], past the bound
	<-bStarted                              // the worker is in b's handler: a's backlog stays as it is
	assert.Equal(t, 2, a.Stats().Pending, "a's backlog past its bound")
	require.NoError(t, m.Emit(ctx, "a", 3)) // drops 1 and 2 to make room for 3
	close(bRelease)
	require.NoError(t, m.Flush(ctx))

	s := a.Stats()
	assert.Equal(t, []int{1, 3}, ran, "the newest delivery runs; the two older ones were dropped")
	assert.Equal(t, uint64(2), s.Dropped)
	assert.Equal(t, uint64(1), s.Delivered)
	assert.Equal(t, uint64(1), s.Retried)
	checkAccounting(t, m.Stats())
}
