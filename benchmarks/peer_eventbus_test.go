package benchmarks

import (
	"context"
	"runtime"
	"testing"

	"github.com/eventbus-go/eventbus"
)

// eventbusLibrary measures this repository's bus: EmitSync for the
// synchronous scenarios, Emit to its worker pool for the asynchronous ones.
// The pool gets the channel baseline's worker count and queue size, so the
// two are compared like for like.
func eventbusLibrary() library {
	return library{
		name: "eventbus",
		newSync: func(tb testing.TB, handlers []func(int)) emitter {
			return newEventbus(tb, handlers, true)
		},
		newAsync: func(tb testing.TB, handlers []func(int)) emitter {
			return newEventbus(tb, handlers, false)
		},
		newChurn: func(testing.TB) churner {
			return eventbusChurn{eventbus.New[int]()}
		},
	}
}

func newEventbus(tb testing.TB, handlers []func(int), synchronous bool) emitter {
	tb.Helper()
	m := eventbus.New[int](
		eventbus.WithWorkers(runtime.GOMAXPROCS(0)),
		eventbus.WithQueueSize(queueSize),
	)
	for _, h := range handlers {
		_, err := m.RegisterListener(topic, func(_ context.Context, e eventbus.Event[int]) error {
			h(e.Data)
			return nil
		})
		if err != nil {
			tb.Fatalf("eventbus: register: %v", err)
		}
	}
	return &eventbusBus{m: m, synchronous: synchronous}
}

type eventbusBus struct {
	m           *eventbus.EventManager[int]
	synchronous bool
}

func (e *eventbusBus) Emit(seq int) error {
	if e.synchronous {
		return e.m.EmitSync(context.Background(), topic, seq)
	}
	return e.m.Emit(context.Background(), topic, seq)
}

func (e *eventbusBus) Close() error {
	return e.m.Close(context.Background())
}

// eventbusChurn registers a listener per subscription and publishes with
// EmitSync, the synchronous mode: a listener has returned when Publish
// does, so Unregister leaves nothing running.
type eventbusChurn struct{ m *eventbus.EventManager[int] }

func (e eventbusChurn) Subscribe(topic string, h func(int)) (func() error, error) {
	l, err := e.m.RegisterListener(topic, func(_ context.Context, ev eventbus.Event[int]) error {
		h(ev.Data)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return func() error { l.Unregister(); return nil }, nil
}

func (e eventbusChurn) Publish(topic string, seq int) error {
	return e.m.EmitSync(context.Background(), topic, seq)
}

func (e eventbusChurn) Close() error { return e.m.Close(context.Background()) }
