package eventbus_test

import (
	"context"
	"testing"

	"github.com/eventbus-go/eventbus"
)

// The cost of reading the caller's identity (a stack read), shallow and at
// call depth 40.
func BenchmarkGoroutineID(b *testing.B) {
	for _, depth := range []int{0, 40} {
		b.Run(depthName(depth), func(b *testing.B) {
			b.ReportAllocs()
			atDepth(depth, func() {
				for range b.N {
					_ = eventbus.GoroutineID()
				}
			})
		})
	}
}

func depthName(d int) string {
	if d == 0 {
		return "shallow"
	}
	return "depth40"
}

// A TryEmit refused on a full backlog, at call depth 40.
func BenchmarkTryEmitRefusedDepth40(b *testing.B) {
	m := eventbus.New[int](eventbus.WithQueueSize(1))
	g := newGate()
	defer func() {
		g.open()
		_ = m.Close(context.Background())
	}()
	if _, err := m.RegisterListener("stuck", g.handler, eventbus.Ordered()); err != nil {
		b.Fatal(err)
	}
	_ = m.Emit(context.Background(), "stuck", 0)
	g.waitEntered(b, 1)
	_ = m.TryEmit("stuck", 1)
	b.ReportAllocs()
	b.ResetTimer()
	atDepth(40, func() {
		for range b.N {
			if m.TryEmit("stuck", 2) == nil {
				b.Fatal("TryEmit accepted")
			}
		}
	})
}

// An Emit after Close, at call depth 40.
func BenchmarkEmitAfterCloseDepth40(b *testing.B) {
	m := eventbus.New[int]()
	if _, err := m.RegisterListener("e", noop); err != nil {
		b.Fatal(err)
	}
	_ = m.Emit(context.Background(), "e", 0)
	_ = m.Close(context.Background())
	b.ReportAllocs()
	b.ResetTimer()
	atDepth(40, func() {
		for range b.N {
			if m.Emit(context.Background(), "e", 1) == nil {
				b.Fatal("Emit accepted")
			}
		}
	})
}
