package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// consumerSettled waits until the durable consumer has nothing pending and
// nothing awaiting an ack, so that no redelivery can follow.
func consumerSettled(t *testing.T, s jetstream.Stream, durable string) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := s.Consumer(context.Background(), durable)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, 20*time.Second, 10*time.Millisecond)
}

// 10,000 events go through JetStream while the receiving listener fails
// every 7th delivery once: each event is handled successfully exactly once.
func TestJetStreamEveryEventHandledOnce(t *testing.T) {
	const total = 10_000
	ts := startServer(t, withJetStream(t.TempDir()))
	ncA, ncB := connect(t, ts), connect(t, ts)
	stream := createStream(t, ncA, "JOBS", "jobs.>")
	mA, mB := newManager(t), newManager(t)
	errsA, errsB := newErrorLog(), newErrorLog()
	bA := newBridge(t, mA, ncA, natsbus.Outbound("jobs.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "JOBS"}),
		natsbus.WithErrorHandler(errsA.handle))
	bB := newBridge(t, mB, ncB, natsbus.Inbound("jobs.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "JOBS", Durable: "worker", NakDelay: 5 * time.Millisecond}),
		natsbus.WithErrorHandler(errsB.handle))

	var (
		mu         sync.Mutex
		deliveries int
		failed     = map[int]bool{}
		handled    = map[int]int{}
		allDone    = make(chan struct{})
	)
	_, err := mB.RegisterListener("jobs.>", func(_ context.Context, e eventbus.Event[order]) error {
		mu.Lock()
		defer mu.Unlock()
		deliveries++
		if deliveries%7 == 0 && !failed[e.Data.ID] {
			failed[e.Data.ID] = true
			return errors.New("transient failure")
		}
		handled[e.Data.ID]++
		if len(handled) == total {
			close(allDone)
		}
		return nil
	})
	require.NoError(t, err)

	ctx := ctxTimeout(t, 60*time.Second)
	for i := range total {
		require.NoError(t, mA.Emit(ctx, fmt.Sprintf("jobs.%d", i%10), order{ID: i}))
	}
	require.NoError(t, mA.Flush(ctx))
	require.NoError(t, bA.Flush(ctx))
	assert.Equal(t, uint64(total), bA.Stats().Published, "every publish acknowledged")

	receive(t, allDone)
	consumerSettled(t, stream, "worker")
	require.NoError(t, mB.Flush(ctx))

	mu.Lock()
	defer mu.Unlock()
	for id, n := range handled {
		if n != 1 {
			t.Fatalf("event %d handled %d times", id, n)
		}
	}
	assert.Len(t, handled, total)
	assert.NotEmpty(t, failed)
	st := bB.Stats()
	assert.Equal(t, uint64(total), st.Received)
	assert.Equal(t, uint64(len(failed)), st.Naked)
	assert.Equal(t, uint64(len(failed)), st.Redelivered)
	assert.Zero(t, st.Terminated)
	assert.Empty(t, errsA.all())
	assert.Empty(t, errsB.all())
}

// The server is stopped and restarted with the same store directory while
// events flow: every event whose publish was not reported as failed is
// delivered (at least once; the stream de-duplicates resends).
func TestJetStreamServerRestartLosesNothing(t *testing.T) {
	const total = 6000
	ts := startServer(t, withJetStream(t.TempDir()))
	ncA, ncB := connect(t, ts), connect(t, ts)
	createStream(t, ncA, "ORDERS", "orders.>")
	mA, mB := newManager(t), newManager(t)

	var failMu sync.Mutex
	failedPub := map[string]bool{} // event IDs the sender reported lost
	bA := newBridge(t, mA, ncA, natsbus.Outbound("orders.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{
			Stream: "ORDERS", AckTimeout: 500 * time.Millisecond, PublishAttempts: 20, RetryWait: 50 * time.Millisecond,
		}),
		natsbus.WithErrorHandler(func(err error) {
			var pe *natsbus.PublishError
			if errors.As(err, &pe) {
				failMu.Lock()
				failedPub[pe.Event] = true
				failMu.Unlock()
			}
		}))
	newBridge(t, mB, ncB, natsbus.Inbound("orders.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "ORDERS", Durable: "fulfil", AckWait: time.Second}),
		natsbus.WithErrorHandler(func(error) {})) // interruptions while the server is away

	var (
		mu        sync.Mutex
		got       = map[int]int{}
		received1 = make(chan struct{}) // a third received
		sent1     = make(chan struct{}) // a third sent
		received  atomic.Int64
	)
	_, err := mB.RegisterListener("orders.>", func(_ context.Context, e eventbus.Event[order]) error {
		mu.Lock()
		got[e.Data.ID]++
		n := len(got)
		mu.Unlock()
		received.Add(1)
		if n == total/3 {
			close(received1)
		}
		return nil
	})
	require.NoError(t, err)

	ctx := ctxTimeout(t, 90*time.Second)
	sent := make(chan error, 1)
	go func() {
		for i := range total {
			if i == total/3 {
				close(sent1)
			}
			if err := mA.Emit(ctx, fmt.Sprintf("orders.%d", i), order{ID: i}); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()

	// Restart while the sender is mid-stream and the receiver has
	// acknowledged some of it.
	receive(t, sent1)
	receive(t, received1)
	ts.restart()
	require.NoError(t, receive(t, sent))
	require.NoError(t, mA.Flush(ctx))
	require.NoError(t, bA.Flush(ctx))

	failMu.Lock()
	lost := len(failedPub)
	failMu.Unlock()
	assert.Zero(t, lost, "with enough attempts no publish should fail")
	st := bA.Stats()
	assert.Equal(t, uint64(total), st.Published, "every event acknowledged once: %+v", st)

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == total-lost
	}, 60*time.Second, 10*time.Millisecond, "all acknowledged events delivered")
	t.Logf("sender %+v; deliveries %d for %d events", st, received.Load(), total)
}

// A malformed payload is terminated (not redelivered forever), counted and
// reported; the bridge keeps consuming.
func TestJetStreamMalformedPayloadIsTerminated(t *testing.T) {
	ts := startServer(t, withJetStream(t.TempDir()))
	nc := connect(t, ts)
	stream := createStream(t, nc, "IN", "in.>")
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	m := newManager(t)
	errs := newErrorLog()
	b := newBridge(t, m, nc, natsbus.Inbound("in.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "IN", Durable: "d"}),
		natsbus.WithErrorHandler(errs.handle))
	got := make(chan order, 1)
	_, err = m.RegisterListener("in.>", func(_ context.Context, e eventbus.Event[order]) error {
		got <- e.Data
		return nil
	})
	require.NoError(t, err)

	ctx := ctxTimeout(t, 10*time.Second)
	_, err = js.Publish(ctx, "in.bad", []byte(`{"id": "not a number"}`))
	require.NoError(t, err)
	_, err = js.Publish(ctx, "in.good", []byte(`{"id": 5}`))
	require.NoError(t, err)

	err = errs.next(t)
	assert.ErrorIs(t, err, natsbus.ErrDecode)
	var me *natsbus.MessageError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, "in.bad", me.Subject)
	assert.Equal(t, order{ID: 5}, receive(t, got))
	consumerSettled(t, stream, "d")
	st := b.Stats()
	assert.Equal(t, uint64(1), st.DecodeErrors)
	assert.Equal(t, uint64(1), st.Terminated)
	assert.Equal(t, uint64(1), st.Received)
	assert.Zero(t, st.Redelivered)
}

// A listener that always fails gets MaxDeliver attempts, then the message
// is reported and terminated, and later messages still flow.
func TestJetStreamRedeliveryIsBounded(t *testing.T) {
	ts := startServer(t, withJetStream(t.TempDir()))
	ncA, ncB := connect(t, ts), connect(t, ts)
	stream := createStream(t, ncA, "S", "s.>")
	mA, mB := newManager(t), newManager(t)
	errs := newErrorLog()
	newBridge(t, mA, ncA, natsbus.Outbound("s.>"), natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S"}))
	b := newBridge(t, mB, ncB, natsbus.Inbound("s.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S", Durable: "d", MaxDeliver: 3, NakDelay: time.Millisecond}),
		natsbus.WithErrorHandler(errs.handle))
	var attempts atomic.Int64
	ok := make(chan struct{}, 1)
	_, err := mB.RegisterListener("s.>", func(ctx context.Context, e eventbus.Event[order]) error {
		if e.Name == "s.poison" {
			info, _ := natsbus.InfoFromContext(ctx)
			assert.Equal(t, uint64(attempts.Add(1)), info.Delivered)
			return errors.New("cannot handle")
		}
		ok <- struct{}{}
		return nil
	})
	require.NoError(t, err)

	ctx := ctxTimeout(t, 10*time.Second)
	require.NoError(t, mA.EmitSync(ctx, "s.poison", order{ID: 1}))
	err = errs.next(t)
	assert.ErrorIs(t, err, natsbus.ErrMaxDeliver)
	assert.ErrorContains(t, err, "cannot handle")
	require.NoError(t, mA.EmitSync(ctx, "s.fine", order{ID: 2}))
	receive(t, ok)
	consumerSettled(t, stream, "d")
	assert.Equal(t, int64(3), attempts.Load())
	st := b.Stats()
	assert.Equal(t, uint64(1), st.Terminated)
	assert.Equal(t, uint64(2), st.Naked)
	assert.Equal(t, uint64(2), st.Redelivered)
}

// Close hands back the message a listener is handling, and the server
// counts that delivery as any other: after MaxDeliver+1 deliveries, each
// cut short by a Close (rolling restarts under a long listener), it would
// not deliver the message again. The bridge then terminates it and reports
// it with ErrMaxDeliver, instead of handing it back to be dropped with
// nothing said. (It was handed back every time: the message was gone for
// the durable, never failed by a listener, and nothing was reported.)
func TestJetStreamCloseOnTheLastDeliveryReports(t *testing.T) {
	const maxDeliver = 2 // the server's limit is 3
	ts := startServer(t, withJetStream(t.TempDir()))
	raw := connect(t, ts)
	stream := createStream(t, raw, "IN", "in.>")
	cfg := natsbus.JetStreamConfig{Stream: "IN", Durable: "d", MaxDeliver: maxDeliver, AckWait: 5 * time.Second}
	_, err := raw.Request("in.victim", []byte(`{"id":1}`), 5*time.Second) // stored: the stream's ack is the reply
	require.NoError(t, err)

	var naked, terminated uint64
	for round := uint64(1); round <= maxDeliver+1; round++ {
		m := newManager(t)
		errs := newErrorLog()
		started := make(chan natsbus.Info, 1)
		_, err := m.RegisterListener("in.>", func(ctx context.Context, _ eventbus.Event[order]) error {
			info, _ := natsbus.InfoFromContext(ctx)
			started <- info
			<-ctx.Done() // a long listener, cut short by Close
			return ctx.Err()
		})
		require.NoError(t, err)
		b := newBridge(t, m, connect(t, ts), natsbus.Inbound("in.>"), natsbus.WithJetStream(cfg), natsbus.WithErrorHandler(errs.handle))
		info := receive(t, (<-chan natsbus.Info)(started))
		require.Equal(t, round, info.Delivered)
		require.NoError(t, b.Close(ctxTimeout(t, 10*time.Second)))
		st := b.Stats()
		naked, terminated = naked+st.Naked, terminated+st.Terminated
		if round <= maxDeliver {
			assert.Empty(t, errs.all(), "round %d: handed back, not reported", round)
			continue
		}
		reports := errs.all()
		require.Len(t, reports, 1, "the last delivery, cut short, is reported")
		assert.ErrorIs(t, reports[0], natsbus.ErrMaxDeliver)
		var me *natsbus.MessageError
		require.ErrorAs(t, reports[0], &me)
		assert.Equal(t, "in.victim", me.Subject)
		assert.Equal(t, round, me.Delivered)
	}
	assert.Equal(t, uint64(maxDeliver), naked)
	assert.Equal(t, uint64(1), terminated)
	consumerSettled(t, stream, "d") // terminated: nothing pending, nothing unacknowledged
}

// A message pulled ahead and left unhandled by Close counts a delivery
// too (the server redelivers it after AckWait): on the server's last
// delivery, the bridge reports and terminates it, as it does the message
// the listener was handling. (Both were dropped with nothing said.)
func TestJetStreamCloseLeavesNoLastDeliveryUnreported(t *testing.T) {
	const maxDeliver = 1 // the server's limit is 2
	ts := startServer(t, withJetStream(t.TempDir()))
	raw := connect(t, ts)
	stream := createStream(t, raw, "IN", "in.>")
	cfg := natsbus.JetStreamConfig{Stream: "IN", Durable: "d", MaxDeliver: maxDeliver, AckWait: time.Second}
	for _, subject := range []string{"in.a", "in.b"} {
		_, err := raw.Request(subject, []byte(`{"id":1}`), 5*time.Second)
		require.NoError(t, err)
	}
	// The bridge keeps every message it holds with in-progress acks, from
	// AckWait/2 after its arrival: one for in.b's delivery of a round says
	// that the bridge holds it (a message the server has sent and the
	// client has not received yet is dropped by Close's unsubscription,
	// as the README says).
	acks := make(chan *nats.Msg, 64)
	watch, err := raw.ChanSubscribe("$JS.ACK.>", acks)
	require.NoError(t, err)
	t.Cleanup(func() { _ = watch.Unsubscribe() })
	require.NoError(t, raw.Flush())
	holds := func(subjectSeq uint64, delivered int) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case a := <-acks:
				d, seq, ok := ackedDelivery(a.Subject)
				if ok && string(a.Data) == "+WPI" && seq == subjectSeq && d == uint64(delivered) {
					return
				}
			case <-deadline:
				t.Fatalf("no in-progress ack for stream message %d, delivery %d", subjectSeq, delivered)
			}
		}
	}
	for round := 1; round <= maxDeliver+1; round++ {
		m := newManager(t)
		errs := newErrorLog()
		started := make(chan string, 2)
		_, err := m.RegisterListener("in.>", func(ctx context.Context, e eventbus.Event[order]) error {
			started <- e.Name
			<-ctx.Done() // holds the first; the other waits, pulled ahead
			return ctx.Err()
		})
		require.NoError(t, err)
		b := newBridge(t, m, connect(t, ts), natsbus.Inbound("in.>"), natsbus.WithJetStream(cfg), natsbus.WithErrorHandler(errs.handle))
		receive(t, (<-chan string)(started))
		// The other message reaches the bridge too (in the second round,
		// once AckWait has passed since the first bridge let it go): in.b
		// is the stream's message 2.
		holds(2, round)
		require.NoError(t, b.Close(ctxTimeout(t, 10*time.Second)))
		reports := errs.all()
		if round <= maxDeliver {
			assert.Empty(t, reports, "round %d: both come again", round)
			continue
		}
		var subjects []string
		for _, err := range reports {
			assert.ErrorIs(t, err, natsbus.ErrMaxDeliver)
			var me *natsbus.MessageError
			require.ErrorAs(t, err, &me)
			assert.Equal(t, uint64(maxDeliver+1), me.Delivered)
			subjects = append(subjects, me.Subject)
		}
		assert.ElementsMatch(t, []string{"in.a", "in.b"}, subjects, "the one handled and the one pulled ahead")
		assert.Equal(t, uint64(2), b.Stats().Terminated)
	}
	consumerSettled(t, stream, "d")
}

// ackedDelivery reads a JetStream ack subject ($JS.ACK.<stream>.<consumer>.
// <delivered>.<stream seq>.<consumer seq>.<time>.<pending>, or the form
// with a domain and an account hash after $JS.ACK): which delivery of which
// stream message an ack is for.
func ackedDelivery(subject string) (delivered, streamSeq uint64, ok bool) {
	tok := strings.Split(subject, ".")
	at := 0
	switch {
	case len(tok) == 9:
		at = 4
	case len(tok) >= 11:
		at = 6
	default:
		return 0, 0, false
	}
	d, err1 := strconv.ParseUint(tok[at], 10, 64)
	seq, err2 := strconv.ParseUint(tok[at+1], 10, 64)
	return d, seq, err1 == nil && err2 == nil
}

// A listener running longer than the ack wait keeps its message with
// in-progress acks: no redelivery.
//
// What is watched, rather than how long the listener sleeps: the listener
// holds its message until a second connection has seen three in-progress
// acks for it (one every AckWait/2, so it ran one and a half ack waits),
// then asks the server whether the message, still unacknowledged, was
// redelivered meanwhile. AckWait is 2s, so that an in-progress ack may
// reach the server up to 1s late (a loaded machine, on the client or in
// the server) before the server gives the message up; with 200ms and a
// sleep, as this test once had, 100ms late was enough. Without
// keep-alives no in-progress ack comes: the listener gives up waiting
// after 10 ack waits, long after the server redelivered.
func TestJetStreamLongListenerIsKeptAlive(t *testing.T) {
	const ackWait = 2 * time.Second
	k := newKeepAlive(t, ackWait)
	ncA, stream, mA, mB, b := k.ncA, k.stream, k.mA, k.mB, k.b

	// The acks of consumer d go to "$JS.ACK.S.d.>": watch the in-progress ones.
	var wpi atomic.Int64
	seen, note := k.seen, k.note
	kept := make(chan struct{})
	watch, err := ncA.Subscribe("$JS.ACK.S.d.>", func(m *nats.Msg) {
		note(string(m.Data))
		if string(m.Data) == "+WPI" && wpi.Add(1) == 3 {
			close(kept)
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = watch.Unsubscribe() })
	require.NoError(t, ncA.Flush())

	var calls atomic.Int64
	type held struct {
		ran         time.Duration
		redelivered int
		pending     int
		err         error
	}
	first := make(chan held, 1)
	_, err = mB.RegisterListener("s.>", func(context.Context, eventbus.Event[order]) error {
		note("delivery")
		if calls.Add(1) > 1 {
			return nil // a redelivery: counted, and reported by the asserts below
		}
		began := time.Now()
		select {
		case <-kept:
		case <-time.After(10 * ackWait): // no keep-alive: bounds the failing case only
		}
		var h held
		h.ran = time.Since(began)
		h.redelivered, h.pending, h.err = consumerState(stream, "d")
		first <- h
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, mA.EmitSync(ctxTimeout(t, 5*time.Second), "s.slow", order{ID: 1}))
	h := receive(t, first)
	require.NoError(t, h.err)
	assert.GreaterOrEqual(t, wpi.Load(), int64(3), "in-progress acks while the listener ran (it ran %v): %s", h.ran, seen())
	assert.Greater(t, h.ran, ackWait, "the listener outlived the ack wait")
	assert.Equal(t, 1, h.pending, "the message is held, unacknowledged: %s", seen())
	assert.Zero(t, h.redelivered, "the server did not redeliver the held message: %s", seen())
	consumerSettled(t, stream, "d")
	assert.Equal(t, int64(1), calls.Load(), seen())
	assert.Zero(t, b.Stats().Redelivered)
	assert.Equal(t, uint64(1), b.Stats().Received)
}

// A message received while a long listener holds the one before it waits
// in the bridge (the pulls bring messages ahead), with the server's ack
// wait running: it is kept alive too, with in-progress acks at least
// every AckWait/2 after its arrival, and is not redelivered. (Before, only
// the message being handled was kept alive: one queued behind a listener
// longer than AckWait was redelivered, again every AckWait, while it
// waited, and each copy was handled in turn.)
//
// The first listener holds its message until a second connection has
// seen six in-progress acks for the queued one: the bridge sends one only
// after AckWait/4 without (see jsConsumer), so the queued message was held
// one and a half ack waits at least. Then the server is asked whether it
// redelivered either.
func TestJetStreamQueuedMessageIsKeptAlive(t *testing.T) {
	const ackWait = 2 * time.Second
	k := newKeepAlive(t, ackWait)
	ncA, stream, mA, mB, b := k.ncA, k.stream, k.mA, k.mB, k.b

	var (
		mu  sync.Mutex
		wpi = map[uint64]int{} // in-progress acks by stream sequence
	)
	seen := k.seen
	queuedKept := make(chan struct{})
	watch, err := ncA.Subscribe("$JS.ACK.S.d.>", func(m *nats.Msg) {
		// $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>
		tok := strings.Split(m.Subject, ".")
		var seq uint64
		if len(tok) == 9 {
			seq, _ = strconv.ParseUint(tok[5], 10, 64)
		}
		if seq == 0 {
			t.Errorf("ack subject %q", m.Subject)
			return
		}
		k.note(fmt.Sprintf("%s #%d", m.Data, seq))
		mu.Lock()
		defer mu.Unlock()
		if string(m.Data) == "+WPI" {
			if wpi[seq]++; seq == 2 && wpi[2] == 6 {
				close(queuedKept)
			}
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = watch.Unsubscribe() })
	require.NoError(t, ncA.Flush())

	type held struct {
		redelivered, pending int
		err                  error
	}
	first := make(chan held, 1)
	var calls sync.Map // event name -> *atomic.Int64
	_, err = mB.RegisterListener("s.>", func(_ context.Context, e eventbus.Event[order]) error {
		n, _ := calls.LoadOrStore(e.Name, new(atomic.Int64))
		if n.(*atomic.Int64).Add(1) > 1 || e.Name != "s.slow" {
			return nil
		}
		select {
		case <-queuedKept:
		case <-time.After(10 * ackWait): // not kept alive: bounds the failing case only
		}
		var h held
		h.redelivered, h.pending, h.err = consumerState(stream, "d")
		first <- h
		return nil
	})
	require.NoError(t, err)
	ctx := ctxTimeout(t, 10*time.Second)
	require.NoError(t, mA.EmitSync(ctx, "s.slow", order{ID: 1}))
	require.NoError(t, mA.EmitSync(ctx, "s.next", order{ID: 2}))
	h := receive(t, first)
	require.NoError(t, h.err)
	assert.Equal(t, 2, h.pending, "both messages held, unacknowledged: %s", seen())
	assert.Zero(t, h.redelivered, "the server redelivered neither: %s", seen())
	consumerSettled(t, stream, "d")
	for _, name := range []string{"s.slow", "s.next"} {
		n, ok := calls.Load(name)
		if assert.True(t, ok, name) {
			assert.Equal(t, int64(1), n.(*atomic.Int64).Load(), "%s handled once: %s", name, seen())
		}
	}
	mu.Lock()
	assert.GreaterOrEqual(t, wpi[1], 3, "the held message kept alive too")
	mu.Unlock()
	st := b.Stats()
	assert.Zero(t, st.Redelivered, "%+v", st)
	assert.Equal(t, uint64(2), st.Received, "%+v", st)
	assert.Zero(t, st.AckErrors, "%+v", st)
}

// Overlapping inbound and outbound patterns on one stream: a bridge's own
// publishes come back through its consumer and are acked without being
// emitted again.
func TestJetStreamNoLoops(t *testing.T) {
	ts := startServer(t, withJetStream(t.TempDir()))
	ncA, ncB := connect(t, ts), connect(t, ts)
	stream := createStream(t, ncA, "X", "x.>")
	mA, mB := newManager(t), newManager(t)
	bA := newBridge(t, mA, ncA, natsbus.Outbound("x.>"), natsbus.Inbound("x.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "X", Durable: "a"}))
	bB := newBridge(t, mB, ncB, natsbus.Outbound("x.>"), natsbus.Inbound("x.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "X", Durable: "b"}))
	var countA, countB atomic.Int64
	_, err := mA.RegisterListener("x.>", func(context.Context, eventbus.Event[order]) error { countA.Add(1); return nil })
	require.NoError(t, err)
	_, err = mB.RegisterListener("x.>", func(context.Context, eventbus.Event[order]) error { countB.Add(1); return nil })
	require.NoError(t, err)

	ctx := ctxTimeout(t, 10*time.Second)
	require.NoError(t, mA.EmitSync(ctx, "x.1", order{ID: 1}))
	require.NoError(t, bA.Flush(ctx))
	consumerSettled(t, stream, "a")
	consumerSettled(t, stream, "b")
	require.NoError(t, bB.Flush(ctx))
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), info.State.Msgs, "only A's publish is in the stream")
	assert.Equal(t, int64(1), countA.Load())
	assert.Equal(t, int64(1), countB.Load())
	assert.Equal(t, uint64(1), bA.Stats().SkippedOwn)
}

func TestJetStreamConfigErrors(t *testing.T) {
	ts := startServer(t, withJetStream(t.TempDir()))
	nc := connect(t, ts)
	createStream(t, nc, "S", "s.>")
	m := newManager(t)
	ctx := ctxTimeout(t, 10*time.Second)

	_, err := natsbus.New(ctx, m, nc, natsbus.Outbound("s.>"), natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "NOPE"}))
	assert.ErrorIs(t, err, jetstream.ErrStreamNotFound)
	_, err = natsbus.New(ctx, m, nc, natsbus.Outbound("other.>"), natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S"}))
	assert.ErrorIs(t, err, natsbus.ErrConfig)
	assert.ErrorContains(t, err, "not captured by stream")
	_, err = natsbus.New(ctx, m, nc, natsbus.Inbound("s.>"), natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S"}))
	assert.ErrorIs(t, err, natsbus.ErrConfig, "inbound needs a durable")
	_, err = natsbus.New(ctx, m, nc, natsbus.Inbound("s.>"), natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S", Durable: "d", PullBatch: 10, MaxAckPending: 5}))
	assert.ErrorIs(t, err, natsbus.ErrConfig)

	// Oversized payloads fail at once in JetStream mode too.
	ts2 := startServer(t, withJetStream(t.TempDir()), withMaxPayload(1024))
	nc2 := connect(t, ts2)
	createStream(t, nc2, "S", "s.>")
	b := newBridge(t, m, nc2, natsbus.Outbound("s.>"), natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S"}))
	err = m.EmitSync(ctx, "s.big", order{Blob: string(make([]byte, 2048))})
	assert.ErrorIs(t, err, natsbus.ErrPayloadTooLarge)
	require.NoError(t, m.EmitSync(ctx, "s.small", order{}))
	require.NoError(t, b.Flush(ctx))
	assert.Equal(t, uint64(1), b.Stats().Published)
}

// keepAlive is the setup of the keep-alive tests: a JetStream server with
// stream S, a bridge publishing s.> from mA over ncA, and b, one receiving
// it into mB as durable consumer d with the given AckWait; and a log of
// what the tests watch (the acks, the deliveries), for failure messages.
type keepAlive struct {
	ncA    *nats.Conn
	stream jetstream.Stream
	mA, mB *eventbus.EventManager[order]
	b      *natsbus.Bridge[order]

	mu    sync.Mutex
	start time.Time
	log   []string
}

func newKeepAlive(t *testing.T, ackWait time.Duration) *keepAlive {
	ts := startServer(t, withJetStream(t.TempDir()))
	ncA, ncB := connect(t, ts), connect(t, ts)
	k := &keepAlive{ncA: ncA, stream: createStream(t, ncA, "S", "s.>"), mA: newManager(t), mB: newManager(t), start: time.Now()}
	newBridge(t, k.mA, ncA, natsbus.Outbound("s.>"), natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S"}))
	k.b = newBridge(t, k.mB, ncB, natsbus.Inbound("s.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S", Durable: "d", AckWait: ackWait}))
	return k
}

// note logs what was seen, and when.
func (k *keepAlive) note(what string) {
	k.mu.Lock()
	k.log = append(k.log, fmt.Sprintf("%s at %v", what, time.Since(k.start).Round(time.Millisecond)))
	k.mu.Unlock()
}

// seen returns the log.
func (k *keepAlive) seen() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return strings.Join(k.log, ", ")
}

// consumerState asks the server how many messages consumer durable of
// stream redelivered and holds unacknowledged.
func consumerState(stream jetstream.Stream, durable string) (redelivered, pending int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := stream.Consumer(ctx, durable)
	if err != nil {
		return 0, 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return info.NumRedelivered, info.NumAckPending, nil
}
