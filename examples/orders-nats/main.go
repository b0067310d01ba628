// Command orders-nats runs the orders example as two services that talk
// through NATS: an order-taking service places orders, and a fulfilment
// service reserves stock and answers with "shipped" or "backordered". Each
// service has its own EventManager, NATS connection and natsbus bridge, in
// JetStream (at-least-once) mode.
//
//	go run .                                  # embedded server, both services
//	go run . -nats nats://host:4222           # a real server (JetStream on)
//	go run . -nats nats://host:4222 -role fulfilment   # one service per process
//	go run . -nats nats://host:4222 -role orders
//	go run . -chaos                           # 3-node cluster, a node dies mid-stream
//
// With no -nats flag it starts an embedded nats-server on 127.0.0.1 with a
// random port and a temporary store, so it runs on a fresh machine. It
// exits 0 once every order has an outcome.
//
// With -chaos it starts three clustered embedded servers instead, has the
// bridges provision a stream with three replicas, publishes -events events
// at -rate per second from a bridge on the stream leader's node to three
// bridges sharing one durable (one per node), shuts the leader's node down
// a third of the way through, and prints what was published, delivered,
// duplicated and lost. It exits 1 if an event failed or was lost.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// ShopEvent is the one event type both services share. Its JSON encoding
// is the wire format, so a service in another language can take part.
type ShopEvent struct {
	OrderID string `json:"order_id"`
	Item    string `json:"item"`
	Qty     int    `json:"qty"`
	Reason  string `json:"reason,omitempty"`
}

// Subjects: every event travels as "shop.<event name>". The stream SHOP
// keeps them all.
const (
	prefix     = "shop."
	streamName = "SHOP"
)

type correlationKey struct{}

// correlation carries the correlation ID in the Correlation-Id header.
var correlation = natsbus.WithPropagator(natsbus.ContextValue("Correlation-Id", correlationKey{}))

func main() {
	url := flag.String("nats", "", "NATS server URL; empty starts an embedded server")
	role := flag.String("role", "both", "which service to run: both, orders or fulfilment")
	orders := flag.Int("orders", 6, "how many orders to place (orders) or handle (fulfilment)")
	timeout := flag.Duration("timeout", 30*time.Second, "give up after this long")
	chaos := flag.Bool("chaos", false, "run a 3-node cluster, shut the stream leader's node down mid-stream, and print what was published, delivered, duplicated and lost")
	events := flag.Int("events", 20000, "with -chaos: how many events to publish")
	rate := flag.Int("rate", 2000, "with -chaos: events per second")
	flag.Parse()
	log.SetFlags(0)
	if *chaos {
		ctx, cancel := context.WithTimeout(context.Background(), max(*timeout, 2*time.Minute))
		rep, err := runChaos(ctx, *events, *rate)
		cancel()
		if err == nil && (rep.Lost > 0 || rep.PublishErrors+rep.Unconfirmed > 0) {
			err = errors.New("events failed or lost")
		}
		if err != nil {
			log.Printf("orders-nats: chaos: %v", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*url, *role, *orders, *timeout); err != nil {
		log.Printf("orders-nats: %v", err)
		os.Exit(1)
	}
}

func run(url, role string, n int, timeout time.Duration) error {
	if role != "both" && role != "orders" && role != "fulfilment" {
		return fmt.Errorf("unknown -role %q", role)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	if url == "" {
		srv, dir, err := startEmbedded()
		if err != nil {
			return err
		}
		defer func() {
			srv.Shutdown()
			srv.WaitForShutdown()
			_ = os.RemoveAll(dir)
		}()
		url = srv.ClientURL()
		fmt.Printf("nats       embedded server at %s (JetStream, store %s)\n", url, dir)
	} else {
		fmt.Printf("nats       using %s\n", url)
	}
	if err := ensureStream(ctx, url); err != nil {
		return err
	}

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	start := func(name string, f func(context.Context, string, int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx, url, n); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	if role != "orders" {
		start("fulfilment", runFulfilment)
	}
	if role != "fulfilment" {
		start("orders", runOrders)
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func startEmbedded() (*server.Server, string, error) {
	dir, err := os.MkdirTemp("", "orders-nats-*")
	if err != nil {
		return nil, "", err
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: dir,
	})
	if err != nil {
		return nil, "", err
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, "", errors.New("embedded nats-server did not start")
	}
	return srv, dir, nil
}

// ensureStream creates the SHOP stream if it is missing. In production the
// stream is usually managed by operations (nats CLI, terraform, ...).
func ensureStream(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Name("orders-nats setup"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:     streamName,
		Subjects: []string{prefix + ">"},
		Storage:  jetstream.FileStorage,
		MaxAge:   24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", streamName, err)
	}
	return nil
}

// service holds what each side owns, and stops it in the right order:
// bridge (drained), EventManager, connection.
type service struct {
	name   string
	nc     *nats.Conn
	m      *eventbus.EventManager[ShopEvent]
	bridge *natsbus.Bridge[ShopEvent]
}

func newService(ctx context.Context, name, url string, opts ...natsbus.Option) (*service, error) {
	nc, err := nats.Connect(url, nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, err
	}
	m := eventbus.New[ShopEvent](eventbus.WithErrorHandler(func(err error) {
		say(name, "listener error: %v", err)
	}))
	opts = append(opts, correlation, natsbus.WithSubjectPrefix(prefix),
		natsbus.WithErrorHandler(func(err error) { say(name, "bridge error: %v", err) }))
	b, err := natsbus.New(ctx, m, nc, opts...)
	if err != nil {
		_ = m.Close(ctx)
		nc.Close()
		return nil, err
	}
	return &service{name: name, nc: nc, m: m, bridge: b}, nil
}

func (s *service) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.m.Flush(ctx)
	if err := s.bridge.Drain(ctx); err != nil {
		say(s.name, "drain: %v", err)
	}
	_ = s.m.Close(ctx)
	s.nc.Close()
}

func say(who, format string, args ...any) {
	fmt.Printf("%-10s %s\n", who, fmt.Sprintf(format, args...))
}

// runOrders places n orders and waits until each is shipped or backordered.
func runOrders(ctx context.Context, url string, n int) error {
	s, err := newService(ctx, "orders", url,
		natsbus.Outbound("order.>"),
		natsbus.Inbound("fulfilment.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: streamName, Durable: "orders"}))
	if err != nil {
		return err
	}
	defer s.stop()

	run := nuid.Next()[:6] // orders of earlier runs on a real server are ignored
	var mu sync.Mutex
	outcome := map[string]string{}
	done := make(chan struct{})
	_, err = s.m.RegisterListener("fulfilment.*", func(ctx context.Context, e eventbus.Event[ShopEvent]) error {
		if !strings.HasPrefix(e.Data.OrderID, run) {
			return nil
		}
		status := strings.TrimPrefix(e.Name, "fulfilment.")
		detail := ""
		if e.Data.Reason != "" {
			detail = " (" + e.Data.Reason + ")"
		}
		say("orders", "%-12s %s%s", status, e.Data.OrderID, detail)
		mu.Lock()
		defer mu.Unlock()
		if _, seen := outcome[e.Data.OrderID]; !seen { // at-least-once: ignore repeats
			outcome[e.Data.OrderID] = status
			if len(outcome) == n {
				close(done)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}

	items := []string{"book", "lamp", "book", "chair", "book", "lamp"}
	for i := range n {
		o := ShopEvent{OrderID: fmt.Sprintf("%s-%d", run, i+1), Item: items[i%len(items)], Qty: 1 + i%3}
		octx := context.WithValue(ctx, correlationKey{}, "corr-"+o.OrderID)
		if err := s.m.EmitSync(octx, "order.placed", o); err != nil {
			return err
		}
		say("orders", "%-12s %s: %d x %s", "placed", o.OrderID, o.Qty, o.Item)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for outcomes: %w", ctx.Err())
	}
	// Publish outcomes are counted when their acks arrive, which may be
	// after the answers: wait for them before reading the counters.
	if err := s.bridge.Flush(ctx); err != nil {
		return err
	}
	mu.Lock()
	counts := map[string]int{}
	for _, st := range outcome {
		counts[st]++
	}
	mu.Unlock()
	st := s.bridge.Stats()
	say("orders", "summary: %d orders, %d shipped, %d backordered; bridge published %d, received %d",
		n, counts["shipped"], counts["backordered"], st.Published, st.Received)
	return nil
}

// runFulfilment reserves stock for each placed order and reports the
// outcome, until it has handled n orders.
func runFulfilment(ctx context.Context, url string, n int) error {
	s, err := newService(ctx, "fulfilment", url,
		natsbus.Inbound("order.placed"),
		natsbus.Outbound("fulfilment.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: streamName, Durable: "fulfilment"}))
	if err != nil {
		return err
	}
	defer s.stop()

	var mu sync.Mutex
	stock := map[string]int{"book": 4, "lamp": 2, "chair": 5}
	handled := map[string]bool{}
	done := make(chan struct{})
	_, err = s.m.RegisterListener("order.placed", func(ctx context.Context, e eventbus.Event[ShopEvent]) error {
		corr, _ := ctx.Value(correlationKey{}).(string)
		mu.Lock()
		defer mu.Unlock()
		if handled[e.Data.OrderID] { // at-least-once: a redelivery
			return nil
		}
		o := e.Data
		name := "fulfilment.shipped"
		if stock[o.Item] >= o.Qty {
			stock[o.Item] -= o.Qty
			say("fulfilment", "%-12s %s: %d x %s, %d left (correlation %s)", "reserved", o.OrderID, o.Qty, o.Item, stock[o.Item], corr)
		} else {
			name = "fulfilment.backordered"
			o.Reason = fmt.Sprintf("only %d %s in stock", stock[o.Item], o.Item)
			say("fulfilment", "%-12s %s: %s (correlation %s)", "short", o.OrderID, o.Reason, corr)
		}
		// The listener's context carries the correlation ID on to the
		// answer. Returning the error makes JetStream redeliver.
		if err := s.m.EmitSync(ctx, name, o); err != nil {
			return err
		}
		handled[o.OrderID] = true
		if len(handled) == n {
			close(done)
		}
		return nil
	})
	if err != nil {
		return err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for orders: %w", ctx.Err())
	}
	if err := s.bridge.Flush(ctx); err != nil { // wait for the answers' acks
		return err
	}
	st := s.bridge.Stats()
	say("fulfilment", "summary: handled %d orders; bridge received %d, published %d", n, st.Received, st.Published)
	return nil
}
