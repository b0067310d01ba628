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
