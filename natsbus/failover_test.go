package natsbus_test

import (
	"context"
	"encoding/json"
	"fmt"
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

// While no stream answers ("no responders", as during a leader election,
// which takes 4-9s with nats-server's defaults), publishes are retried
// within a time budget (15s by default) instead of failing after five
// quick attempts (issue 19 point 1: 1.5s, so an election turned hundreds
// of events into errors).
//
// The publisher's clock is stopped, then moved 9.6s forward in steps of
// 1.2s, each once every send has been answered: as a step is longer than
// the longest pause after a refusal (1s), each step sends every publish
// again, once. Then the stream is back, the clock moves on by the longest
// pause, and every publish is acknowledged: 10.6s of the budget spent,
// however slowly the machine runs. (The clock used to run on between the
// steps: 5.4s of a loaded machine's time would have spent the budget.)
func TestJetStreamPublishRidesOutNoResponders(t *testing.T) {
	const n, steps = 20, 8
	s := newJSSender(t, natsbus.JetStreamConfig{RetryWait: 10 * time.Millisecond})
	natsbus.FreezeClock(s.b)
	ctx := ctxTimeout(t, 30*time.Second)
	require.NoError(t, s.direct.DeleteStream(ctx, "S"))
	s.emit(t, n)
	answered := func(step int) {
		t.Helper()
		require.Eventually(t, func() bool { return natsbus.AwaitingAnswers(s.b) == 0 },
			20*time.Second, time.Millisecond, "step %d: every send answered", step)
	}
	answered(0)
	for i := range steps {
		natsbus.SkewClock(s.b, 1200*time.Millisecond)
		s.check(t)
		answered(i + 1)
	}
	st := s.b.Stats()
	assert.Zero(t, st.PublishErrors+st.Unconfirmed, "nothing given up within the budget: %+v", st)
	assert.Equal(t, uint64(steps*n), st.Retries, "every step sent every publish again: %+v", st)

	_, err := s.direct.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	require.NoError(t, err)
	natsbus.SkewClock(s.b, time.Second) // the longest pause after a refusal
	require.NoError(t, s.b.Flush(ctx))
	st = s.b.Stats()
	assert.Equal(t, uint64(n), st.Published, "%+v", st)
	assert.Equal(t, uint64((steps+1)*n), st.Retries, "%+v", st)
	assert.Zero(t, st.PublishErrors+st.Unconfirmed, "%+v", st)
	assert.Empty(t, s.errs.all())
	s.stored(t, n)
}

// When the budget is spent, the report says what the sends met. Every
// send is answered "no responders" and none is left without an answer
// (the ack timeout is far beyond the clock moves), so the publish is known
// not stored: ErrPublishRejected, with as many sends as answers seen.
//
// The clock is moved 10 minutes forward only after an answer came, six
// times: the budget (1h) is spent while the publish pauses after a
// refusal, never while a send awaits its answer, however slowly the
// answers travel. (Moving it on a timer, as this test once did, made a
// send whose answer was a few milliseconds late count as unanswered on a
// loaded machine: outcome unknown, not rejected.)
func TestJetStreamSpentBudgetSaysWhatWasTried(t *testing.T) {
	const step, steps = 10 * time.Minute, 6
	s := newJSSender(t, natsbus.JetStreamConfig{RetryWait: 10 * time.Millisecond, PublishTimeout: time.Hour, AckTimeout: 1000 * time.Hour})
	var answers atomic.Int64
	natsbus.SetAckHook(s.b, func(m *nats.Msg) *nats.Msg {
		answers.Add(1)
		return m
	})
	ctx := ctxTimeout(t, 60*time.Second)
	require.NoError(t, s.direct.DeleteStream(ctx, "S"))
	s.emit(t, 1)
	for i := range int64(steps) {
		require.Eventually(t, func() bool { return answers.Load() > i }, 20*time.Second, time.Millisecond, "answer %d", i+1)
		natsbus.SkewClock(s.b, step)
	}
	err := s.errs.next(t)
	require.NoError(t, s.b.Flush(ctx))
	n := answers.Load()
	assert.ErrorIs(t, err, natsbus.ErrPublishRejected, "every send refused: known not stored")
	assert.ErrorContains(t, err, fmt.Sprintf(`%d sends, %d answered "no responders"`, n, n))
	assert.NotContains(t, err.Error(), "without an ack in time")
	assert.ErrorContains(t, err, "1h0m0s")
	st := s.b.Stats()
	assert.Equal(t, uint64(1), st.PublishErrors, "%+v", st)
	assert.Zero(t, st.Unconfirmed, "%+v", st)
	assert.Equal(t, uint64(n-1), st.Retries, "%+v", st)
	assert.Len(t, s.errs.all(), 1)
}

// "duplicate message id is in process" (err_code 10158) means the server
// holds a send with that Nats-Msg-Id and has not decided: the publish is
// pending, sent again with the same ID, and ends acknowledged (issue 19
// point 2: it was counted as a failure, though the stream stored and
// delivered every such event). The hook turns the first answer to each
// message into that error.
func TestJetStreamInProcessIsPendingNotFailed(t *testing.T) {
	const n = 30
	s := newJSSender(t, natsbus.JetStreamConfig{RetryWait: 5 * time.Millisecond})
	var mu sync.Mutex
	seen := map[string]bool{}
	natsbus.SetAckHook(s.b, func(m *nats.Msg) *nats.Msg {
		mu.Lock()
		defer mu.Unlock()
		if seen[m.Subject] {
			return m
		}
		seen[m.Subject] = true
		body, _ := json.Marshal(map[string]any{"error": map[string]any{
			"code": 409, "err_code": 10158, "description": "duplicate message id is in process"}})
		return &nats.Msg{Subject: m.Subject, Data: body}
	})
	s.emit(t, n)
	require.NoError(t, s.b.Flush(ctxTimeout(t, 30*time.Second)))
	st := s.b.Stats()
	assert.Equal(t, uint64(n), st.Published, "%+v", st)
	assert.Equal(t, uint64(n), st.Duplicates, "the resends met the stored copies: %+v", st)
	assert.Zero(t, st.PublishErrors+st.Unconfirmed, "%+v", st)
	assert.GreaterOrEqual(t, st.Retries, uint64(n))
	assert.Empty(t, s.errs.all())
	s.stored(t, n)
}

// Provision creates the stream from the bridges' prefix and patterns, and
// a second bridge adds its subjects to it (issue 19 point 4: the user had
// to know the bridge's naming and use nats.go's API).
func TestJetStreamProvisionsStream(t *testing.T) {
	ts := startServer(t, withJetStream(t.TempDir()))
	nc := connect(t, ts)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	set := &natsbus.StreamSettings{Duplicates: 5 * time.Minute, MaxAge: time.Hour}
	newBridge(t, newManager(t), nc, natsbus.WithSubjectPrefix("shop."),
		natsbus.Outbound("order.>", "order.placed"), natsbus.Inbound("stock.*"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "SHOP", Durable: "a", Provision: set}))
	ctx := ctxTimeout(t, 10*time.Second)
	st, err := js.Stream(ctx, "SHOP")
	require.NoError(t, err)
	cfg := st.CachedInfo().Config
	assert.Equal(t, []string{"shop.order.>", "shop.stock.*"}, cfg.Subjects, "covered patterns left out")
	assert.Equal(t, 5*time.Minute, cfg.Duplicates)
	assert.Equal(t, time.Hour, cfg.MaxAge)
	assert.Equal(t, 1, cfg.Replicas)
	assert.Equal(t, jetstream.FileStorage, cfg.Storage)

	newBridge(t, newManager(t), nc, natsbus.WithSubjectPrefix("shop."), natsbus.Inbound("billing.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "SHOP", Durable: "b", Provision: set}))
	st, err = js.Stream(ctx, "SHOP")
	require.NoError(t, err)
	assert.Equal(t, []string{"shop.order.>", "shop.stock.*", "shop.billing.>"}, st.CachedInfo().Config.Subjects)

	_, err = natsbus.New(ctx, newManager(t), nc, natsbus.WithSubjectPrefix("shop."), natsbus.Outbound("x"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "SHOP",
			Provision: &natsbus.StreamSettings{Storage: jetstream.MemoryStorage}}))
	assert.ErrorIs(t, err, natsbus.ErrConfig, "storage cannot change")
}

// A 3-node cluster with an R3 stream made by Provision: a publishing
// bridge on the stream leader's node and three consuming bridges sharing
// one durable, one per node. The stream leader's node is shut down while
// events flow. Every event is published with no reported failure
// (points 1 and 2 of issue 19), stored once, delivered, and every consumer
// bridge receives events again soon after the leaders are back (point 3:
// consumers sat idle for 30s).
func TestClusterStreamLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster failover takes an election")
	}
	t.Run("stream leader", func(t *testing.T) { clusterFailover(t, false) })
	t.Run("consumer leader", func(t *testing.T) { clusterFailover(t, true) })
}

// clusterFailover runs the failover scenario, shutting down the stream
// leader's node, or the consumer leader's.
func clusterFailover(t *testing.T, killConsumerLeader bool) {
	const hb = time.Second // the default Heartbeat
	began := time.Now()
	c := startCluster(t, 3)
	t.Logf("cluster up after %v", time.Since(began))
	set := &natsbus.StreamSettings{Replicas: 3, Storage: jetstream.FileStorage}
	// Messages the cut-off node had sent to a pull and that never arrived
	// are redelivered after AckWait: shortened from 30s so that the test
	// does not wait for them that long. Everything else is the default.
	consumerCfg := natsbus.JetStreamConfig{Stream: "SHOP", Durable: "workers", Provision: set, AckWait: 5 * time.Second}

	type delivery struct {
		id int
		at time.Time
	}
	var (
		mu   sync.Mutex
		got  = map[int]int{}
		logs = make([][]delivery, 3)
	)
	var consumers []*natsbus.Bridge[order]
	for i, node := range c.names {
		m := newManager(t)
		_, err := m.RegisterListener("order.>", func(_ context.Context, e eventbus.Event[order]) error {
			mu.Lock()
			got[e.Data.ID]++
			logs[i] = append(logs[i], delivery{e.Data.ID, time.Now()})
			mu.Unlock()
			return nil
		})
		require.NoError(t, err)
		b := newBridge(t, m, c.connect(t, node), natsbus.WithSubjectPrefix("shop."), natsbus.Inbound("order.>"),
			natsbus.WithJetStream(consumerCfg), natsbus.WithErrorHandler(func(err error) { t.Logf("%s consumer %d: %v", time.Now().Format("05.000"), i, err) }))
		consumers = append(consumers, b)
	}
	admin, err := jetstream.New(c.connect(t, c.names[0]))
	require.NoError(t, err)
	leader := streamLeader(t, admin, "SHOP", "")
	t.Logf("bridges up after %v", time.Since(began))

	// The publisher's retry budget is a minute rather than the default
	// 15s. What is watched here is that every publish rides out the
	// election, however long it takes, and that no stored event is
	// reported failed; that the default budget covers the 4-9s of an
	// election is TestJetStreamPublishRidesOutNoResponders's, on a stopped
	// clock. Here the election runs on the machine's clock: on a loaded
	// one (2 cores, load average 10) this test saw the new stream leader
	// 11.8s, 14.6s and 29.4s after the kill; with the default budget, the
	// last run failed with the 256 publishes in flight (MaxInFlight)
	// reported as outcome unknown.
	mP := newManager(t)
	errsP := newErrorLog()
	bP := newBridge(t, mP, c.connect(t, leader), natsbus.WithSubjectPrefix("shop."), natsbus.Outbound("order.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "SHOP", Provision: set, PublishTimeout: time.Minute}),
		natsbus.WithErrorHandler(errsP.handle))

	// About 2,000 events/s, until every consumer received events after
	// the election.
	ctx := ctxTimeout(t, 120*time.Second)
	sent := make(chan error, 1)
	stop := make(chan struct{})
	var emitted atomic.Int64
	var emitMu sync.Mutex
	var emitAt []time.Time // by event ID, for the delivery lag in the log
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; {
			select {
			case <-stop:
				sent <- nil
				return
			case <-tick.C:
			}
			emitMu.Lock()
			for range 20 {
				emitAt = append(emitAt, time.Now())
			}
			emitMu.Unlock()
			for end := i + 20; i < end; i++ {
				if err := mP.Emit(ctx, fmt.Sprintf("order.%d", i%7), order{ID: i}); err != nil {
					sent <- err
					return
				}
				emitted.Add(1)
			}
		}
	}()
	require.Eventually(t, func() bool { return bP.Stats().Published >= 500 }, 60*time.Second, time.Millisecond)
	consumerLeaderBefore := consumerLeader(t, admin, "SHOP", "workers", "")
	victim := leader
	if killConsumerLeader {
		victim = consumerLeaderBefore
	}
	killed := time.Now()
	c.kill(victim)
	t.Logf("%s killed %s (stream leader %s, consumer leader %s) after %d events emitted", time.Now().Format("05.000"), victim, leader, consumerLeaderBefore, emitted.Load())

	admin, err = jetstream.New(c.connect(t, c.alive()))
	require.NoError(t, err)
	newLeader := streamLeader(t, admin, "SHOP", victim)
	sElected := time.Now()
	newCLeader := consumerLeader(t, admin, "SHOP", "workers", victim)
	elected := time.Now()
	t.Logf("stream leader %s %v after the kill, consumer leader %s %v after", newLeader, sElected.Sub(killed), newCLeader, elected.Sub(killed))
	firstAfter := func(i int) time.Time {
		for _, d := range logs[i] {
			if d.at.After(elected) {
				return d.at
			}
		}
		return time.Time{}
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range logs {
			if firstAfter(i).IsZero() {
				return false
			}
		}
		return true
	}, 60*time.Second, 10*time.Millisecond, "every consumer receives events after the election")
	close(stop)
	t.Logf("every consumer resumed %v after the start", time.Since(began))
	require.NoError(t, receive(t, sent))
	total := int(emitted.Load())
	require.NoError(t, mP.Flush(ctx))
	require.NoError(t, bP.Flush(ctx))
	st := bP.Stats()
	assert.Equal(t, uint64(total), st.Published, "%+v", st)
	assert.Zero(t, st.PublishErrors, "no event reported failed: %+v", st)
	assert.Zero(t, st.Unconfirmed, "no event of unknown outcome: %+v", st)
	assert.Empty(t, errsP.all())

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == total
	}, 60*time.Second, 10*time.Millisecond, "every acknowledged event delivered")
	s, err := admin.Stream(ctx, "SHOP")
	require.NoError(t, err)
	assert.Equal(t, uint64(total), s.CachedInfo().State.Msgs, "every event stored once")

	mu.Lock()
	defer mu.Unlock()
	dup := 0
	for _, n := range got {
		dup += n - 1
	}
	for i, l := range logs {
		first := firstAfter(i)
		// The bound: the leaders are back, plus two heartbeats for a pull
		// lost with the node, plus an allowance for a loaded machine and
		// for the server's share-out among the three consumers' pulls.
		// (Before issue 19: 20s and more.)
		assert.Less(t, first.Sub(elected), 2*hb+5*time.Second, "consumer %d (on %s) resumed", i, c.names[i])
		// How far behind the emitter the consumer was when the node was
		// cut off, and its last delivery before the leaders were back:
		// a machine short of CPU shows here, not as natsbus's delay.
		var lag time.Duration
		var last time.Time
		emitMu.Lock()
		for _, d := range l {
			if d.at.Before(killed) && d.at.After(killed.Add(-time.Second)) {
				lag = max(lag, d.at.Sub(emitAt[d.id]))
			}
			if d.at.Before(elected) {
				last = d.at
			}
		}
		emitMu.Unlock()
		t.Logf("consumer %d on %s: %d deliveries, first %v after the leaders were back; restarts %d; "+
			"delivery lag before the cut %v, last delivery before the leaders were back %v after the cut",
			i, c.names[i], len(l), first.Sub(elected), consumers[i].Stats().ConsumerRestarts, lag, last.Sub(killed))
	}
	t.Logf("publisher %+v; %d redeliveries (at-least-once)", st, dup)
}
