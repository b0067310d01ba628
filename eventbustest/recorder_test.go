package eventbustest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/eventbustest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var _ eventbustest.Registrar[int] = (*eventbustest.Manager[int])(nil)
var _ eventbustest.Registrar[int] = (*eventbus.EventManager[int])(nil)

func TestRecorderWaitNReturnsOnceEnoughEventsArrive(t *testing.T) {
	m := eventbustest.NewManager[int](t, eventbus.WithWorkers(4))
	rec := eventbustest.Record(t, m, "order.>")
	for i := range 3 {
		require.NoError(t, m.Emit(context.Background(), "order.created", i))
	}
	require.NoError(t, m.Emit(context.Background(), "invoice.created", 9), "matches no recorder")
	events := rec.WaitN(deadline(t), 3)
	require.Len(t, events, 3)
	var sum int
	for _, e := range events {
		assert.Equal(t, "order.created", e.Name)
		sum += e.Data
	}
	assert.Equal(t, 0+1+2, sum, "each event recorded once")
	rec.ExpectExactly(deadline(t), 3)
}

func TestRecorderKeepsOrderOfArrival(t *testing.T) {
	m := eventbustest.NewManager[int](t, eventbus.WithWorkers(4))
	rec := eventbustest.Record(t, m, "step", eventbus.Ordered())
	const n = 200
	for i := range n {
		require.NoError(t, m.Emit(context.Background(), "step", i))
	}
	events := rec.WaitN(deadline(t), n)
	for i, e := range events {
		require.Equal(t, i, e.Data, "an Ordered recorder records in emit order")
	}
	assert.Equal(t, n, rec.Len())
	m.WaitIdle(deadline(t)) // Stats are settled after Flush
	assert.Equal(t, uint64(n), rec.Listener().Stats().Delivered)
}

func TestRecorderWaitForAndWaitName(t *testing.T) {
	m := eventbustest.NewManager[string](t)
	rec := eventbustest.Record(t, m, ">")
	require.NoError(t, m.Emit(context.Background(), "order.created", "a"))
	require.NoError(t, m.Emit(context.Background(), "order.paid", "b"))
	e := rec.WaitName(deadline(t), "order.paid")
	assert.Equal(t, eventbus.Event[string]{Name: "order.paid", Data: "b"}, e)
	events := rec.WaitFor(deadline(t), "both events", func(events []eventbus.Event[string]) bool {
		return len(events) == 2
	})
	assert.Len(t, events, 2)
}

func TestRecorderReturnsAtOnceWhenTheConditionHoldsWhateverTheContext(t *testing.T) {
	m := eventbustest.NewManager[int](t)
	rec := eventbustest.Record(t, m, "e")
	require.NoError(t, m.EmitSync(context.Background(), "e", 1))
	assert.Len(t, rec.WaitN(expired(), 1), 1, "the condition is checked before the context")
	assert.Len(t, rec.WaitN(context.Background(), 0), 1)
}

func TestRecorderEventsIsACopy(t *testing.T) {
	m := eventbustest.NewManager[int](t)
	rec := eventbustest.Record(t, m, "e")
	require.NoError(t, m.EmitSync(context.Background(), "e", 1))
	events := rec.Events()
	events[0].Data = 42
	assert.Equal(t, 1, rec.Events()[0].Data)
	got := rec.WaitN(deadline(t), 1)
	got[0].Name = "changed"
	assert.Equal(t, "e", rec.Events()[0].Name)
}

func TestRecorderWaitFailureListsWhatWasRecorded(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		wait       func(*eventbustest.Recorder[int])
	}{
		{"WaitN", "waiting for 3 events", func(r *eventbustest.Recorder[int]) { r.WaitN(expired(), 3) }},
		{"WaitName", `waiting for an event named "order.shipped"`, func(r *eventbustest.Recorder[int]) { r.WaitName(expired(), "order.shipped") }},
		{"WaitFor", "waiting for the order to ship", func(r *eventbustest.Recorder[int]) {
			r.WaitFor(expired(), "the order to ship", func([]eventbus.Event[int]) bool { return false })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := eventbustest.NewManager[int](t)
			ft := &fakeT{}
			rec := eventbustest.Record(ft, m, "order.*")
			require.NoError(t, m.EmitSync(context.Background(), "order.created", 7))
			require.NoError(t, m.EmitSync(context.Background(), "order.paid", 8))
			assert.False(t, ft.run(func() { tc.wait(rec) }), "the wait ends the test goroutine")
			msg := ft.messages()
			assert.Contains(t, msg, `recorder on "order.*": `+tc.want+": context canceled")
			assert.Contains(t, msg, "recorded 2 events")
			assert.Contains(t, msg, "0: order.created 7")
			assert.Contains(t, msg, "1: order.paid 8")
			ft.finish()
		})
	}
}

func TestRecorderFailureListsAtMostAHundredEvents(t *testing.T) {
	m := eventbustest.NewManager[int](t)
	ft := &fakeT{}
	rec := eventbustest.Record(ft, m, "e")
	for i := range 150 {
		require.NoError(t, m.EmitSync(context.Background(), "e", i))
	}
	ft.run(func() { rec.WaitN(expired(), 151) })
	msg := ft.messages()
	assert.Contains(t, msg, "recorded 150 events")
	assert.Contains(t, msg, "99: e 99")
	assert.NotContains(t, msg, "100: e 100")
	assert.Contains(t, msg, "... and 50 more")
	ft.finish()
}

func TestRecorderWaitIdleWaitsForFollowUps(t *testing.T) {
	m := eventbustest.NewManager[int](t, eventbus.WithWorkers(2))
	// Each hop emits the next on the pool, from inside the handler.
	for _, hop := range []struct{ on, next string }{{"a", "b"}, {"b", "c"}} {
		_, err := m.RegisterListener(hop.on, func(ctx context.Context, e eventbus.Event[int]) error {
			return m.Emit(ctx, hop.next, e.Data+1)
		})
		require.NoError(t, err)
	}
	rec := eventbustest.Record(t, m, "*", eventbus.Ordered()) // in the order they were emitted
	require.NoError(t, m.Emit(context.Background(), "a", 0))
	events := rec.WaitIdle(deadline(t))
	require.Len(t, events, 3, "the event and both follow-ups")
	assert.Equal(t, []eventbus.Event[int]{{Name: "a", Data: 0}, {Name: "b", Data: 1}, {Name: "c", Data: 2}}, events)
	assert.True(t, rec.ExpectExactly(deadline(t), 3))
}

func TestRecorderExpectExactlyReportsExtraEvents(t *testing.T) {
	m := eventbustest.NewManager[int](t)
	ft := &fakeT{}
	rec := eventbustest.Record(ft, m, "e")
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	require.NoError(t, m.Emit(context.Background(), "e", 2))
	var ok bool
	assert.True(t, ft.run(func() { ok = rec.ExpectExactly(deadline(t), 1) }), "a check does not end the goroutine")
	assert.False(t, ok)
	msg := ft.messages()
	assert.Contains(t, msg, "expected exactly 1 events once the bus is idle; recorded 2 events")
	ft.finish()
}

func TestRecorderWaitIdleFailsWhenTheBusNeverSettles(t *testing.T) {
	m := eventbustest.NewManager[int](t)
	ft := &fakeT{}
	rec := eventbustest.Record(ft, m, "e")
	release := make(chan struct{})
	_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error {
		<-release
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "e", 1))
	assert.False(t, ft.run(func() { rec.WaitIdle(expired()) }))
	assert.Contains(t, ft.messages(), "waiting for the bus to be idle")
	assert.False(t, ft.run(func() { rec.ExpectExactly(expired(), 1) }))
	close(release)
	ft.finish()
}

func TestRecorderRegistrationFailuresFailTheTest(t *testing.T) {
	m := eventbustest.NewManager[int](t)
	ft := &fakeT{}
	assert.False(t, ft.run(func() { eventbustest.Record(ft, m, "a..b") }))
	assert.Contains(t, ft.messages(), eventbus.ErrInvalidPattern.Error())

	ft = &fakeT{}
	assert.False(t, ft.run(func() { eventbustest.Record[int](ft, nil, "a") }))
	assert.Contains(t, ft.messages(), eventbustest.ErrNilArgument.Error())

	var unset *eventbus.EventManager[int] // a field never set: a nil pointer in the interface
	ft = &fakeT{}
	assert.False(t, ft.run(func() { eventbustest.Record[int](ft, unset, "a") }))
	assert.Contains(t, ft.messages(), eventbustest.ErrNilArgument.Error())

	ft = &fakeT{}
	assert.False(t, ft.run(func() { eventbustest.NewRecorder[int](ft, unset, nil) }))
	assert.Contains(t, ft.messages(), eventbustest.ErrNilArgument.Error())

	ft = &fakeT{}
	assert.False(t, ft.run(func() { eventbustest.NewRecorder[int](ft, m, nil) }))
	assert.Contains(t, ft.messages(), eventbustest.ErrNilArgument.Error())
	assert.Zero(t, m.Stats().Listeners)
}

func TestRecorderUnregistersWhenTheTestEnds(t *testing.T) {
	m := eventbustest.NewManager[int](t)
	ft := &fakeT{}
	eventbustest.Record(ft, m, "e")
	require.Equal(t, 1, m.Stats().Listeners)
	ft.finish()
	assert.Zero(t, m.Stats().Listeners)
	assert.Empty(t, ft.messages())
}

// topic is a stand-in for a typed topic over an EventManager[any], with
// the Listen signature such topics have.
type topic[T any] struct {
	m    *eventbus.EventManager[any]
	name string
}

func (tp *topic[T]) Listen(h eventbus.Handler[T], opts ...eventbus.ListenerOption) (*eventbus.Listener, error) {
	return tp.m.RegisterListener(tp.name, func(ctx context.Context, e eventbus.Event[any]) error {
		data, ok := e.Data.(T)
		if !ok {
			return fmt.Errorf("topic %s: %T is not a %T", tp.name, e.Data, data)
		}
		return h(ctx, eventbus.Event[T]{Name: e.Name, Data: data})
	}, opts...)
}

func TestRecorderOnATypedTopic(t *testing.T) {
	type shipped struct{ Order int }
	m := eventbustest.NewManager[any](t)
	tp := &topic[shipped]{m: m.EventManager, name: "order.shipped"}
	rec := eventbustest.NewRecorder(t, m, tp.Listen)
	require.NoError(t, m.Emit(context.Background(), "order.shipped", shipped{Order: 3}))
	var e eventbus.Event[shipped] = rec.WaitName(deadline(t), "order.shipped")
	assert.Equal(t, 3, e.Data.Order)
	assert.True(t, strings.HasPrefix(rec.Listener().Pattern(), "order."))
}
