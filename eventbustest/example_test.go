package eventbustest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/eventbustest"
)

type Order struct{ ID int }

// confirmOrders is the code under test: when an order is placed, it emits
// order.confirmed as a follow-up, on the worker pool.
func confirmOrders(m *eventbus.EventManager[Order]) error {
	_, err := m.RegisterListener("order.placed", func(ctx context.Context, e eventbus.Event[Order]) error {
		return m.Emit(ctx, "order.confirmed", e.Data)
	})
	return err
}

// A handler test with no sleep: the test waits for the follow-up event
// with a Recorder, then checks that nothing else arrives once the bus is
// idle. run stands in for the testing package; in a test file the body is
// that of func TestConfirmOrders(t *testing.T).
func Example_handlerTest() {
	run(func(t testing.TB) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		bus := eventbustest.NewManager[Order](t) // closed and checked when the test ends
		if err := confirmOrders(bus.EventManager); err != nil {
			t.Fatal(err)
		}
		confirmed := eventbustest.Record(t, bus, "order.confirmed")

		_ = bus.Emit(ctx, "order.placed", Order{ID: 7})

		e := confirmed.WaitName(ctx, "order.confirmed")
		fmt.Println("confirmed order", e.Data.ID)
		confirmed.ExpectExactly(ctx, 1)
	})
	// Output: confirmed order 7
}

// A retry test: the listener fails twice, then succeeds on its third
// attempt; WaitIdle waits out the backoffs.
func ExampleFailFirst() {
	run(func(t testing.TB) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		bus := eventbustest.NewManager[Order](t)
		flaky := eventbustest.FailFirst[Order](2, errors.New("warehouse down"))
		_, _ = bus.RegisterListener("order.placed", flaky.Handle, eventbus.Retry(3, time.Millisecond, 10*time.Millisecond))

		_ = bus.Emit(ctx, "order.placed", Order{ID: 1})
		bus.WaitIdle(ctx)
		fmt.Println("calls:", flaky.Calls(), "errors reported:", len(bus.TakeErrors()))
	})
	// Output: calls: 3 errors reported: 0
}

// A dead-letter test: a listener that always fails reports one error once
// its retries are used up, and the test must take it.
func ExampleManager_WaitErrors() {
	run(func(t testing.TB) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		bus := eventbustest.NewManager[Order](t)
		broken := eventbustest.FailFirst[Order](-1, nil)
		_, _ = bus.RegisterListener("order.placed", broken.Handle, eventbus.Retry(2, time.Millisecond, time.Millisecond))

		_ = bus.Emit(ctx, "order.placed", Order{ID: 1})
		err := bus.WaitErrors(ctx, 1)[0]
		var le *eventbus.ListenerError
		if errors.As(err, &le) {
			fmt.Println(le.Event, "failed after", le.Attempts, "attempts:", errors.Is(err, eventbustest.ErrInjected))
		}
	})
	// Output: order.placed failed after 3 attempts: true
}

// A shutdown test: Close gives up on a listener that does not finish, and
// the deliveries still queued are abandoned; the test acknowledges them.
func ExampleBlock() {
	run(func(t testing.TB) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		bus := eventbustest.NewManager[Order](t, eventbus.WithWorkers(1))
		stuck, _ := eventbustest.Block[Order](t)
		_, _ = bus.RegisterListener("order.placed", stuck.Handle, eventbus.Ordered())
		for id := range 3 {
			_ = bus.Emit(ctx, "order.placed", Order{ID: id})
		}
		stuck.WaitEntered(ctx, 1)

		expired, stop := context.WithCancel(ctx)
		stop()
		fmt.Println("close gave up:", errors.Is(bus.Close(expired), context.Canceled))
		_ = bus.Close(ctx) // waits for the workers to exit
		fmt.Println("abandoned:", bus.TakeAbandoned())
		fmt.Println("cancelled listener:", errors.Is(bus.TakeErrors()[0], context.Canceled))
	})
	// Output:
	// close gave up: true
	// abandoned: 2
	// cancelled listener: true
}

// WaitIdle needs no testing.TB: it waits, without sleeping, until every
// event and every follow-up emitted by its listeners has been handled.
func ExampleWaitIdle() {
	m := eventbus.New[int]()
	defer m.Close(context.Background())
	_, _ = m.RegisterListener("countdown", func(ctx context.Context, e eventbus.Event[int]) error {
		fmt.Println(e.Data)
		if e.Data > 1 {
			return m.Emit(ctx, "countdown", e.Data-1)
		}
		return nil
	})
	_ = m.Emit(context.Background(), "countdown", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := eventbustest.WaitIdle(ctx, m); err != nil {
		fmt.Println(err)
	}
	fmt.Println("idle")
	// Output:
	// 3
	// 2
	// 1
	// idle
}

// WaitFor waits for any condition over what was recorded.
func ExampleRecorder_WaitFor() {
	run(func(t testing.TB) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		bus := eventbustest.NewManager[Order](t)
		rec := eventbustest.Record(t, bus, "order.*")
		for id := 1; id <= 4; id++ {
			_ = bus.Emit(ctx, "order.placed", Order{ID: id})
		}
		rec.WaitFor(ctx, "orders worth 10", func(events []eventbus.Event[Order]) bool {
			sum := 0
			for _, e := range events {
				sum += e.Data.ID
			}
			return sum >= 10
		})
		fmt.Println(rec.Len(), "orders")
	})
	// Output: 4 orders
}

// The shop's test that a slow email listener does not hold back inventory
// on the same topic: with email blocked on its first order, the test waits
// for inventory alone to have handled every order. No middleware, no
// sleep, no polling of Stats.
func ExampleManager_WaitHandled() {
	run(func(t testing.TB) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		bus := eventbustest.NewManager[any](t)
		orders, _ := eventbus.NewTopic[*Order](bus.EventManager, "order.placed")
		email, _ := eventbustest.Block[any](t) // released when the test ends
		_, _ = bus.RegisterListener("order.placed", email.Handle, eventbus.Name("email"))
		inventory, _ := orders.Listen(func(context.Context, eventbus.Event[*Order]) error { return nil }, eventbus.Name("inventory"))

		for id := range 100 {
			_ = orders.Emit(ctx, &Order{ID: id})
		}
		handled := bus.WaitHandled(ctx, inventory, 100) // or eventbustest.Named("inventory")
		fmt.Println("inventory handled", len(handled), "orders")
		fmt.Println("email handled", len(bus.Handled(eventbustest.Named("email"))))
	})
	// Output:
	// inventory handled 100 orders
	// email handled 0
}
