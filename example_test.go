package eventbus_test

import (
	"context"
	"errors"
	"fmt"
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
