// Command orders is a small order-handling service built on eventbus:
// several listeners react to new orders, a wildcard audit listener sees every
// order event, a failing listener is reported, and Close drains everything
// before the final Stats.
//
// The burst goes through the worker pool: a few goroutines take each of their
// orders through its lifecycle (created, paid, shipped) with Emit, all at
// once. A lifecycle listener registered with OrderedBy, keyed by order ID,
// sees each order's events in the order they were emitted while different
// orders run in parallel; the program checks that and exits 1 if any order's
// events arrived out of order.
package main

import (
	"context"
	"errors"
	"fmt"
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

// lifecycle lists the events of one order, in the order they must happen.
var lifecycle = []string{"order.created", "order.paid", "order.shipped"}

// lifecycleCheck follows each order through its lifecycle. Its listener is
// registered with OrderedBy, so it runs for one order one event at a time, but
// for different orders in parallel: the mutex is for the map they share.
type lifecycleCheck struct {
	mu         sync.Mutex
	next       map[int]int // order ID → index in lifecycle of its next event; deleted when done
	completed  int         // orders that went through every stage in order
	outOfOrder int         // events that were not their order's next stage
}

func (c *lifecycleCheck) handle(_ context.Context, e eventbus.Event[Order]) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := c.next[e.Data.ID]
	if lifecycle[next] != e.Name {
		c.outOfOrder++
		return fmt.Errorf("order #%d: %s out of order", e.Data.ID, e.Name)
	}
	c.next[e.Data.ID] = next + 1
	if next+1 == len(lifecycle) {
		c.completed++
		delete(c.next, e.Data.ID)
	}
	return nil
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
	// One listener for the whole lifecycle: ordering holds per listener, so
	// the three events must reach the same one. The key keeps each order's
	// events in emit order; different orders do not wait for each other.
	check := &lifecycleCheck{next: map[int]int{}}
	must(m.RegisterListener("order.>", check.handle, eventbus.OrderedBy(func(e eventbus.Event[Order]) string {
		return strconv.Itoa(e.Data.ID)
	})))

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

	// A burst through the pool: each emitter takes its orders through their
	// lifecycle, and the emitters run at the same time.
	const emitters, ordersEach = 4, 250
	var wg sync.WaitGroup
	for g := range emitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ordersEach {
				order := Order{ID: 1000 + g*ordersEach + i, Item: "Tea"}
				for _, name := range lifecycle {
					if err := m.Emit(ctx, name, order); err != nil {
						fmt.Println("emit:", err)
					}
				}
			}
		}()
	}
	wg.Wait()
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
	// Close has returned, so no handler runs any more. Orders 123, 124 and
	// 9999 were only created: they are the ones not shipped.
	fmt.Printf("lifecycle: %d orders created, paid and shipped in order; %d events out of order; %d orders not shipped\n",
		check.completed, check.outOfOrder, len(check.next))
	if check.outOfOrder > 0 {
		os.Exit(1)
	}
}
