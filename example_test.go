package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/eventbus-go/eventbus"
)

type Order struct {
	ID   int
	Item string
}

func ExampleEventManager_EmitSync() {
	m := eventbus.New[Order]()
	defer m.Close(context.Background())
	_, _ = m.RegisterListener("new_order", func(_ context.Context, e eventbus.Event[Order]) error {
		fmt.Printf("Processing order #%d for %s\n", e.Data.ID, e.Data.Item)
		return nil
	})
	_ = m.EmitSync(context.Background(), "new_order", Order{ID: 123, Item: "Coffee"})
	// Output: Processing order #123 for Coffee
}

func ExampleEventManager_Emit() {
	m := eventbus.New[Order](eventbus.WithWorkers(4))
	var handled atomic.Int64
	_, _ = m.RegisterListener("order.>", func(context.Context, eventbus.Event[Order]) error {
		handled.Add(1)
		return nil
	})
	for i := range 100 {
		_ = m.Emit(context.Background(), "order.created", Order{ID: i})
	}
	_ = m.Close(context.Background()) // delivers everything accepted
	fmt.Println(handled.Load(), "orders handled")
	// Output: 100 orders handled
}

func ExampleEventManager_RegisterListener() {
	m := eventbus.New[Order]()
	defer m.Close(context.Background())
	_, err := m.RegisterListener("order..created", func(context.Context, eventbus.Event[Order]) error { return nil })
	fmt.Println(errors.Is(err, eventbus.ErrInvalidPattern))
	l, _ := m.RegisterListener("order.*", func(_ context.Context, e eventbus.Event[Order]) error {
		fmt.Println("got", e.Name)
		return nil
	}, eventbus.Priority(1))
	_ = m.EmitSync(context.Background(), "order.paid", Order{})
	l.Unregister()
	_ = m.EmitSync(context.Background(), "order.paid", Order{})
	// Output:
	// true
	// got order.paid
}

func ExampleEventManager_Close() {
	m := eventbus.New[Order]()
	_ = m.Close(context.Background())
	err := m.Emit(context.Background(), "order.created", Order{})
	fmt.Println(errors.Is(err, eventbus.ErrClosed))
	// Output: true
}

// Events with the same key reach an OrderedBy listener in the order they
// were emitted, one at a time, while different keys run concurrently.
func ExampleOrderedBy() {
	type step struct {
		Order int
		State string
	}
	m := eventbus.New[step]()
	var mu sync.Mutex
	history := map[int][]string{}
	m.RegisterListener("order.>", func(_ context.Context, e eventbus.Event[step]) error {
		mu.Lock()
		defer mu.Unlock()
		history[e.Data.Order] = append(history[e.Data.Order], e.Data.State)
		return nil
	}, eventbus.OrderedBy(func(e eventbus.Event[step]) string { return strconv.Itoa(e.Data.Order) }))

	ctx := context.Background()
	for _, state := range []string{"created", "paid", "shipped"} {
		for order := 1; order <= 2; order++ {
			m.Emit(ctx, "order."+state, step{Order: order, State: state})
		}
	}
	m.Close(ctx) // delivers everything accepted
	fmt.Println(history[1])
	fmt.Println(history[2])
	// Output:
	// [created paid shipped]
	// [created paid shipped]
}

// The events of an order service, one Go type per event name.
type OrderCreated struct {
	ID   int
	Item string
}

type OrderPaid struct {
	ID    int
	Cents int
}

// One EventManager[any] carries several typed topics: each name is declared
// with its type, and its listeners get that type.
func Example() {
	ctx := context.Background()
	m := eventbus.New[any]()
	defer m.Close(ctx)
	orders, _ := eventbus.NewTopic[OrderCreated](m, "order.created")
	orders.Listen(func(ctx context.Context, e eventbus.Event[OrderCreated]) error {
		fmt.Printf("order #%d: %s\n", e.Data.ID, e.Data.Item)
		return nil
	}, eventbus.Name("email"))
	orders.EmitSync(ctx, OrderCreated{ID: 123, Item: "Coffee"}) // in this goroutine
	orders.Emit(ctx, OrderCreated{ID: 124, Item: "Tea"})        // on the worker pool
	// Output:
	// order #123: Coffee
	// order #124: Tea
}

// NewTopic declares a name's type on an EventManager[any]: from then on,
// every emit to the name is checked, the manager's own included.
func ExampleNewTopic() {
	ctx := context.Background()
	m := eventbus.New[any]()
	defer m.Close(ctx)
	payments, err := eventbus.NewTopic[OrderPaid](m, "order.paid")
	fmt.Println(payments.Name(), err)

	again, _ := eventbus.NewTopic[OrderPaid](m, "order.paid")
	fmt.Println(again == payments) // the same Topic

	_, err = eventbus.NewTopic[OrderCreated](m, "order.paid")
	fmt.Println(err)
	err = m.Emit(ctx, "order.paid", OrderCreated{ID: 1})
	fmt.Println(errors.Is(err, eventbus.ErrTypeMismatch))
	_, err = eventbus.NewTopic[OrderPaid](m, "order.*")
	fmt.Println(errors.Is(err, eventbus.ErrInvalidName))
	// Output:
	// order.paid <nil>
	// true
	// new topic "order.paid": eventbus: type mismatch: declared as eventbus_test.OrderPaid, not eventbus_test.OrderCreated
	// true
	// true
}

// Listen's handler gets the topic's type, and every listener option
// applies: here OrderedBy keyed on a field of the typed payload.
func ExampleTopic_Listen() {
	ctx := context.Background()
	m := eventbus.New[any]()
	payments, _ := eventbus.NewTopic[OrderPaid](m, "order.paid")
	var mu sync.Mutex
	total := map[int]int{}
	payments.Listen(func(_ context.Context, e eventbus.Event[OrderPaid]) error {
		mu.Lock()
		defer mu.Unlock()
		total[e.Data.ID] += e.Data.Cents
		return nil
	}, eventbus.Name("ledger"), eventbus.OrderedBy(func(e eventbus.Event[OrderPaid]) string {
		return strconv.Itoa(e.Data.ID)
	}))
	for i := range 10 {
		payments.Emit(ctx, OrderPaid{ID: i % 2, Cents: 100})
	}
	m.Close(ctx) // delivers everything accepted
	fmt.Println(total[0], total[1])
	// Output: 500 500
}

// A wildcard listener on the EventManager sees every topic it matches, as
// Event[any] holding each topic's type.
func ExampleNewTopic_audit() {
	ctx := context.Background()
	m := eventbus.New[any]()
	defer m.Close(ctx)
	created, _ := eventbus.NewTopic[OrderCreated](m, "order.created")
	payments, _ := eventbus.NewTopic[OrderPaid](m, "order.paid")
	m.RegisterListener("order.>", func(_ context.Context, e eventbus.Event[any]) error {
		switch d := e.Data.(type) {
		case OrderCreated:
			fmt.Printf("audit %s: #%d %s\n", e.Name, d.ID, d.Item)
		case OrderPaid:
			fmt.Printf("audit %s: #%d %d cents\n", e.Name, d.ID, d.Cents)
		}
		return nil
	}, eventbus.Name("audit"))
	created.EmitSync(ctx, OrderCreated{ID: 7, Item: "Tea"})
	payments.EmitSync(ctx, OrderPaid{ID: 7, Cents: 450})
	m.EmitSync(ctx, "order.refunded", "untyped names carry anything")
	// Output:
	// audit order.created: #7 Tea
	// audit order.paid: #7 450 cents
}

// Names tell listeners apart in errors, logs and stats; handlers and
// middleware read them with ListenerName.
func ExampleName() {
	ctx := context.Background()
	m := eventbus.New[string](eventbus.WithMiddleware(func(next eventbus.Handler[string]) eventbus.Handler[string] {
		return func(ctx context.Context, e eventbus.Event[string]) error {
			fmt.Println("->", eventbus.ListenerName(ctx))
			return next(ctx, e)
		}
	}))
	defer m.Close(ctx)
	m.RegisterListener("order.created", func(context.Context, eventbus.Event[string]) error {
		return errors.New("smtp down")
	}, eventbus.Name("email"))
	inventory, _ := m.RegisterListener("order.created", func(context.Context, eventbus.Event[string]) error {
		return nil
	})
	err := m.EmitSync(ctx, "order.created", "#123")
	fmt.Println(err)
	fmt.Println(inventory.Name(), inventory.Stats().Delivered)
	// Output:
	// -> email
	// -> order.created#2
	// eventbus: listener "email" (pattern "order.created") on event "order.created": smtp down
	// order.created#2 1
}

// A failed delivery carries its event: the error handler parks it in a
// dead-letter store, and it is emitted again once the cause is fixed.
// EmitTo replays it to the listener that failed only; Emit would deliver it
// to every listener of the name again.
func ExampleListenerError_deadLetter() {
	ctx := context.Background()
	var mu sync.Mutex
	var dead []*eventbus.ListenerError
	m := eventbus.New[any](eventbus.WithErrorHandler(func(err error) {
		var lerr *eventbus.ListenerError
		if errors.As(err, &lerr) {
			mu.Lock()
			defer mu.Unlock()
			dead = append(dead, lerr)
		}
	}))
	orders, _ := eventbus.NewTopic[OrderCreated](m, "order.created")
	var warehouseDown atomic.Bool
	warehouseDown.Store(true)
	inventory, _ := orders.Listen(func(_ context.Context, e eventbus.Event[OrderCreated]) error {
		if warehouseDown.Load() {
			return errors.New("warehouse down")
		}
		fmt.Println("reserved", e.Data.Item, "for order", e.Data.ID)
		return nil
	}, eventbus.Name("inventory"), eventbus.Ordered())

	orders.Emit(ctx, OrderCreated{ID: 1, Item: "Tea"})
	orders.Emit(ctx, OrderCreated{ID: 2, Item: "Coffee"})
	m.Flush(ctx)
	for _, lerr := range dead {
		fmt.Printf("parked %s for %s: %+v\n", lerr.Event, lerr.Listener, lerr.Data)
	}

	warehouseDown.Store(false)
	for _, lerr := range dead {
		eventbus.EmitTo(ctx, m, inventory, lerr.Event, lerr.Data) // lerr.Listener is "inventory"
	}
	m.Close(ctx)
	// Output:
	// parked order.created for inventory: {ID:1 Item:Tea}
	// parked order.created for inventory: {ID:2 Item:Coffee}
	// reserved Tea for order 1
	// reserved Coffee for order 2
}

// WithLogger sends the failures that no error handler takes to a logger of
// your own, one record per failure with its listener and event as
// attributes (and a panic's stack, left out here).
func ExampleWithLogger() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "stack" {
				return slog.Attr{} // keep the output stable
			}
			return a
		},
	}))
	ctx := context.Background()
	m := eventbus.New[string](eventbus.WithLogger(logger))
	m.RegisterListener("order.created", func(context.Context, eventbus.Event[string]) error {
		return errors.New("smtp down")
	}, eventbus.Name("email"))
	m.RegisterListener("order.created", func(context.Context, eventbus.Event[string]) error {
		panic("nil map")
	}, eventbus.Name("metrics"), eventbus.Priority(-1))
	m.Emit(ctx, "order.created", "#123")
	m.Close(ctx)
	// Unordered output:
	// level=ERROR msg="eventbus: listener failed" event=order.created listener=email pattern=order.created attempts=1 err="smtp down"
	// level=ERROR msg="eventbus: listener panicked" event=order.created listener=metrics pattern=order.created attempts=1 err="panic: nil map"
}
