// Command orders-watermill runs watermill's Router on eventbus: a
// watermillbus.PubSub is the Router's publisher and subscriber, so its
// handlers, middlewares and correlation IDs work unchanged in one process.
//
// Orders are published to "orders.placed". The "reserve-stock" handler
// reserves stock for each one and returns a "stock.reserved" message; the
// warehouse is busy the first time it sees order-3, and the Retry
// middleware runs the handler again. The CorrelationID middleware copies
// each order's correlation ID onto the message the handler returns. The
// "ship" handler prints each reservation, in order, with its correlation
// ID. The program exits 0 once every order has shipped.
//
//	go run .
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/eventbus-go/eventbus/watermillbus"
)

const orders = 5

// errWarehouseBusy is the transient failure the Retry middleware absorbs.
var errWarehouseBusy = errors.New("warehouse busy")

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ps, err := watermillbus.New()
	if err != nil {
		return err
	}
	defer ps.Close()

	logger := watermill.NopLogger{}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
	if err != nil {
		return err
	}
	router.AddMiddleware(
		middleware.CorrelationID,
		middleware.Retry{MaxRetries: 3, InitialInterval: 10 * time.Millisecond, Logger: logger}.Middleware,
		middleware.Recoverer,
	)

	router.AddHandler("reserve-stock", "orders.placed", ps, "stock.reserved", ps, reserver())
	shipped := make(chan struct{}, orders)
	router.AddConsumerHandler("ship", "stock.reserved", ps, func(msg *message.Message) error {
		fmt.Printf("%s shipped: %s, correlation ID %s, stock reserved after %s attempt(s)\n",
			msg.Metadata.Get("order"), msg.Payload, middleware.MessageCorrelationID(msg), msg.Metadata.Get("attempts"))
		shipped <- struct{}{}
		return nil
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	select {
	case <-router.Running(): // subscribed: messages published now are delivered
	case err := <-done:
		return fmt.Errorf("router: %w", err)
	}

	for i := 1; i <= orders; i++ {
		id := "order-" + strconv.Itoa(i)
		msg := message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i)+" × widget"))
		msg.Metadata.Set("order", id)
		middleware.SetCorrelationID("corr-"+id, msg)
		if err := ps.Publish("orders.placed", msg); err != nil {
			return err
		}
	}
	for range orders {
		select {
		case <-shipped:
		case err := <-done:
			return fmt.Errorf("router stopped early: %v", err)
		}
	}

	cancel() // stops the router: its subscriptions end, its handlers return
	if err := <-done; err != nil {
		return fmt.Errorf("router: %w", err)
	}
	if err := ps.Close(); err != nil {
		return err
	}
	s := ps.Stats()
	fmt.Fprintf(os.Stdout, "published %d, acked %d, nacked %d\n", s.Published, s.Acked, s.Nacked)
	return nil
}

// reserver returns the "reserve-stock" handler. The warehouse is busy on
// the first attempt for order-3; the Retry middleware calls the handler
// again, on the same message, before it is acked.
func reserver() message.HandlerFunc {
	attempts := map[string]int{} // the handler runs one message at a time
	return func(msg *message.Message) ([]*message.Message, error) {
		order := msg.Metadata.Get("order")
		attempts[order]++
		if order == "order-3" && attempts[order] == 1 {
			return nil, fmt.Errorf("reserve %s: %w", order, errWarehouseBusy)
		}
		out := message.NewMessage(watermill.NewUUID(), msg.Payload)
		out.Metadata.Set("order", order)
		out.Metadata.Set("attempts", strconv.Itoa(attempts[order]))
		return []*message.Message{out}, nil
	}
}
