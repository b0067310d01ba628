package eventbus_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type ctxKey string

// recordingObserver keeps what an Observer is told.
type recordingObserver struct {
	mu       sync.Mutex
	emits    []string
	emitErrs []error
	outcomes map[eventbus.Outcome]int
	accepted []time.Time
	attempts []int
	// failed and panicked attempts, by Delivery.Final
	final, retried int
	// the "span" value of each Lost's context, and its listener name
	lostSpans, lostNames []string
}

func (o *recordingObserver) Emit(ctx context.Context, name string) (context.Context, func(error)) {
	o.mu.Lock()
	o.emits = append(o.emits, name)
	o.mu.Unlock()
	return context.WithValue(ctx, ctxKey("span"), "emit:"+name), func(err error) {
		o.mu.Lock()
		o.emitErrs = append(o.emitErrs, err)
		o.mu.Unlock()
	}
}

func (o *recordingObserver) Start(ctx context.Context, d eventbus.Delivery) (context.Context, func(eventbus.Outcome, error)) {
	o.mu.Lock()
	o.accepted = append(o.accepted, d.Accepted)
	o.attempts = append(o.attempts, d.Attempt)
	o.mu.Unlock()
	return context.WithValue(ctx, ctxKey("delivery"), d.Event), func(oc eventbus.Outcome, err error) {
		o.mu.Lock()
		o.outcomes[oc]++
		if oc == eventbus.OutcomeFailed || oc == eventbus.OutcomePanicked {
			if d.Final {
				o.final++
			} else {
				o.retried++
			}
		}
		o.mu.Unlock()
	}
}

func (o *recordingObserver) Lost(ctx context.Context, d eventbus.Delivery, oc eventbus.Outcome) {
	span, _ := ctx.Value(ctxKey("span")).(string)
	o.mu.Lock()
	o.outcomes[oc]++
	o.lostSpans = append(o.lostSpans, span)
	o.lostNames = append(o.lostNames, eventbus.ListenerName(ctx))
	o.mu.Unlock()
}

func TestObserverSeesEmitsDeliveriesAndLosses(t *testing.T) {
	obs := &recordingObserver{outcomes: map[eventbus.Outcome]int{}}
	m := newManager[int](t, eventbus.WithObserver(obs), eventbus.WithWorkers(1), eventbus.WithErrorHandler(func(error) {}))
	var seen []string
	var mu sync.Mutex
	_, err := m.RegisterListener("e", func(ctx context.Context, e eventbus.Event[int]) error {
		mu.Lock()
		seen = append(seen, ctx.Value(ctxKey("span")).(string)+"/"+ctx.Value(ctxKey("delivery")).(string))
		mu.Unlock()
		switch e.Data {
		case 1:
			return errors.New("boom")
		case 2:
			panic("boom")
		}
		return nil
	})
	require.NoError(t, err)
	_, err = m.RegisterListener("r", func(context.Context, eventbus.Event[int]) error {
		return errors.New("again")
	}, eventbus.Retry(1, time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	gone, err := m.RegisterListener("gone", func(context.Context, eventbus.Event[int]) error { return nil })
	require.NoError(t, err)
	g := newGate()
	_, err = m.RegisterListener("full", g.handler, eventbus.QueueSize(1), eventbus.OnOverflow(eventbus.OverflowDropNewest), eventbus.Ordered())
	require.NoError(t, err)

	require.NoError(t, m.EmitSync(context.Background(), "e", 0))
	require.NoError(t, m.Emit(context.Background(), "full", 0)) // holds the one worker
	g.waitEntered(t, 1)
	require.NoError(t, m.Emit(context.Background(), "full", 1))
	require.NoError(t, m.Emit(context.Background(), "full", 2)) // dropped
	for i := range 3 {
		require.NoError(t, m.Emit(context.Background(), "e", i))
	}
	require.NoError(t, m.Emit(context.Background(), "r", 0))
	require.NoError(t, m.Emit(context.Background(), "gone", 0))
	gone.Unregister() // its queued delivery is skipped
	g.open()
	require.NoError(t, m.Flush(context.Background()))

	obs.mu.Lock()
	defer obs.mu.Unlock()
	assert.Len(t, obs.emits, 9)
	assert.Len(t, obs.emitErrs, 9)
	assert.Equal(t, 1+1+2, obs.outcomes[eventbus.OutcomeDelivered], "e×2 (0 sync and pool) and full×2")
	assert.Equal(t, 1+2, obs.outcomes[eventbus.OutcomeFailed], "e:1 and both attempts of r")
	assert.Equal(t, 1, obs.outcomes[eventbus.OutcomePanicked])
	assert.Equal(t, 1, obs.outcomes[eventbus.OutcomeDropped])
	assert.Equal(t, 1, obs.outcomes[eventbus.OutcomeSkipped])
	assert.Contains(t, obs.attempts, 1, "the retry is attempt 1")
	assert.Equal(t, 1, obs.retried, "r's first attempt is retried")
	assert.Equal(t, 1+1+1, obs.final, "e:1, e:2 and r's last attempt are final")
	assert.Equal(t, []string{"emit:full", "emit:gone"}, obs.lostSpans, "Lost gets the delivery's context")
	assert.Equal(t, []string{"full#4", "gone#3"}, obs.lostNames, "with the listener's name")
	assert.True(t, obs.accepted[0].IsZero(), "EmitSync has no accept time")
	assert.False(t, obs.accepted[len(obs.accepted)-1].IsZero(), "Emit records its accept time")
	mu.Lock()
	assert.Contains(t, seen, "emit:e/e", "the handler sees the emit's and the delivery's context values")
	mu.Unlock()
}

func TestObserverLostAbandonedKeepsItsContext(t *testing.T) {
	obs := &recordingObserver{outcomes: map[eventbus.Outcome]int{}}
	var sink errorSink
	m := eventbus.New[int](eventbus.WithObserver(obs), eventbus.WithWorkers(1), eventbus.WithErrorHandler(sink.handle))
	g := newGate()
	_, err := m.RegisterListener("slow", g.handler, eventbus.Ordered(), eventbus.Name("slow"))
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, m.Emit(context.Background(), "slow", i))
	}
	g.waitEntered(t, 1)
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, m.Close(expired), context.Canceled)
	g.open()
	require.NoError(t, m.Close(context.Background()))

	obs.mu.Lock()
	defer obs.mu.Unlock()
	assert.Equal(t, 2, obs.outcomes[eventbus.OutcomeAbandoned])
	assert.Equal(t, []string{"emit:slow", "emit:slow"}, obs.lostSpans, "each abandoned delivery with the context it had")
	assert.Equal(t, []string{"slow", "slow"}, obs.lostNames)
}
