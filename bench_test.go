package eventbus_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
)

var sink atomic.Int64

func work(_ context.Context, e eventbus.Event[int]) error {
	sink.Add(int64(e.Data))
	return nil
}

// Baseline: a direct call of the same handler.
func BenchmarkDirectCall(b *testing.B) {
	b.ReportAllocs()
	ev := eventbus.Event[int]{Name: "e", Data: 1}
	for range b.N {
		_ = work(context.Background(), ev)
	}
}

// Baseline: looking the name up in a plain map and calling the handler,
// the floor for any bus that routes by name.
func BenchmarkNameLookupCall(b *testing.B) {
	handlers := map[string][]eventbus.Handler[int]{"order.created": {work}}
	for i := range 100 { // a few other names, as a real registry has
		handlers[fmt.Sprintf("other.%d", i)] = []eventbus.Handler[int]{work}
	}
	name := "order.created"
	b.ReportAllocs()
	for range b.N {
		for _, h := range handlers[name] {
			_ = h(context.Background(), eventbus.Event[int]{Name: name, Data: 1})
		}
	}
}

func benchEmitSync(b *testing.B, listeners int, pattern string) {
	m := eventbus.New[int]()
	defer m.Close(context.Background())
	for range listeners {
		if _, err := m.RegisterListener(pattern, work); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_ = m.EmitSync(context.Background(), "order.created", 1)
	}
}

func BenchmarkEmitSync1(b *testing.B)        { benchEmitSync(b, 1, "order.created") }
func BenchmarkEmitSync10(b *testing.B)       { benchEmitSync(b, 10, "order.created") }
func BenchmarkEmitSyncWildcard(b *testing.B) { benchEmitSync(b, 1, "order.*") }

// noop is a handler that writes no shared memory, so that the parallel
// benchmark measures only what the bus shares between emitters.
func noop(context.Context, eventbus.Event[int]) error { return nil }

func BenchmarkEmitSyncNoop(b *testing.B) { benchEmitSyncWith(b, noop, false) }

func BenchmarkEmitSyncNoopParallel(b *testing.B) { benchEmitSyncWith(b, noop, true) }

func benchEmitSyncWith(b *testing.B, h eventbus.Handler[int], parallel bool) {
	m := eventbus.New[int]()
	defer m.Close(context.Background())
	if _, err := m.RegisterListener("order.created", h); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	if !parallel {
		for range b.N {
			_ = m.EmitSync(context.Background(), "order.created", 1)
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = m.EmitSync(context.Background(), "order.created", 1)
		}
	})
}

func benchEmit(b *testing.B, listeners int) {
	m := eventbus.New[int]()
	defer m.Close(context.Background())
	for range listeners {
		if _, err := m.RegisterListener("order.created", work); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_ = m.Emit(context.Background(), "order.created", 1)
	}
	if err := m.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkEmit1(b *testing.B)  { benchEmit(b, 1) }
func BenchmarkEmit10(b *testing.B) { benchEmit(b, 10) }

// Baseline: a plain buffered channel feeding GOMAXPROCS goroutines that
// call the handler for each of n listeners.
func benchChannel(b *testing.B, listeners int) {
	ch := make(chan int, 4096)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := range ch {
				for range listeners {
					_ = work(context.Background(), eventbus.Event[int]{Name: "order.created", Data: v})
				}
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		ch <- 1
	}
	close(ch)
	wg.Wait()
}

func BenchmarkChannel1(b *testing.B)  { benchChannel(b, 1) }
func BenchmarkChannel10(b *testing.B) { benchChannel(b, 10) }

// benchEmitMode emits to one listener registered with opt, then flushes.
func benchEmitMode(b *testing.B, opt eventbus.ListenerOption) {
	m := eventbus.New[int]()
	defer m.Close(context.Background())
	if _, err := m.RegisterListener("order.created", work, opt); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		_ = m.Emit(context.Background(), "order.created", i)
	}
	if err := m.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkEmitOrdered(b *testing.B) { benchEmitMode(b, eventbus.Ordered()) }

func BenchmarkEmitConcurrency4(b *testing.B) { benchEmitMode(b, eventbus.Concurrency(4)) }

// Keyed delivery over 1024 keys (an order ID, say).
var orderKeys = func() [1024]string {
	var k [1024]string
	for i := range k {
		k[i] = fmt.Sprintf("order-%d", i)
	}
	return k
}()

func BenchmarkEmitOrderedBy(b *testing.B) {
	benchEmitMode(b, eventbus.OrderedBy(func(e eventbus.Event[int]) string { return orderKeys[e.Data&1023] }))
}

// A registry of 10,000 wildcard patterns, emitting a name whose route is
// cached; compare with BenchmarkEmitSync1.
func BenchmarkEmitSyncWildcard10k(b *testing.B) {
	m := eventbus.New[int]()
	defer m.Close(context.Background())
	for i := range 10_000 {
		if _, err := m.RegisterListener(fmt.Sprintf("svc%d.*.>", i), work); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := m.RegisterListener("order.*", work); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_ = m.EmitSync(context.Background(), "order.created", 1)
	}
}

// Register and Unregister a listener of the name another goroutine keeps
// emitting. emits/pair says how much the emitter got done per pair, and
// emitter-speed its emit rate meanwhile relative to its rate alone, measured
// just before: 1.0 means the registry's writers did not slow it at all.
func BenchmarkRegisterUnregisterWhileEmitting(b *testing.B) {
	m := eventbus.New[int]()
	defer m.Close(context.Background())
	if _, err := m.RegisterListener("order.created", work); err != nil {
		b.Fatal(err)
	}
	const solo = 200_000
	start := time.Now()
	for range solo {
		_ = m.EmitSync(context.Background(), "order.created", 1)
	}
	soloRate := solo / time.Since(start).Seconds()

	var emits atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for range 64 {
				_ = m.EmitSync(context.Background(), "order.created", 1)
			}
			emits.Add(64)
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	start = time.Now()
	for range b.N {
		l, err := m.RegisterListener("order.created", work)
		if err != nil {
			b.Fatal(err)
		}
		l.Unregister()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	<-done
	n := float64(emits.Load())
	b.ReportMetric(n/float64(b.N), "emits/pair")
	b.ReportMetric(n/elapsed.Seconds()/soloRate, "emitter-speed")
}

// Registry churn, as per-connection or per-request subscriptions make it:
// each op registers a listener of a name never seen before and unregisters
// it, with n other names live (live=n) or registered and unregistered
// before (dead=n). The cost must not grow with n.
func BenchmarkRegisterUnregister(b *testing.B) {
	for _, n := range []int{0, 1_000, 10_000, 100_000} {
		benchChurnWith(b, "live="+strconv.Itoa(n), "fresh.", "", func(m *eventbus.EventManager[int]) {
			for i := range n {
				benchRegister(b, m, "conn."+strconv.Itoa(i))
			}
		})
	}
	for _, n := range []int{1_000, 10_000, 100_000} {
		benchChurnWith(b, "dead="+strconv.Itoa(n), "fresh.", "", func(m *eventbus.EventManager[int]) {
			for i := range n {
				benchRegister(b, m, "gone."+strconv.Itoa(i)).Unregister()
			}
		})
	}
}

// The same with wildcard patterns, one per user: user.<id>.> with n others
// live.
func BenchmarkRegisterUnregisterWildcard(b *testing.B) {
	for _, n := range []int{0, 1_000, 10_000} {
		benchChurnWith(b, "live="+strconv.Itoa(n), "user.x", ".>", func(m *eventbus.EventManager[int]) {
			for i := range n {
				benchRegister(b, m, "user."+strconv.Itoa(i)+".>")
			}
		})
	}
}

func benchRegister(b *testing.B, m *eventbus.EventManager[int], pattern string) *eventbus.Listener {
	l, err := m.RegisterListener(pattern, work)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// benchChurnWith runs a sub-benchmark that registers and unregisters b.N
// listeners, each of its own pattern prefix<i>suffix, on an EventManager
// that setup has filled (once for all the sub-benchmark's rounds, which
// continue i, so that each pattern is new). The pattern is made in the loop,
// as a caller makes it, and counts in the figure.
func benchChurnWith(b *testing.B, name, prefix, suffix string, setup func(*eventbus.EventManager[int])) {
	var m *eventbus.EventManager[int]
	seq := 0
	b.Run(name, func(b *testing.B) {
		if m == nil {
			m = eventbus.New[int]()
			setup(m)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			benchRegister(b, m, prefix+strconv.Itoa(seq+i)+suffix).Unregister()
		}
		seq += b.N
	})
	if m != nil {
		_ = m.Close(context.Background())
	}
}

// What the registry keeps of names that are gone: the live heap grown per
// register/unregister pair of a fresh name, after a GC (0 when memory comes
// back).
func BenchmarkRegisterUnregisterRetained(b *testing.B) {
	m := eventbus.New[int]()
	defer m.Close(context.Background())
	benchRegister(b, m, "warm").Unregister()
	before := liveHeap()
	b.ResetTimer()
	for i := range b.N {
		benchRegister(b, m, "fresh."+strconv.Itoa(i)).Unregister()
	}
	b.StopTimer()
	retained := int64(liveHeap()) - int64(before)
	b.ReportMetric(float64(max(retained, 0))/float64(b.N), "retained-B/pair")
}

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// EmitSync to a name among n other live names: the lookup's cost as the
// registry grows.
func BenchmarkEmitSyncAmong(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		var m *eventbus.EventManager[int]
		b.Run("live="+strconv.Itoa(n), func(b *testing.B) {
			if m == nil {
				m = eventbus.New[int]()
				for i := range n {
					benchRegister(b, m, "conn."+strconv.Itoa(i))
				}
				benchRegister(b, m, "order.created")
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				_ = m.EmitSync(context.Background(), "order.created", 1)
			}
		})
		if m != nil {
			_ = m.Close(context.Background())
		}
	}
}

// The cost of asking whether a name has listeners before building an
// event, for a name with a literal listener and for one matched by a
// wildcard pattern among 10,000.
func BenchmarkListenerCount(b *testing.B) {
	m := eventbus.New[int]()
	defer m.Close(context.Background())
	benchRegister(b, m, "order.created")
	b.Run("exact", func(b *testing.B) { benchCount(b, m, "order.created", 1) })
	for i := range 10_000 {
		benchRegister(b, m, "svc"+strconv.Itoa(i)+".*.>")
	}
	benchRegister(b, m, "order.*")
	b.Run("wildcard10k", func(b *testing.B) { benchCount(b, m, "order.created", 2) })
	b.Run("none", func(b *testing.B) { benchCount(b, m, "nobody.listens", 0) })
}

func benchCount(b *testing.B, m *eventbus.EventManager[int], name string, want int) {
	b.ReportAllocs()
	for range b.N {
		if m.ListenerCount(name) != want {
			b.Fatalf("ListenerCount(%q) != %d", name, want)
		}
	}
}

// The cost of a Stats snapshot, which reads a counter of every registered
// listener (see EventManager.Stats), with 1 and 10,000 listeners, each the
// one listener of its name and called once by EmitSync.
func BenchmarkStats(b *testing.B) {
	for _, n := range []int{1, 10_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			m := eventbus.New[int]()
			defer m.Close(context.Background())
			for i := range n {
				name := "svc" + strconv.Itoa(i)
				benchRegister(b, m, name)
				if err := m.EmitSync(context.Background(), name, i); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if s := m.Stats(); s.Listeners != n || s.Delivered != uint64(n) {
					b.Fatalf("Stats() = %+v, want %d listeners, %d delivered", s, n, n)
				}
			}
		})
	}
}

// Typed topics (issue 11). The payload is a pointer, as the targets are
// stated for pointers; payloadValue shows what boxing a value costs.
type payload struct{ n int }

type payloadValue struct{ id, n int }

func workPtr(_ context.Context, e eventbus.Event[*payload]) error {
	sink.Add(int64(e.Data.n))
	return nil
}

func newTopicBench[T any](b *testing.B, h eventbus.Handler[T]) (*eventbus.EventManager[any], *eventbus.Topic[T]) {
	m := eventbus.New[any]()
	b.Cleanup(func() { m.Close(context.Background()) })
	tp, err := eventbus.NewTopic[T](m, "order.created")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tp.Listen(h); err != nil {
		b.Fatal(err)
	}
	return m, tp
}

// Topic.EmitSync to one listener, against BenchmarkDirectCall and
// BenchmarkEmitSync1.
func BenchmarkTopicEmitSync1(b *testing.B) {
	_, tp := newTopicBench(b, workPtr)
	p := &payload{n: 1}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_ = tp.EmitSync(context.Background(), p)
	}
}

// Topic.Emit to one listener, against BenchmarkEmit1.
func BenchmarkTopicEmit1(b *testing.B) {
	m, tp := newTopicBench(b, workPtr)
	p := &payload{n: 1}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_ = tp.Emit(context.Background(), p)
	}
	if err := m.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// Topic.Emit of a two-word value: boxing it into the any that the
// EventManager[any] carries costs one allocation.
func BenchmarkTopicEmitValue1(b *testing.B) {
	m, tp := newTopicBench(b, func(_ context.Context, e eventbus.Event[payloadValue]) error {
		sink.Add(int64(e.Data.n))
		return nil
	})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		_ = tp.Emit(context.Background(), payloadValue{id: i, n: 1})
	}
	if err := m.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// The EventManager's own EmitSync of a declared name (it checks the type)
// and of an undeclared one, on an EventManager[any] with declared topics:
// the cost of the declarations for the emits that do not use a Topic.
func BenchmarkEmitSyncDeclared(b *testing.B) {
	m, _ := newTopicBench(b, workPtr)
	if _, err := m.RegisterListener("order.paid", func(_ context.Context, e eventbus.Event[any]) error {
		sink.Add(int64(e.Data.(*payload).n))
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	p := &payload{n: 1}
	for _, name := range []string{"order.created", "order.paid"} {
		b.Run(map[string]string{"order.created": "declared", "order.paid": "undeclared"}[name], func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				_ = m.EmitSync(context.Background(), name, p)
			}
		})
	}
}
