package benchmarks

import (
	"sync"
	"testing"

	"github.com/cskr/pubsub"
)

// cskrLibrary measures github.com/cskr/pubsub, which is asynchronous only:
// Pub hands the message to the PubSub's own goroutine, which sends it on
// each subscriber's buffered channel (blocking while one is full). Each
// listener is a goroutine ranging over its channel, as the package example
// does; the channels get the channel baseline's buffer size.
func cskrLibrary() library {
	return library{
		name: "cskr",
		newAsync: func(_ testing.TB, handlers []func(int)) emitter {
			c := &cskrBus{ps: pubsub.New(queueSize)}
			c.wg.Add(len(handlers))
			for _, h := range handlers {
				ch := c.ps.Sub(topic)
				go func() {
					defer c.wg.Done()
					for msg := range ch {
						h(msg.(int))
					}
				}()
			}
			return c
		},
		newChurn: func(testing.TB) churner {
			return &cskrChurn{ps: pubsub.New(churnCapacity)}
		},
	}
}

type cskrBus struct {
	ps *pubsub.PubSub
	wg sync.WaitGroup
}

func (c *cskrBus) Emit(seq int) error {
	c.ps.Pub(seq, topic)
	return nil
}

// Close shuts the PubSub down, which closes every subscriber channel once
// the messages published before it are queued, and waits for the
// listeners to drain them.
func (c *cskrBus) Close() error {
	c.ps.Shutdown()
	c.wg.Wait()
	return nil
}

// churnCapacity is the channel buffer of a cskr subscription in the churn
// scenarios: each receives a single event, and a buffer of queueSize would
// make the scenario measure the allocation of its channel.
const churnCapacity = 1

// cskrChurn gives each subscription its Sub channel and a goroutine ranging
// over it. Unsub closes the channel once it has no topic left, which ends
// the goroutine.
type cskrChurn struct {
	ps *pubsub.PubSub
	wg sync.WaitGroup
}

func (c *cskrChurn) Subscribe(topic string, h func(int)) (func() error, error) {
	ch := c.ps.Sub(topic)
	done := make(chan struct{})
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(done)
		for msg := range ch {
			h(msg.(int))
		}
	}()
	return func() error {
		c.ps.Unsub(ch, topic)
		<-done
		return nil
	}, nil
}

func (c *cskrChurn) Publish(topic string, seq int) error {
	c.ps.Pub(seq, topic)
	return nil
}

// Close shuts the PubSub down, which closes the channels of the
// subscriptions left, and waits for their goroutines.
func (c *cskrChurn) Close() error {
	c.ps.Shutdown()
	c.wg.Wait()
	return nil
}
