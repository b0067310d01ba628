// Command orders is a small order-handling service built on eventbus:
// several listeners react to new orders, a wildcard audit listener sees every
// order event, a failing listener is reported, a burst goes through the
// worker pool, and Close drains everything before the final Stats.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/eventbus-go/eventbus"
)

type Order struct {
	ID   int
	Item string
}

func main() {
	var mu sync.Mutex
	var failures []error
	m := eventbus.New[Order](eventbus.WithWorkers(4), eventbus.WithErrorHandler(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, err)
	}))
	var billed, reserved, notified, audited, shipped atomic.Int64
	must := func(_ *eventbus.Listener, err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	must(m.RegisterListener("order.created", func(_ context.Context, e eventbus.Event[Order]) error {
		billed.Add(1)
		return nil
	}, eventbus.Priority(10)))
	must(m.RegisterListener("order.created", func(_ context.Context, e eventbus.Event[Order]) error {
		reserved.Add(1)
		return nil
	}))
	must(m.RegisterListener("order.created", func(_ context.Context, e eventbus.Event[Order]) error {
		notified.Add(1)
		if e.Data.Item == "" {
			return errors.New("no item to notify about")
		}
		return nil
	}))
	must(m.RegisterListener("order.shipped", func(_ context.Context, e eventbus.Event[Order]) error {
		shipped.Add(1)
		return nil
	}))
	must(m.RegisterListener("order.>", func(_ context.Context, e eventbus.Event[Order]) error {
		audited.Add(1)
		return nil
	}))

	ctx := context.Background()
	// One order, handled synchronously, like the seed example.
	if err := m.EmitSync(ctx, "order.created", Order{ID: 123, Item: "Coffee"}); err != nil {
		fmt.Println("unexpected:", err)
	}
	fmt.Printf("Processing order #%d for %s: billed=%d reserved=%d notified=%d\n", 123, "Coffee", billed.Load(), reserved.Load(), notified.Load())

	// A bad order: the notification listener fails; EmitSync returns it.
	if err := m.EmitSync(ctx, "order.created", Order{ID: 124}); err != nil {
		fmt.Println("order #124 reported:", err)
	}

	// A burst through the pool, then shipping for each.
	const burst = 1000
	for i := range burst {
		if err := m.Emit(ctx, "order.created", Order{ID: 1000 + i, Item: "Tea"}); err != nil {
			fmt.Println("emit:", err)
		}
		if err := m.Emit(ctx, "order.shipped", Order{ID: 1000 + i, Item: "Tea"}); err != nil {
			fmt.Println("emit:", err)
		}
	}
	if err := m.Emit(ctx, "order.created", Order{ID: 9999}); err != nil { // fails asynchronously
		fmt.Println("emit:", err)
	}
	if err := m.Close(ctx); err != nil {
		fmt.Println("close:", err)
	}
	fmt.Printf("after Close: billed=%d reserved=%d notified=%d shipped=%d audited=%d\n",
		billed.Load(), reserved.Load(), notified.Load(), shipped.Load(), audited.Load())
	mu.Lock()
	for _, err := range failures {
		fmt.Println("error handler got:", err)
	}
	mu.Unlock()
	s := m.Stats()
	fmt.Printf("stats: emitted=%d matched=%d delivered=%d failed=%d panicked=%d rejected=%d queued=%d running=%d\n",
		s.Emitted, s.Matched, s.Delivered, s.Failed, s.Panicked, s.Rejected, s.Queued, s.Running)
}
