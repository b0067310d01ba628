package watermillbus_test

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/eventbus-go/eventbus/watermillbus"
)

var (
	floodMessages = flag.Int("flood.messages", 1_000_000, "messages published per op in BenchmarkFlood")
	floodSpin     = flag.Int("flood.spin", 2_000, "rounds of busy work the flooded subscriber does per message")
)

// pubSub is what both implementations are.
type pubSub interface {
	message.Publisher
	message.Subscriber
}

// implementations are benchmarked side by side, each with its default
// configuration.
var implementations = []struct {
	name string
	new  func(testing.TB) pubSub
}{
	{"eventbus", func(tb testing.TB) pubSub {
		ps, err := watermillbus.New()
		if err != nil {
			tb.Fatal(err)
		}
		return ps
	}},
	{"gochannel", func(testing.TB) pubSub {
		return gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	}},
}

// persistent is the PubSub with persistence (a log of 1,024 messages), for
// BenchmarkPublishAck: what keeping the log costs per message.
var persistent = implementations[0]

func init() {
	persistent.name = "eventbus-persist"
	persistent.new = func(tb testing.TB) pubSub {
		ps, err := watermillbus.New(watermillbus.WithPersistence(1024))
		if err != nil {
			tb.Fatal(err)
		}
		return ps
	}
}

// consume starts n subscriptions of topic that each ack want messages,
// after spin rounds of busy work each, sampling peaks every 256, and
// returns a function that waits for them.
func consume(b *testing.B, ps pubSub, n, want, spinRounds int, p *peaks) (wait func()) {
	var wg sync.WaitGroup
	for range n {
		ch, err := ps.Subscribe(context.Background(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			for i := range want {
				m, ok := <-ch
				if !ok {
					b.Errorf("channel closed after %d of %d messages", i, want)
					return
				}
				spin(spinRounds)
				m.Ack()
				if p != nil && i%256 == 0 {
					p.sample()
				}
			}
		})
	}
	return wg.Wait
}

// BenchmarkPublishAck publishes b.N messages to subscriptions that ack each
// one at once; the clock stops when every subscription has acked them all.
// ns/op is per message, all subscriptions included.
func BenchmarkPublishAck(b *testing.B) {
	for _, subs := range []int{1, 10} {
		for _, impl := range append(implementations[:len(implementations):len(implementations)], persistent) {
			b.Run(fmt.Sprintf("subs=%d/%s", subs, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				ps := impl.new(b)
				wait := consume(b, ps, subs, b.N, 0, nil)
				msgs := newMessages(b.N)
				b.ResetTimer()
				for _, m := range msgs {
					if err := ps.Publish("bench", m); err != nil {
						b.Fatal(err)
					}
				}
				wait()
				b.StopTimer()
				if err := ps.Close(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkFlood publishes -flood.messages messages (1M by default) as fast
// as Publish returns to one subscription that does about 2 µs of work on
// each (-flood.spin) and acks it, then waits until all are acked. It
// reports ns/msg and, above what was in use before, the highest goroutine
// count and heap (live and not yet collected objects) seen during the
// flood.
func BenchmarkFlood(b *testing.B) {
	n := *floodMessages
	for _, impl := range implementations {
		b.Run(impl.name, func(b *testing.B) {
			var peak peaks
			for range b.N {
				b.StopTimer()
				runtime.GC()
				peak.reset()
				ps := impl.new(b)
				wait := consume(b, ps, 1, n, *floodSpin, &peak)
				b.StartTimer()
				for i := range n {
					m := message.NewMessage(strconv.Itoa(i), payload)
					if err := ps.Publish("bench", m); err != nil {
						b.Fatal(err)
					}
					if i%256 == 0 {
						peak.sample()
					}
				}
				wait()
				b.StopTimer()
				peak.sample()
				if err := ps.Close(); err != nil {
					b.Fatal(err)
				}
				peak.fold()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
			b.ReportMetric(float64(peak.maxGoroutines), "peak-goroutines")
			b.ReportMetric(float64(peak.maxHeap), "peak-heap-B")
		})
	}
}

var payload = []byte("payload")

// newMessages makes n messages outside the timed part.
func newMessages(n int) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(strconv.Itoa(i), payload)
	}
	return msgs
}

// spinSink keeps spin's result alive so that the compiler cannot drop the
// loop.
var spinSink atomic.Uint64

// spin does a fixed amount of CPU work: rounds steps of a xorshift
// generator.
func spin(rounds int) {
	x := uint64(rounds) | 1
	for range rounds {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	if x == 0 {
		spinSink.Add(1)
	}
}

// peaks tracks the highest goroutine count and heap seen during a flood
// above what was in use when it started (reset), and the highest such
// excess over all floods (fold).
type peaks struct {
	mu        sync.Mutex
	samples   [2]metrics.Sample
	base, cur [2]uint64

	maxGoroutines, maxHeap uint64
}

func (p *peaks) read() [2]uint64 {
	p.samples[0].Name = "/sched/goroutines:goroutines"
	p.samples[1].Name = "/memory/classes/heap/objects:bytes"
	metrics.Read(p.samples[:])
	return [2]uint64{p.samples[0].Value.Uint64(), p.samples[1].Value.Uint64()}
}

func (p *peaks) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.base = p.read()
	p.cur = p.base
}

// sample reads the metrics unless another goroutine is reading them.
func (p *peaks) sample() {
	if !p.mu.TryLock() {
		return
	}
	defer p.mu.Unlock()
	v := p.read()
	for i := range v {
		p.cur[i] = max(p.cur[i], v[i])
	}
}

func (p *peaks) fold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	excess := func(i int) uint64 { return p.cur[i] - min(p.base[i], p.cur[i]) }
	p.maxGoroutines = max(p.maxGoroutines, excess(0))
	p.maxHeap = max(p.maxHeap, excess(1))
}
