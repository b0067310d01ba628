package benchmarks

import (
	"testing"

	evbus "github.com/asaskevich/EventBus"
)

// asaskevichLibrary measures github.com/asaskevich/EventBus as its README
// shows it: Subscribe and Publish for synchronous delivery, SubscribeAsync
// and WaitAsync for asynchronous delivery. Handlers are called through
// reflection with the published arguments.
//
// Async handlers are subscribed with transactional=false, the library's
// concurrent mode; Publish then starts one goroutine per handler per event
// and nothing bounds how many are outstanding.
func asaskevichLibrary() library {
	return library{
		name: "asaskevich",
		newSync: func(tb testing.TB, handlers []func(int)) emitter {
			return newAsaskevich(tb, handlers, false)
		},
		newAsync: func(tb testing.TB, handlers []func(int)) emitter {
			return newAsaskevich(tb, handlers, true)
		},
		newChurn: func(testing.TB) churner {
			return asaskevichChurn{evbus.New()}
		},
	}
}

func newAsaskevich(tb testing.TB, handlers []func(int), async bool) emitter {
	tb.Helper()
	bus := evbus.New()
	for _, h := range handlers {
		var err error
		if async {
			err = bus.SubscribeAsync(topic, h, false)
		} else {
			err = bus.Subscribe(topic, h)
		}
		if err != nil {
			tb.Fatalf("asaskevich: subscribe: %v", err)
		}
	}
	return asaskevichBus{bus}
}

type asaskevichBus struct{ bus evbus.Bus }

func (a asaskevichBus) Emit(seq int) error {
	a.bus.Publish(topic, seq)
	return nil
}

// Close waits for outstanding async handlers; the bus itself owns no
// goroutine and has nothing else to stop.
func (a asaskevichBus) Close() error {
	a.bus.WaitAsync()
	return nil
}

// asaskevichChurn subscribes with Subscribe and publishes with Publish, the
// synchronous mode; Unsubscribe finds the handler by its function value.
type asaskevichChurn struct{ bus evbus.Bus }

func (a asaskevichChurn) Subscribe(topic string, h func(int)) (func() error, error) {
	if err := a.bus.Subscribe(topic, h); err != nil {
		return nil, err
	}
	return func() error { return a.bus.Unsubscribe(topic, h) }, nil
}

func (a asaskevichChurn) Publish(topic string, seq int) error {
	a.bus.Publish(topic, seq)
	return nil
}

func (asaskevichChurn) Close() error { return nil }
