package watermillbus_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventbus-go/eventbus/watermillbus"
)

func Example() {
	ps, err := watermillbus.New(watermillbus.WithPersistence(100))
	if err != nil {
		panic(err)
	}
	defer ps.Close()

	// Published before anyone subscribed: kept by WithPersistence.
	_ = ps.Publish("orders.placed", message.NewMessage("1", []byte("coffee")))

	msgs, err := ps.Subscribe(context.Background(), "orders.placed")
	if err != nil {
		panic(err)
	}
	_ = ps.Publish("orders.placed", message.NewMessage("2", []byte("tea")))

	m := <-msgs
	fmt.Println(m.UUID, string(m.Payload))
	m.Nack() // comes again before the next one
	m = <-msgs
	fmt.Println(m.UUID, string(m.Payload), "again")
	m.Ack()
	m = <-msgs
	fmt.Println(m.UUID, string(m.Payload))
	m.Ack()
	// Output:
	// 1 coffee
	// 1 coffee again
	// 2 tea
}

func ExampleEventName() {
	for _, topic := range []string{"orders.placed", "a..b", "", "50% off", "x.*"} {
		fmt.Printf("%q -> %q\n", topic, watermillbus.EventName(topic))
	}
	// Output:
	// "orders.placed" -> "orders.placed"
	// "a..b" -> "a.%.b"
	// "" -> "%"
	// "50% off" -> "50%25%20off"
	// "x.*" -> "x.%2A"
}
