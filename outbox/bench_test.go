package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/outbox"
)

// latencies records, per event index, when it was handed over (after Commit
// returned, or when Emit was called for the in-memory baseline) and when
// the listener first got it.
type latencies struct {
	sent, got []atomic.Int64
	left      atomic.Int64
	done      chan struct{}
}

func newLatencies(n int) *latencies {
	l := &latencies{sent: make([]atomic.Int64, n), got: make([]atomic.Int64, n), done: make(chan struct{})}
	l.left.Store(int64(n))
	return l
}

func (l *latencies) receive(i int) {
	if l.got[i].CompareAndSwap(0, time.Now().UnixNano()) && l.left.Add(-1) == 0 {
		close(l.done)
	}
}

// report adds events/s and the p50/p99 of sent→got, in µs. An event that
// reached its listener before Commit returned counts as 0.
func (l *latencies) report(b *testing.B, elapsed time.Duration) {
	d := make([]float64, len(l.sent))
	for i := range d {
		d[i] = max(0, float64(l.got[i].Load()-l.sent[i].Load())/1e3)
	}
	slices.Sort(d)
	b.ReportMetric(float64(len(d))/elapsed.Seconds(), "events/s")
	b.ReportMetric(d[len(d)/2], "p50-µs")
	b.ReportMetric(d[len(d)*99/100], "p99-µs")
}

// BenchmarkInMemoryEmit is the baseline: EventManager.Emit, one listener.
func BenchmarkInMemoryEmit(b *testing.B) {
	b.ReportAllocs()
	m := eventbus.New[int]()
	defer m.Close(context.Background())
	lat := newLatencies(b.N)
	_, _ = m.RegisterListener("order.created", func(_ context.Context, e eventbus.Event[int]) error {
		lat.receive(e.Data)
		return nil
	})
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		lat.sent[i].Store(time.Now().UnixNano())
		if err := m.Emit(ctx, "order.created", i); err != nil {
			b.Fatal(err)
		}
	}
	<-lat.done
	elapsed := time.Since(start)
	b.StopTimer()
	lat.report(b, elapsed)
}

// BenchmarkOutbox: Outbox.Emit in transactions of 1 or 100 events, committed
// one after another by one goroutine, relayed to one listener; an op is one
// event, from Begin to the listener.
func BenchmarkOutbox(b *testing.B) {
	for _, be := range backends {
		for _, per := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/events-per-tx=%d", be.name, per), func(b *testing.B) {
				benchOutbox(b, be.open(b), per)
			})
		}
	}
}

func benchOutbox(b *testing.B, db *sql.DB, per int) {
	b.ReportAllocs()
	ctx := context.Background()
	m := eventbus.New[int]()
	defer m.Close(ctx)
	lat := newLatencies(b.N)
	_, _ = m.RegisterListener("order.created", func(_ context.Context, e eventbus.Event[int]) error {
		lat.receive(e.Data)
		return nil
	})
	ob, err := outbox.New(ctx, db, m)
	if err != nil {
		b.Fatal(err)
	}
	defer ob.Close(ctx)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		first := i
		for ; i < b.N && i-first < per; i++ {
			if err := ob.Emit(ctx, tx, "order.created", i); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		now := time.Now().UnixNano()
		for j := first; j < i; j++ {
			lat.sent[j].Store(now)
		}
	}
	<-lat.done
	elapsed := time.Since(start)
	b.StopTimer()
	lat.report(b, elapsed)
}

// BenchmarkPlainInsert is what the database alone costs: the same
// transactions inserting the same rows into a plain table, with no relay.
// The gap to BenchmarkOutbox is the outbox's (relay, deletes, contention).
func BenchmarkPlainInsert(b *testing.B) {
	for _, be := range backends {
		for _, per := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/events-per-tx=%d", be.name, per), func(b *testing.B) {
				b.ReportAllocs()
				db := be.open(b)
				ctx := context.Background()
				ddl := "CREATE TABLE plain (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, name TEXT, payload BLOB)"
				ins := "INSERT INTO plain (id, name, payload) VALUES (?1, ?2, ?3)"
				if be.name == "postgres" {
					ddl = "CREATE TABLE plain (seq BIGSERIAL PRIMARY KEY, id TEXT, name TEXT, payload BYTEA)"
					ins = "INSERT INTO plain (id, name, payload) VALUES ($1, $2, $3)"
				}
				if _, err := db.Exec(ddl); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; {
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						b.Fatal(err)
					}
					for first := i; i < b.N && i-first < per; i++ {
						if _, err := tx.ExecContext(ctx, ins, "0123456789abcdef0123456789abcdef", "order.created", []byte("12345")); err != nil {
							b.Fatal(err)
						}
					}
					if err := tx.Commit(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			})
		}
	}
}
