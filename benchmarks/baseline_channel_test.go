package benchmarks

import (
	"runtime"
	"sync"
	"testing"
)

// queueSize is the buffer of the channel baseline, and the queue size given
// to every library that asks for one, so that all bounded queues hold the
// same number of events.
const queueSize = 1024

// channelLibrary is the floor for asynchronous delivery: a buffered channel
// feeding GOMAXPROCS worker goroutines, each of which calls every handler
// for each event it receives. Emit blocks while the channel is full.
func channelLibrary() library {
	return library{
		name: "channel",
		newAsync: func(_ testing.TB, handlers []func(int)) emitter {
			c := &channelBus{ch: make(chan int, queueSize)}
			workers := runtime.GOMAXPROCS(0)
			c.wg.Add(workers)
			for range workers {
				go func() {
					defer c.wg.Done()
					for seq := range c.ch {
						for _, h := range handlers {
							h(seq)
						}
					}
				}()
			}
			return c
		},
	}
}

type channelBus struct {
	ch chan int
	wg sync.WaitGroup
}

func (c *channelBus) Emit(seq int) error {
	c.ch <- seq
	return nil
}

func (c *channelBus) Close() error {
	close(c.ch)
	c.wg.Wait()
	return nil
}
