package natsbus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// BenchmarkThroughput measures events per second from one process-side to
// another through a real embedded nats-server on loopback, end to end (the
// timer stops when the receiving side has handled all b.N events), for
// plain nats.go and for the bridge, in core and JetStream mode. Plain
// nats.go does the same work a hand-written integration would: JSON
// encoding, publishing, subscribing, decoding, and in JetStream mode
// waiting for publish acks (at most 256 in flight) and acking each message.
//
// The ratio of the bridge's ns/op to raw's is the bridge's cost:
//
//	go test -run '^$' -bench Throughput -benchtime 100000x -count 6 ./...
func BenchmarkThroughput(b *testing.B) {
	ts := startServer(b, withJetStream(b.TempDir()))
	data := order{ID: 1, Item: "book"}
	run := 0
	stream := func(b *testing.B, nc *nats.Conn) string {
		run++
		name := fmt.Sprintf("BENCH%d", run)
		js, _ := jetstream.New(nc)
		_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
			Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.MemoryStorage,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
		return name
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	}

	b.Run("core/raw", func(b *testing.B) {
		b.ReportAllocs()
		ncA, ncB := connect(b, ts), connect(b, ts)
		var n atomic.Int64
		done := make(chan struct{})
		sub, err := ncB.Subscribe("raw.core", func(m *nats.Msg) {
			var o order
			if err := json.Unmarshal(m.Data, &o); err != nil {
				b.Error(err)
			}
			if n.Add(1) == int64(b.N) {
				close(done)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Unsubscribe()
		_ = sub.SetPendingLimits(-1, -1)
		_ = ncB.Flush()
		b.ResetTimer()
		for range b.N {
			p, _ := json.Marshal(data)
			if err := ncA.Publish("raw.core", p); err != nil {
				b.Fatal(err)
			}
		}
		<-done
		b.StopTimer()
		report(b)
	})

	// The same with the bridge's wire format: three headers per message,
	// written and parsed by nats.go.
	b.Run("core/raw-headers", func(b *testing.B) {
		b.ReportAllocs()
		ncA, ncB := connect(b, ts), connect(b, ts)
		var n atomic.Int64
		done := make(chan struct{})
		sub, err := ncB.Subscribe("rawh.core", func(m *nats.Msg) {
			var o order
			if err := json.Unmarshal(m.Data, &o); err != nil {
				b.Error(err)
			}
			_ = m.Header.Get(natsbus.HeaderID)
			if n.Add(1) == int64(b.N) {
				close(done)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Unsubscribe()
		_ = sub.SetPendingLimits(-1, -1)
		_ = ncB.Flush()
		origin := []string{nuid.Next()}
		b.ResetTimer()
		for range b.N {
			p, _ := json.Marshal(data)
			msg := &nats.Msg{Subject: "rawh.core", Data: p, Header: nats.Header{
				natsbus.HeaderName: {"rawh.core"}, natsbus.HeaderID: {nuid.Next()}, natsbus.HeaderOrigin: origin,
			}}
			if err := ncA.PublishMsg(msg); err != nil {
				b.Fatal(err)
			}
		}
		<-done
		b.StopTimer()
		report(b)
	})

	b.Run("core/bridge", func(b *testing.B) {
		b.ReportAllocs()
		ncA, ncB := connect(b, ts), connect(b, ts)
		mA, mB := newManager(b), newManager(b)
		newBridge(b, mA, ncA, natsbus.Outbound("bridge.>"))
		newBridge(b, mB, ncB, natsbus.Inbound("bridge.>"), natsbus.WithPendingLimits(-1, -1))
		var n atomic.Int64
		done := make(chan struct{})
		_, _ = mB.RegisterListener("bridge.>", func(context.Context, eventbus.Event[order]) error {
			if n.Add(1) == int64(b.N) {
				close(done)
			}
			return nil
		})
		ctx := context.Background()
		b.ResetTimer()
		for range b.N {
			if err := mA.EmitSync(ctx, "bridge.core", data); err != nil {
				b.Fatal(err)
			}
		}
		<-done
		b.StopTimer()
		report(b)
	})

	b.Run("jetstream/raw", func(b *testing.B) {
		b.ReportAllocs()
		ncA, ncB := connect(b, ts), connect(b, ts)
		name := stream(b, ncA)
		jsA, _ := jetstream.New(ncA, jetstream.WithPublishAsyncMaxPending(256))
		jsB, _ := jetstream.New(ncB)
		cons, err := jsB.CreateOrUpdateConsumer(context.Background(), name, jetstream.ConsumerConfig{
			Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy,
		})
		if err != nil {
			b.Fatal(err)
		}
		var n atomic.Int64
		done := make(chan struct{})
		cc, err := cons.Consume(func(m jetstream.Msg) {
			var o order
			if err := json.Unmarshal(m.Data(), &o); err != nil {
				b.Error(err)
			}
			_ = m.Ack()
			if n.Add(1) == int64(b.N) {
				close(done)
			}
		}, jetstream.PullMaxMessages(100))
		if err != nil {
			b.Fatal(err)
		}
		defer func() { cc.Stop(); <-cc.Closed() }()
		subject := name + ".raw"
		b.ResetTimer()
		for i := range b.N {
			p, _ := json.Marshal(data)
			// Like the bridge, wait for an in-flight slot however long it
			// takes (nats.go gives up after 200ms by default, which a
			// loaded machine can exceed).
			if _, err := jsA.PublishAsync(subject, p, jetstream.WithMsgID(fmt.Sprint(i)), jetstream.WithStallWait(time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
		<-jsA.PublishAsyncComplete()
		<-done
		b.StopTimer()
		report(b)
	})

	b.Run("jetstream/bridge", func(b *testing.B) {
		b.ReportAllocs()
		ncA, ncB := connect(b, ts), connect(b, ts)
		name := stream(b, ncA)
		mA, mB := newManager(b), newManager(b)
		bA := newBridge(b, mA, ncA, natsbus.Outbound(name+".>"),
			natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: name}))
		newBridge(b, mB, ncB, natsbus.Inbound(name+".>"),
			natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: name, Durable: "bridge"}))
		var n atomic.Int64
		done := make(chan struct{})
		_, _ = mB.RegisterListener(name+".>", func(context.Context, eventbus.Event[order]) error {
			if n.Add(1) == int64(b.N) {
				close(done)
			}
			return nil
		})
		ctx := context.Background()
		subject := name + ".bridge"
		b.ResetTimer()
		for range b.N {
			if err := mA.EmitSync(ctx, subject, data); err != nil {
				b.Fatal(err)
			}
		}
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := bA.Flush(fctx); err != nil {
			b.Fatal(err)
		}
		<-done
		b.StopTimer()
		report(b)
	})
}
