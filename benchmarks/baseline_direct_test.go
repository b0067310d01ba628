package benchmarks

import (
	"sync"
	"testing"
)

// directLibrary is the floor for synchronous delivery: Emit calls each
// handler in turn, with nothing between the emitter and the handlers but
// the adapter's own method call.
func directLibrary() library {
	return library{
		name: "direct",
		newSync: func(_ testing.TB, handlers []func(int)) emitter {
			return direct(handlers)
		},
		newChurn: func(testing.TB) churner {
			return &directChurn{topics: map[string][]*func(int){}}
		},
	}
}

type direct []func(int)

func (d direct) Emit(seq int) error {
	for _, h := range d {
		h(seq)
	}
	return nil
}

func (direct) Close() error { return nil }

// directChurn is the floor for churn: a map of topic to handlers under a
// read-write mutex, a topic deleted with its last handler.
type directChurn struct {
	mu     sync.RWMutex
	topics map[string][]*func(int)
}

func (d *directChurn) Subscribe(topic string, h func(int)) (func() error, error) {
	p := &h
	d.mu.Lock()
	d.topics[topic] = append(d.topics[topic], p)
	d.mu.Unlock()
	return func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		hs := d.topics[topic]
		for i, x := range hs {
			if x == p {
				hs = append(hs[:i:i], hs[i+1:]...)
				break
			}
		}
		if len(hs) == 0 {
			delete(d.topics, topic)
		} else {
			d.topics[topic] = hs
		}
		return nil
	}, nil
}

func (d *directChurn) Publish(topic string, seq int) error {
	d.mu.RLock()
	hs := d.topics[topic]
	d.mu.RUnlock()
	for _, h := range hs {
		(*h)(seq)
	}
	return nil
}

func (*directChurn) Close() error { return nil }
