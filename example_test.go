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
//
// README.md shows this as a complete program, with OrderCreated.
func Example() {
	ctx := context.Background()
	m := eventbus.New[any]()
	defer m.Close(ctx) // delivers everything Emit accepted, then stops the workers
	orders, err := eventbus.NewTopic[OrderCreated](m, "order.created")
	if err != nil {
		panic(err)
	}
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

// traceIDs is a slog.Handler that adds the trace ID the record's context
// carries, as otelbus.LogHandler does for OpenTelemetry spans (there:
// trace_id and span_id of the span in the context).
type traceIDs struct{ slog.Handler }

type traceKey struct{}

func (h traceIDs) Handle(ctx context.Context, r slog.Record) error {
	if id, ok := ctx.Value(traceKey{}).(string); ok {
		r.AddAttrs(slog.String("trace_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

// withoutTime keeps the examples' log output stable.
var withoutTime = &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey || a.Key == "stack" {
		return slog.Attr{}
	}
	return a
}}

// The shop's dead letters. The error handler gets the delivery's context
// and the *ListenerError: it logs the failure with the trace ID of the
// request that placed the order, and parks it. Once the warehouse is back,
// each one is replayed to the listener that failed, alone, through the
// listener handle the error carries: no map from names to listeners, and
// email does not send its mail twice.
func ExampleListenerError_deadLetter() {
	logger := slog.New(traceIDs{slog.NewTextHandler(os.Stdout, withoutTime)})
	var mu sync.Mutex
	var dead []*eventbus.ListenerError
	m := eventbus.New[any](eventbus.WithErrorHandler(func(ctx context.Context, lerr *eventbus.ListenerError) {
		logger.WarnContext(ctx, "dead letter", "event", lerr.Event, "listener", lerr.Listener, "err", lerr.Err)
		mu.Lock()
		defer mu.Unlock()
		dead = append(dead, lerr)
	}))
	orders, _ := eventbus.NewTopic[OrderCreated](m, "order.created")
	var warehouseDown atomic.Bool
	warehouseDown.Store(true)
	orders.Listen(func(_ context.Context, e eventbus.Event[OrderCreated]) error {
		if warehouseDown.Load() {
			return errors.New("warehouse down")
		}
		fmt.Println("reserved", e.Data.Item, "for order", e.Data.ID)
		return nil
	}, eventbus.Name("inventory"), eventbus.Ordered())
	var mailed atomic.Int32
	orders.Listen(func(context.Context, eventbus.Event[OrderCreated]) error {
		mailed.Add(1)
		return nil
	}, eventbus.Name("email"))

	request := context.WithValue(context.Background(), traceKey{}, "4bf92f3577b34da6")
	orders.Emit(request, OrderCreated{ID: 1, Item: "Tea"})
	orders.Emit(request, OrderCreated{ID: 2, Item: "Coffee"})
	m.Flush(request)

	warehouseDown.Store(false)
	ctx := context.Background()
	for _, lerr := range dead {
		m.EmitTo(ctx, lerr.Handle, lerr.Event, lerr.Data) // to inventory alone
	}
	m.Close(ctx)
	fmt.Println("mails sent:", mailed.Load())
	// Output:
	// level=WARN msg="dead letter" event=order.created listener=inventory err="warehouse down" trace_id=4bf92f3577b34da6
	// level=WARN msg="dead letter" event=order.created listener=inventory err="warehouse down" trace_id=4bf92f3577b34da6
	// reserved Tea for order 1
	// reserved Coffee for order 2
	// mails sent: 2
}

// Topic.EmitTo brings one listener up to date, here a new subscriber that
// gets the last order replayed, while the others do not see it again.
func ExampleTopic_EmitTo() {
	ctx := context.Background()
	m := eventbus.New[any]()
	orders, _ := eventbus.NewTopic[OrderCreated](m, "order.created")
	orders.Listen(func(_ context.Context, e eventbus.Event[OrderCreated]) error {
		fmt.Println("email: order", e.Data.ID)
		return nil
	}, eventbus.Name("email"))
	last := OrderCreated{ID: 41, Item: "Tea"}
	orders.EmitSync(ctx, last)
	dashboard, _ := orders.Listen(func(_ context.Context, e eventbus.Event[OrderCreated]) error {
		fmt.Println("dashboard: order", e.Data.ID)
		return nil
	}, eventbus.Name("dashboard"))
	orders.EmitTo(ctx, dashboard, last)
	m.Close(ctx)
	// Output:
	// email: order 41
	// dashboard: order 41
}

// Listeners lists every listener, for metrics or an admin page: here each
// one's name and backlog.
func ExampleEventManager_Listeners() {
	ctx := context.Background()
	m := eventbus.New[any]()
	defer m.Close(ctx)
	nop := func(context.Context, eventbus.Event[any]) error { return nil }
	m.RegisterListener("order.created", nop, eventbus.Name("email"))
	m.RegisterListener("order.created", nop, eventbus.Name("inventory"))
	m.RegisterListener("order.>", nop)
	for _, l := range m.Listeners() {
		fmt.Println(l.Name(), l.Stats().Pending)
	}
	// Output:
	// email 0
	// inventory 0
	// order.>#3 0
}

// CancelWithEmitter lets the emitter stop a listener's work: a bridge that
// emits with a context it cancels on Close stops the deliveries it started.
func ExampleCancelWithEmitter() {
	m := eventbus.New[string]()
	started := make(chan struct{})
	m.RegisterListener("job", func(ctx context.Context, e eventbus.Event[string]) error {
		close(started)
		<-ctx.Done() // a long job that watches its context
		fmt.Println("job stopped:", context.Cause(ctx))
		return nil
	}, eventbus.CancelWithEmitter())

	bridge, closeBridge := context.WithCancelCause(context.Background())
	m.Emit(bridge, "job", "resize images")
	<-started
	closeBridge(errors.New("bridge closed"))
	m.Close(context.Background())
	// Output: job stopped: bridge closed
}

// WithLogger sends the failures that no error handler takes to a logger of
// your own, one record per failure with its listener and event as
// attributes (and a panic's stack, left out here), logged with the
// delivery's context: a handler that reads it (otelbus.LogHandler, or
// traceIDs here) adds the emitter's trace ID.
func ExampleWithLogger() {
	logger := slog.New(traceIDs{slog.NewTextHandler(os.Stdout, withoutTime)})
	ctx := context.WithValue(context.Background(), traceKey{}, "4bf92f3577b34da6")
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
	// level=ERROR msg="eventbus: listener failed" event=order.created listener=email pattern=order.created attempts=1 err="smtp down" trace_id=4bf92f3577b34da6
	// level=ERROR msg="eventbus: listener panicked" event=order.created listener=metrics pattern=order.created attempts=1 err="panic: nil map" trace_id=4bf92f3577b34da6
}
