package benchmarks

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
)

// watermillLibrary measures watermill's in-process Pub/Sub,
// pubsub/gochannel, the way its getting-started guide uses it: messages
// made with message.NewMessage(watermill.NewUUID(), payload), and one
// goroutine per subscription ranging over the channel Subscribe returns
// and acking each message after handling it. The default Config is used.
//
// Publish never waits: it starts a goroutine per message (and one per
// subscriber of it) that delivers the message and waits for its ack. It is
// asynchronous only; BlockPublishUntilSubscriberAck makes Publish wait for
// the ack but still runs the handler on another goroutine, so watermill is
// absent from the synchronous scenarios.
func watermillLibrary() library {
	return library{
		name: "watermill",
		newAsync: func(tb testing.TB, handlers []func(int)) emitter {
			tb.Helper()
			w := &watermillBus{ps: gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})}
			w.wg.Add(len(handlers))
			for _, h := range handlers {
				msgs, err := w.ps.Subscribe(context.Background(), topic)
				if err != nil {
					tb.Fatalf("watermill: subscribe: %v", err)
				}
				go func() {
					defer w.wg.Done()
					for msg := range msgs {
						h(int(binary.LittleEndian.Uint64(msg.Payload)))
						msg.Ack()
					}
				}()
			}
			return w
		},
		newChurn: func(testing.TB) churner {
			return &watermillChurn{ps: gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})}
		},
	}
}

type watermillBus struct {
	ps *gochannel.GoChannel
	wg sync.WaitGroup
}

func (w *watermillBus) Emit(seq int) error {
	payload := binary.LittleEndian.AppendUint64(make([]byte, 0, 8), uint64(seq))
	return w.ps.Publish(topic, message.NewMessage(watermill.NewUUID(), payload))
}

// Close closes the Pub/Sub, which closes the subscription channels, and
// waits for the listeners to return. Callers wait for every delivery
// first: a message still in flight when Close is called is discarded.
func (w *watermillBus) Close() error {
	err := w.ps.Close()
	w.wg.Wait()
	return err
}

// watermillChurn subscribes with a context of the subscription's own and a
// goroutine ranging over the channel Subscribe returns; cancelling the
// context ends the subscription, which closes the channel and so ends the
// goroutine.
type watermillChurn struct {
	ps *gochannel.GoChannel
	wg sync.WaitGroup
}

func (w *watermillChurn) Subscribe(topic string, h func(int)) (func() error, error) {
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := w.ps.Subscribe(ctx, topic)
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan struct{})
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(done)
		for msg := range msgs {
			h(int(binary.LittleEndian.Uint64(msg.Payload)))
			msg.Ack()
		}
	}()
	return func() error {
		cancel()
		<-done
		return nil
	}, nil
}

func (w *watermillChurn) Publish(topic string, seq int) error {
	payload := binary.LittleEndian.AppendUint64(make([]byte, 0, 8), uint64(seq))
	return w.ps.Publish(topic, message.NewMessage(watermill.NewUUID(), payload))
}

// Close closes the Pub/Sub, which ends the subscriptions left, and waits for
// their goroutines.
func (w *watermillChurn) Close() error {
	err := w.ps.Close()
	w.wg.Wait()
	return err
}
