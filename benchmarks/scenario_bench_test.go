package benchmarks

import (
	"flag"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Each scenario runs one sub-benchmark per library that has the mode it
// needs (see library); the rest are absent from it.

var (
	floodEvents = flag.Int("flood.events", 100_000, "events emitted per op in BenchmarkFlood")
	floodSpin   = flag.Int("flood.spin", 2_000, "rounds of busy work the flooded listener does per event")
)

func BenchmarkEmitSync1(b *testing.B)  { eachLibrary(b, syncMode, benchEmit(1)) }
func BenchmarkEmitSync10(b *testing.B) { eachLibrary(b, syncMode, benchEmit(10)) }

func BenchmarkEmitAsync1(b *testing.B)  { eachLibrary(b, asyncMode, benchEmit(1)) }
func BenchmarkEmitAsync10(b *testing.B) { eachLibrary(b, asyncMode, benchEmit(10)) }

func BenchmarkEmitSyncParallel(b *testing.B)  { eachLibrary(b, syncMode, benchEmitSyncParallel) }
func BenchmarkEmitAsyncParallel(b *testing.B) { eachLibrary(b, asyncMode, benchEmitAsyncParallel) }

func BenchmarkLatency(b *testing.B) { eachLibrary(b, asyncMode, benchLatency) }

func BenchmarkFlood(b *testing.B) { eachLibrary(b, asyncMode, benchFlood) }

func BenchmarkChurn(b *testing.B)    { eachChurner(b, benchChurn(0)) }
func BenchmarkChurn10k(b *testing.B) { eachChurner(b, benchChurn(10_000)) }

// mode picks the constructor a scenario uses, or nil when the library has
// no such mode.
type mode func(library) func(testing.TB, []func(int)) emitter

func syncMode(l library) func(testing.TB, []func(int)) emitter  { return l.newSync }
func asyncMode(l library) func(testing.TB, []func(int)) emitter { return l.newAsync }

type constructor = func(testing.TB, []func(int)) emitter

// eachLibrary runs bench as a sub-benchmark for every library that has the
// mode.
func eachLibrary(b *testing.B, m mode, bench func(*testing.B, constructor)) {
	for _, l := range libraries() {
		if newEmitter := m(l); newEmitter != nil {
			b.Run(l.name, func(b *testing.B) {
				b.ReportAllocs()
				bench(b, newEmitter)
			})
		}
	}
}

// benchEmit emits b.N events to the given number of listeners and waits
// until every listener has handled every one of them. For a synchronous
// emitter the wait returns at once. Time per op is the cost per event, all
// listeners included.
func benchEmit(listeners int) func(*testing.B, constructor) {
	return func(b *testing.B, newEmitter constructor) {
		s := newSink(listeners, b.N)
		e := newEmitter(b, s.handlers())
		b.ResetTimer()
		for i := range b.N {
			if err := e.Emit(i); err != nil {
				b.Fatal(err)
			}
		}
		s.wait(b)
		b.StopTimer()
		mustClose(b, e)
		s.checkExact(b)
	}
}

// benchEmitSyncParallel emits b.N events from GOMAXPROCS goroutines at
// once (b.RunParallel) to one listener. The listener counts each event on
// a counter of its emitting goroutine's own, so that the handler's work
// stays free of contention and the figure shows how the library itself
// scales; compare it with the single-goroutine EmitSync1.
func benchEmitSyncParallel(b *testing.B, newEmitter constructor) {
	stripes := runtime.GOMAXPROCS(0)
	counts := make([]counter, stripes)
	e := newEmitter(b, []func(int){func(seq int) { counts[seq%stripes].n.Add(1) }})
	var ids atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		seq := int(ids.Add(1)-1) % stripes
		for pb.Next() {
			if err := e.Emit(seq); err != nil {
				b.Error(err)
				return
			}
			seq += stripes
		}
	})
	b.StopTimer()
	mustClose(b, e)
	var total int64
	for i := range counts {
		total += counts[i].n.Load()
	}
	if total != int64(b.N) {
		b.Fatalf("listener handled %d events, want %d", total, b.N)
	}
}

// benchEmitAsyncParallel emits b.N events from GOMAXPROCS goroutines at
// once (b.RunParallel) to one listener and waits until it has handled them
// all. The listener runs on the library's goroutines and counts on one
// shared counter, as in EmitAsync1.
func benchEmitAsyncParallel(b *testing.B, newEmitter constructor) {
	s := newSink(1, b.N)
	e := newEmitter(b, s.handlers())
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		seq := 0
		for pb.Next() {
			if err := e.Emit(seq); err != nil {
				b.Error(err)
				return
			}
			seq++
		}
	})
	s.wait(b)
	b.StopTimer()
	mustClose(b, e)
	s.checkExact(b)
}

// benchLatency emits one event at a time on an otherwise idle bus and
// measures the time from just before Emit to the moment the listener is
// entered; the next event is emitted only once the listener has reported.
// The p50-ns and p99-ns metrics are percentiles of that hand-off; ns/op is
// the whole round trip, including the report back.
func benchLatency(b *testing.B, newEmitter constructor) {
	var start time.Time // written before Emit, read by the listener
	entered := make(chan time.Duration, 1)
	e := newEmitter(b, []func(int){func(int) { entered <- time.Since(start) }})
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		start = time.Now()
		if err := e.Emit(i); err != nil {
			b.Fatal(err)
		}
		lat[i] = <-entered
	}
	b.StopTimer()
	mustClose(b, e)
	slices.Sort(lat)
	b.ReportMetric(float64(percentile(lat, 50)), "p50-ns")
	b.ReportMetric(float64(percentile(lat, 99)), "p99-ns")
}

// percentile returns the p-th percentile of sorted by the nearest-rank
// method.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (len(sorted)*p + 99) / 100 // ceil(len*p/100)
	return sorted[max(rank, 1)-1]
}

// benchFlood emits -flood.events events per op, as fast as Emit returns,
// into one listener that spins for -flood.spin rounds per event (about
// 2 µs by default: far slower than the emitter of every library but
// watermill, whose Publish costs about as much, but whose deliveries to one
// subscriber go one at a time, so a backlog builds up there too), then
// waits until it has handled every one. Libraries with a bounded queue make
// the emitter wait; the others buffer.
//
// It reports the highest heap (live and not yet collected objects) and
// goroutine stack memory, and the most goroutines, seen above what was in
// use before the library was built (so its own workers count), sampled by
// the emitter and the listener every 256 events; and ns/event, the op time
// per event. Every event must be handled exactly once.
func benchFlood(b *testing.B, newEmitter constructor) {
	n := *floodEvents
	var peak peaks
	for range b.N {
		b.StopTimer()
		runtime.GC()
		peak.reset()
		s := newSink(1, n)
		var handled atomic.Int64
		s.work = func() {
			spin(*floodSpin)
			if handled.Add(1)%256 == 0 {
				peak.sample()
			}
		}
		e := newEmitter(b, s.handlers())
		b.StartTimer()
		for i := range n {
			if err := e.Emit(i); err != nil {
				b.Fatal(err)
			}
			if i%256 == 0 {
				peak.sample()
			}
		}
		peak.sample()
		s.wait(b)
		b.StopTimer()
		mustClose(b, e)
		s.checkExact(b)
		peak.fold()
	}
	b.ReportMetric(float64(peak.maxHeap), "peak-heap-B")
	b.ReportMetric(float64(peak.maxStack), "peak-stack-B")
	b.ReportMetric(float64(peak.maxGoroutines), "peak-goroutines")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
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

// peaks tracks the most heap, stack and goroutines in use during a flood,
// above what was in use when it started (reset), and the largest such
// excess over all floods (fold).
type peaks struct {
	mu                sync.Mutex
	samples           []metrics.Sample
	base, cur         [3]uint64
	maxHeap, maxStack uint64
	maxGoroutines     uint64
}

var peakMetrics = [3]string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/sched/goroutines:goroutines",
}

func (p *peaks) read() [3]uint64 {
	if p.samples == nil {
		p.samples = make([]metrics.Sample, len(peakMetrics))
		for i, name := range peakMetrics {
			p.samples[i].Name = name
		}
	}
	metrics.Read(p.samples)
	var v [3]uint64
	for i := range v {
		v[i] = p.samples[i].Value.Uint64()
	}
	return v
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
	p.maxHeap = max(p.maxHeap, excess(0))
	p.maxStack = max(p.maxStack, excess(1))
	p.maxGoroutines = max(p.maxGoroutines, excess(2))
}

// eachChurner runs bench as a sub-benchmark for every library that has a
// churner.
func eachChurner(b *testing.B, bench func(*testing.B, func(testing.TB) churner)) {
	for _, l := range libraries() {
		if l.newChurn != nil {
			b.Run(l.name, func(b *testing.B) {
				b.ReportAllocs()
				bench(b, l.newChurn)
			})
		}
	}
}

// benchChurn is the life of a per-request subscription: each op subscribes
// to a topic never used before, publishes one event on it, waits until the
// subscriber has it and unsubscribes. live other subscriptions, each on a
// topic of its own, stay throughout and must receive nothing.
//
// It also reports retained-B/op: how much the live heap (after a GC) grew
// per op, which is what a library keeps of topics that are gone.
func benchChurn(live int) func(*testing.B, func(testing.TB) churner) {
	return func(b *testing.B, newChurner func(testing.TB) churner) {
		c := newChurner(b)
		var stray atomic.Int64
		for i := range live {
			if _, err := c.Subscribe("conn."+strconv.Itoa(i), func(int) { stray.Add(1) }); err != nil {
				b.Fatal(err)
			}
		}
		got := make(chan int, 1)
		deliver := func(seq int) { got <- seq }
		watch := time.NewTimer(watchdog) // bounds the whole run, not each op
		defer watch.Stop()
		before := liveHeap()
		b.ResetTimer()
		for i := range b.N {
			topic := "req." + strconv.Itoa(i) // made here: what a library keeps of it shows
			unsubscribe, err := c.Subscribe(topic, deliver)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Publish(topic, i); err != nil {
				b.Fatal(err)
			}
			select {
			case seq := <-got:
				if seq != i {
					b.Fatalf("subscriber of %s got event %d", topic, seq)
				}
			case <-watch.C:
				b.Fatalf("event %d on %s lost", i, topic)
			}
			if err := unsubscribe(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		retained := int64(liveHeap()) - int64(before)
		b.ReportMetric(float64(max(retained, 0))/float64(b.N), "retained-B/op")
		if err := c.Close(); err != nil {
			b.Fatalf("close: %v", err)
		}
		if n := stray.Load(); n != 0 {
			b.Fatalf("subscribers of other topics got %d events", n)
		}
	}
}

// liveHeap returns the bytes of live heap objects after a GC.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
