// Command orders is a small order-handling service built on eventbus: one
// EventManager[any] carries three typed topics (order.created, order.paid,
// order.shipped), named listeners react to them, a wildcard audit listener
// sees every order event whatever its type, failed deliveries are parked as
// dead letters, and Close drains everything before the final Stats.
//
// It checks two things and exits 1 if either fails:
//
//   - Ordering: a few goroutines take each of their orders through its
//     lifecycle (created, paid, shipped) with Emit, all at once. A lifecycle
//     listener registered with OrderedBy, keyed by order ID, must see each
//     order's events in the order they were emitted, while different orders
//     run in parallel.
//   - Isolation: a slow "email" listener (20 ms per mail, two at a time) and
//     a fast "inventory" listener share the order.created topic. Inventory
//     must not be held back to email's pace: when inventory has handled
//     every mailed order, email must still be far from done.
//
// Its output explains every figure it prints, indented under the line that
// prints it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventbus-go/eventbus"
)

// The events, one Go type per topic. Each knows its order's ID.
type (
	OrderCreated struct {
		ID    int
		Item  string
		Email string // where to mail the confirmation; "" for none
	}
	OrderPaid struct {
		ID    int
		Cents int
	}
	OrderShipped struct {
		ID      int
		Carrier string
	}
)

type orderEvent interface{ OrderID() int }

func (o OrderCreated) OrderID() int { return o.ID }
func (o OrderPaid) OrderID() int    { return o.ID }
func (o OrderShipped) OrderID() int { return o.ID }

// lifecycle lists the events of one order, in the order they must happen.
var lifecycle = []string{"order.created", "order.paid", "order.shipped"}

// lifecycleCheck follows each order through its lifecycle. Its listener is
// registered with OrderedBy, so it runs for one order one event at a time,
// but for different orders in parallel: the mutex is for the map they share.
type lifecycleCheck struct {
	mu         sync.Mutex
	next       map[int]int // order ID → index in lifecycle of its next event; deleted when done
	completed  int         // orders that went through every stage in order
	outOfOrder int         // events that were not their order's next stage
}

func (c *lifecycleCheck) handle(_ context.Context, e eventbus.Event[any]) error {
	id := e.Data.(orderEvent).OrderID()
	c.mu.Lock()
	defer c.mu.Unlock()
	next := c.next[id]
	if lifecycle[next] != e.Name {
		c.outOfOrder++
		return fmt.Errorf("order #%d: %s out of order", id, e.Name)
	}
	c.next[id] = next + 1
	if next+1 == len(lifecycle) {
		c.completed++
		delete(c.next, id)
	}
	return nil
}

// isolation measures the email and inventory listeners on the orders that
// have an email address.
type isolation struct {
	orders         int           // mailed orders emitted
	start          time.Time     // when the first was emitted
	email, stock   atomic.Int64  // mailed orders each listener has handled
	emailWhenStock atomic.Int64  // email's count when inventory had handled them all
	stockTook      time.Duration // set before stockDone is closed
	stockDone      chan struct{}
}

func main() { os.Exit(run(os.Stdout, os.Stderr)) }

// run is the program, writing its report to out and its failures to errOut;
// it returns the exit code.
func run(out, errOut io.Writer) int {
	// Dead letters: failed deliveries, parked by the error handler with
	// their event, data and listener, so that they can be replayed to that
	// listener alone (see below). ctx is the delivery's: with otelbus, a
	// logger whose handler is otelbus.LogHandler would put its trace_id on
	// the line.
	var mu sync.Mutex
	var dead []*eventbus.ListenerError
	m := eventbus.New[any](eventbus.WithWorkers(4), eventbus.WithErrorHandler(func(ctx context.Context, lerr *eventbus.ListenerError) {
		mu.Lock()
		defer mu.Unlock()
		dead = append(dead, lerr)
	}))
	created := must(eventbus.NewTopic[OrderCreated](m, "order.created"))
	paid := must(eventbus.NewTopic[OrderPaid](m, "order.paid"))
	shipped := must(eventbus.NewTopic[OrderShipped](m, "order.shipped"))

	iso := &isolation{orders: 100, stockDone: make(chan struct{})}
	var billed, reserved, receipts, delivered atomic.Int64
	audited := map[string]*atomic.Int64{"created": {}, "paid": {}, "shipped": {}}
	must(created.Listen(func(_ context.Context, e eventbus.Event[OrderCreated]) error {
		billed.Add(1)
		return nil
	}, eventbus.Name("billing"), eventbus.Priority(10)))
	must(created.Listen(func(_ context.Context, e eventbus.Event[OrderCreated]) error {
		reserved.Add(1)
		if e.Data.Email != "" && iso.stock.Add(1) == int64(iso.orders) {
			iso.emailWhenStock.Store(iso.email.Load())
			iso.stockTook = time.Since(iso.start)
			close(iso.stockDone)
		}
		return nil
	}, eventbus.Name("inventory")))
	must(created.Listen(func(_ context.Context, e eventbus.Event[OrderCreated]) error {
		if e.Data.Email == "" {
			return nil // nothing to mail
		}
		time.Sleep(20 * time.Millisecond) // the mail server is slow
		iso.email.Add(1)
		return nil
	}, eventbus.Name("email"), eventbus.Concurrency(2)))
	must(created.Listen(func(_ context.Context, e eventbus.Event[OrderCreated]) error {
		if e.Data.Item == "" {
			return errors.New("no item to put on the receipt")
		}
		receipts.Add(1)
		return nil
	}, eventbus.Name("receipt")))
	must(shipped.Listen(func(_ context.Context, e eventbus.Event[OrderShipped]) error {
		delivered.Add(1)
		return nil
	}, eventbus.Name("tracking")))
	// The audit listener sees every topic, each with its own type.
	must(m.RegisterListener("order.>", func(_ context.Context, e eventbus.Event[any]) error {
		switch e.Data.(type) {
		case OrderCreated:
			audited["created"].Add(1)
		case OrderPaid:
			audited["paid"].Add(1)
		case OrderShipped:
			audited["shipped"].Add(1)
		default:
			return fmt.Errorf("unexpected %T", e.Data)
		}
		return nil
	}, eventbus.Name("audit")))
	// One listener for the whole lifecycle: ordering holds per listener, so
	// the three events must reach the same one. The key keeps each order's
	// events in emit order; different orders do not wait for each other.
	check := &lifecycleCheck{next: map[int]int{}}
	must(m.RegisterListener("order.>", check.handle, eventbus.Name("lifecycle"),
		eventbus.OrderedBy(func(e eventbus.Event[any]) string {
			return strconv.Itoa(e.Data.(orderEvent).OrderID())
		})))

	ctx := context.Background()
	// One order, handled synchronously.
	if err := created.EmitSync(ctx, OrderCreated{ID: 123, Item: "Coffee"}); err != nil {
		fmt.Fprintln(out, "unexpected:", err)
	}
	fmt.Fprintf(out, "Processing order #%d for %s: billed=%d reserved=%d receipts=%d\n", 123, "Coffee", billed.Load(), reserved.Load(), receipts.Load())

	// A bad order: the receipt listener fails; EmitSync returns it.
	if err := created.EmitSync(ctx, OrderCreated{ID: 124}); err != nil {
		fmt.Fprintln(out, "order #124 reported:", err)
	}

	// The topics are typed: the EventManager refuses a value of another
	// type under a declared name.
	if err := m.Emit(ctx, "order.paid", OrderCreated{ID: 125}); errors.Is(err, eventbus.ErrTypeMismatch) {
		fmt.Fprintln(out, "refused:", err)
	}

	// Isolation: mailed orders go to the slow email listener and to the
	// fast inventory listener. Inventory runs on its own schedule.
	iso.start = time.Now()
	for i := range iso.orders {
		if err := created.Emit(ctx, OrderCreated{ID: 200 + i, Item: "Book", Email: "reader@example.com"}); err != nil {
			fmt.Fprintln(out, "emit:", err)
		}
	}
	<-iso.stockDone
	if err := m.Flush(ctx); err != nil {
		fmt.Fprintln(out, "flush:", err)
	}
	emailTook := time.Since(iso.start)
	fmt.Fprintf(out, "isolation: inventory handled %d mailed orders in %v (%.0f events/s); email had sent %d of them by then, and needed %v for all (%.0f events/s)\n",
		iso.orders, precise(iso.stockTook), rate(iso.orders, iso.stockTook),
		iso.emailWhenStock.Load(), precise(emailTook), rate(iso.orders, emailTook))
	fmt.Fprintln(out, "  both times run from the first emit; email sends two mails at a time, 20 ms each, so it needs about 1 s for 100,")
	fmt.Fprintln(out, "  while inventory, on the same topic, runs on its own schedule and is not held back to email's pace")

	// A burst through the pool: each emitter takes its orders through their
	// lifecycle, and the emitters run at the same time.
	const emitters, ordersEach = 4, 250
	var wg sync.WaitGroup
	for g := range emitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ordersEach {
				id := 1000 + g*ordersEach + i
				for _, err := range []error{
					created.Emit(ctx, OrderCreated{ID: id, Item: "Tea"}),
					paid.Emit(ctx, OrderPaid{ID: id, Cents: 350}),
					shipped.Emit(ctx, OrderShipped{ID: id, Carrier: "post"}),
				} {
					if err != nil {
						fmt.Fprintln(out, "emit:", err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := created.Emit(ctx, OrderCreated{ID: 9999}); err != nil { // fails asynchronously
		fmt.Fprintln(out, "emit:", err)
	}
	if err := m.Flush(ctx); err != nil {
		fmt.Fprintln(out, "flush:", err)
	}

	// Replay: each dead letter goes again to the listener that failed, and
	// to it alone, through the handle the error carries. Here an operator
	// has fixed the order (it lacked its item).
	mu.Lock()
	parked := dead
	dead = nil
	mu.Unlock()
	sort.Slice(parked, func(i, j int) bool {
		return parked[i].Data.(orderEvent).OrderID() < parked[j].Data.(orderEvent).OrderID()
	})
	for _, lerr := range parked {
		fmt.Fprintf(out, "dead letter: %s %+v for %s: %v\n", lerr.Event, lerr.Data, lerr.Listener, lerr.Err)
		order := lerr.Data.(OrderCreated)
		order.Item = "Tea"
		if err := m.EmitTo(ctx, lerr.Handle, lerr.Event, order); err != nil {
			fmt.Fprintln(out, "replay:", err)
		}
	}
	fmt.Fprintf(out, "  %d dead letter: order #9999 was emitted without an item, and only receipt needs one; it was replayed to receipt alone, item added\n", len(parked))

	if err := m.Close(ctx); err != nil {
		fmt.Fprintln(out, "close:", err)
	}
	fmt.Fprintf(out, "after Close: billed=%d reserved=%d receipts=%d mailed=%d shipped=%d audited=%d/%d/%d\n",
		billed.Load(), reserved.Load(), receipts.Load(), iso.email.Load(), delivered.Load(),
		audited["created"].Load(), audited["paid"].Load(), audited["shipped"].Load())
	// Every figure above and below is explained, and checked, from what
	// this program emitted.
	burst := emitters * ordersEach
	createdN := 2 + iso.orders + burst + 1
	fmt.Fprintf(out, "  billed, reserved, audited created: %d orders created = #123 and #124 (EmitSync) + %d mailed (#200-#%d) + %d×%d from the burst + #9999\n",
		createdN, iso.orders, 199+iso.orders, emitters, ordersEach)
	fmt.Fprintf(out, "  receipts: %d = %d - #124 (no item: EmitSync returned the error, above) - #9999 + #9999 replayed with its item\n", createdN-1, createdN)
	fmt.Fprintf(out, "  mailed: the %d orders with an address; paid, shipped, audited paid/shipped: the %d orders of the burst\n", iso.orders, burst)
	mu.Lock()
	for _, lerr := range dead {
		fmt.Fprintf(out, "dead letter after the replay (unexpected): %v\n", lerr)
	}
	mu.Unlock()
	s := m.Stats()
	fmt.Fprintf(out, "stats: emitted=%d matched=%d delivered=%d failed=%d panicked=%d rejected=%d queued=%d running=%d\n",
		s.Emitted, s.Matched, s.Delivered, s.Failed, s.Panicked, s.Rejected, s.Queued, s.Running)
	emitted := 2 + iso.orders + 3*burst + 1 + len(parked)
	matched := 6*createdN + 2*burst + 3*burst + len(parked)
	fmt.Fprintf(out, "  emitted: %d = 2 EmitSync + %d mailed + 3×%d in the burst + #9999 + its replay; the mistyped order.paid was\n", emitted, iso.orders, burst)
	fmt.Fprintf(out, "  rejected instead (rejected=1). matched: %d deliveries = 6 listeners × %d order.created (billing, inventory, email,\n", matched, createdN)
	fmt.Fprintf(out, "  receipt, audit, lifecycle) + 2 × %d order.paid (audit, lifecycle) + 3 × %d order.shipped (tracking, audit, lifecycle)\n", burst, burst)
	fmt.Fprintf(out, "  + 1 replay. failed=2: receipt on #124 (returned by EmitSync) and on #9999 (the dead letter); delivered: all the others\n")
	// Close has returned, so no handler runs any more.
	fmt.Fprintf(out, "lifecycle: %d orders created, paid and shipped in order; %d events out of order; %d orders not shipped\n",
		check.completed, check.outOfOrder, len(check.next))
	fmt.Fprintf(out, "  not shipped: %d orders were only ever created: #123, #124, the %d mailed ones and #9999\n", len(check.next), iso.orders)

	failed := false
	for _, c := range []struct {
		what      string
		got, want int64
	}{
		{"billed", billed.Load(), int64(createdN)},
		{"reserved", reserved.Load(), int64(createdN)},
		{"receipts", receipts.Load(), int64(createdN - 1)},
		{"mailed", iso.email.Load(), int64(iso.orders)},
		{"shipped", delivered.Load(), int64(burst)},
		{"audited created", audited["created"].Load(), int64(createdN)},
		{"audited paid", audited["paid"].Load(), int64(burst)},
		{"audited shipped", audited["shipped"].Load(), int64(burst)},
		{"dead letters", int64(len(parked)), 1},
		{"emitted", int64(s.Emitted), int64(emitted)},
		{"matched", int64(s.Matched), int64(matched)},
		{"delivered", int64(s.Delivered), int64(matched - 2)},
		{"failed", int64(s.Failed), 2},
		{"rejected", int64(s.Rejected), 1},
		{"completed lifecycles", int64(check.completed), int64(burst)},
		{"orders not shipped", int64(len(check.next)), int64(createdN - burst)},
	} {
		if c.got != c.want {
			fmt.Fprintf(errOut, "FAIL: %s = %d, the explanation says %d\n", c.what, c.got, c.want)
			failed = true
		}
	}
	if check.outOfOrder > 0 {
		fmt.Fprintln(errOut, "FAIL: events out of order")
		failed = true
	}
	// Held back: inventory would have finished at email's pace, so email
	// would have sent most of the mails by then. Isolated, it has sent a
	// handful (it sends two at a time, 20 ms each).
	if got := iso.emailWhenStock.Load(); got >= int64(iso.orders)/2 {
		fmt.Fprintf(errOut, "FAIL: inventory was held back by email: email had sent %d of %d mails when inventory finished\n", got, iso.orders)
		failed = true
	}
	if failed {
		return 1
	}
	return 0
}

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// precise rounds d to four significant digits (625.8µs, 1.024s), where
// rounding to a fixed unit would print a fast run as 0s.
func precise(d time.Duration) time.Duration {
	unit := time.Duration(1)
	for v := d; v >= 10000; v /= 10 {
		unit *= 10
	}
	return d.Round(unit)
}

func must[T any](v T, err error) T {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return v
}
