package natsbus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jsSender is a JetStream bridge with outbound "s.>" whose connection goes
// through a proxy, with a stream S that a direct connection can inspect.
type jsSender struct {
	ts     *testServer
	px     *proxy
	nc     *nats.Conn
	m      *eventbus.EventManager[order]
	b      *natsbus.Bridge[order]
	errs   *errorLog
	direct jetstream.JetStream
}

func newJSSender(t *testing.T, cfg natsbus.JetStreamConfig) *jsSender {
	t.Helper()
	s := &jsSender{ts: startServer(t, withJetStream(t.TempDir()))}
	s.px = startProxy(t, s.ts.url)
	direct := connect(t, s.ts)
	createStream(t, direct, "S", "s.>")
	var err error
	s.direct, err = jetstream.New(direct)
	require.NoError(t, err)
	s.nc = connect(t, &testServer{t: t, url: s.px.url()})
	s.m = newManager(t)
	s.errs = newErrorLog()
	cfg.Stream = "S"
	s.b = newBridge(t, s.m, s.nc, natsbus.Outbound("s.>"), natsbus.WithJetStream(cfg), natsbus.WithErrorHandler(s.errs.handle))
	return s
}

func (s *jsSender) emit(t *testing.T, n int) {
	t.Helper()
	ctx := ctxTimeout(t, 10*time.Second)
	for i := range n {
		require.NoError(t, s.m.EmitSync(ctx, fmt.Sprintf("s.%d", i), order{ID: i}))
	}
}

// stored waits until the stream holds n messages.
func (s *jsSender) stored(t *testing.T, n uint64) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := s.direct.Stream(ctx, "S")
		return err == nil && st.CachedInfo().State.Msgs == n
	}, 20*time.Second, 5*time.Millisecond, "stream holds %d messages", n)
}

// check waits until the publisher has run at least two more checks, so
// that one ran entirely after the call.
func (s *jsSender) check(t *testing.T) {
	t.Helper()
	c := natsbus.PublisherChecks(s.b)
	require.Eventually(t, func() bool { return natsbus.PublisherChecks(s.b) >= c+2 }, 10*time.Second, time.Millisecond)
}

// The acks of stored messages are lost, then the connection drops and comes
// back: the publishes are sent again at once (same Nats-Msg-Id), answered
// as duplicates, and nothing is stored twice. With an ack timeout of an
// hour, only the resend on reconnect can settle them before Flush's
// deadline (issue 13: recovery waited for the ack timeout).
func TestJetStreamResendsOnReconnect(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "connection cut", true: "server restarted with the same store"}[restart], func(t *testing.T) {
			const n = 50
			s := newJSSender(t, natsbus.JetStreamConfig{AckTimeout: time.Hour, RetryWait: 10 * time.Millisecond, PublishAttempts: 1000})
			s.px.loseAcks()
			s.emit(t, n)
			s.stored(t, n)

			s.px.healNew()
			start := time.Now()
			if restart {
				s.ts.restart() // the proxied connection drops with it
				start = time.Now()
			} else {
				s.px.cut()
			}
			require.NoError(t, s.b.Flush(ctxTimeout(t, 30*time.Second)), "settled on reconnect")
			t.Logf("all %d publishes settled %v after the outage ended", n, time.Since(start))

			st := s.b.Stats()
			assert.Equal(t, uint64(n), st.Published, "%+v", st)
			assert.Equal(t, uint64(n), st.Duplicates, "the server had stored them: %+v", st)
			assert.Zero(t, st.PublishErrors+st.Unconfirmed, "%+v", st)
			assert.Empty(t, s.errs.all())
			s.stored(t, n)
		})
	}
}

// Ack timeouts count only while connected: a publish made during an outage
// is neither resent into the reconnect buffer nor given up, however long
// the outage (here: three ack timeouts on the publisher's clock), and is
// settled when the server comes back with the same store.
func TestJetStreamAckTimeoutsPauseWhileDisconnected(t *testing.T) {
	const n = 20
	s := newJSSender(t, natsbus.JetStreamConfig{AckTimeout: time.Hour, PublishAttempts: 2, RetryWait: 10 * time.Millisecond})
	s.ts.stop()
	require.Eventually(t, func() bool { return !s.nc.IsConnected() }, 10*time.Second, time.Millisecond)
	s.emit(t, n) // into nats.go's reconnect buffer
	natsbus.SkewClock(s.b, 3*time.Hour)
	s.check(t)
	st := s.b.Stats()
	assert.Zero(t, st.Retries, "no resend while disconnected: %+v", st)
	assert.Zero(t, st.Unconfirmed+st.PublishErrors, "nothing given up while disconnected: %+v", st)

	s.ts.start()
	require.NoError(t, s.b.Flush(ctxTimeout(t, 30*time.Second)))
	st = s.b.Stats()
	assert.Equal(t, uint64(n), st.Published, "%+v", st)
	assert.Zero(t, st.Unconfirmed+st.PublishErrors, "%+v", st)
	assert.Empty(t, s.errs.all())
	s.stored(t, n)
}

// Time disconnected does not count against PublishTimeout: a publish made
// before a disconnection longer than its budget still has the rest of its
// budget after the reconnect, to ride out a stream that is not back yet
// (here deleted, so that every send is answered "no responders", as during
// an election). It used to get AckTimeout after the reconnect and no more:
// publishes were given up while the stream was still electing its leader.
func TestJetStreamBudgetPausesWhileDisconnected(t *testing.T) {
	const n = 5
	s := newJSSender(t, natsbus.JetStreamConfig{AckTimeout: time.Minute, PublishTimeout: time.Hour, RetryWait: 10 * time.Millisecond})
	ctx := ctxTimeout(t, 30*time.Second)
	require.NoError(t, s.direct.DeleteStream(ctx, "S"))
	s.ts.stop()
	require.Eventually(t, func() bool { return !s.nc.IsConnected() }, 10*time.Second, time.Millisecond)
	s.check(t) // sees the connection down
	s.emit(t, n)
	natsbus.SkewClock(s.b, 3*time.Hour) // disconnected for three budgets
	s.check(t)

	s.ts.start()
	require.Eventually(t, func() bool { return s.nc.IsConnected() }, 10*time.Second, time.Millisecond)
	s.check(t)                            // resends: "no responders", the stream is gone
	natsbus.SkewClock(s.b, 2*time.Minute) // past AckTimeout and every pause: within the budget's rest
	s.check(t)
	st := s.b.Stats()
	assert.Zero(t, st.Unconfirmed+st.PublishErrors, "nothing given up within the budget: %+v, %v", st, s.errs.all())

	createStream(t, connect(t, s.ts), "S", "s.>")
	require.NoError(t, s.b.Flush(ctx))
	st = s.b.Stats()
	assert.Equal(t, uint64(n), st.Published, "%+v", st)
	assert.Empty(t, s.errs.all())
	s.stored(t, n)
}

// A publish that got no ack after every attempt is reported as outcome
// unknown and counted apart from known failures: the server may have
// stored it, as it did here.
func TestJetStreamAckTimeoutIsOutcomeUnknown(t *testing.T) {
	const n = 10
	s := newJSSender(t, natsbus.JetStreamConfig{AckTimeout: time.Hour, PublishAttempts: 2, PublishTimeout: 3 * time.Hour})
	s.px.loseAcks()
	s.emit(t, n)
	s.stored(t, n)
	natsbus.SkewClock(s.b, 2*time.Hour) // first ack timeout: resend
	s.check(t)
	assert.Equal(t, uint64(n), s.b.Stats().Retries)
	natsbus.SkewClock(s.b, 2*time.Hour) // second: give up
	require.NoError(t, s.b.Flush(ctxTimeout(t, 10*time.Second)))

	errs := s.errs.all()
	require.Len(t, errs, n)
	for _, err := range errs {
		assert.ErrorIs(t, err, natsbus.ErrAckTimeout)
		assert.ErrorContains(t, err, "outcome unknown")
		var pe *natsbus.PublishError
		assert.ErrorAs(t, err, &pe)
	}
	st := s.b.Stats()
	assert.Equal(t, uint64(n), st.Unconfirmed, "%+v", st)
	assert.Zero(t, st.PublishErrors+st.Published, "%+v", st)
	s.stored(t, n) // stored all the same, once
}

// When the connection is closed for good, unacknowledged publishes are
// reported at once as outcome unknown, and Flush returns.
func TestJetStreamClosedConnectionSettlesPublishes(t *testing.T) {
	const n = 10
	s := newJSSender(t, natsbus.JetStreamConfig{AckTimeout: time.Hour})
	s.px.loseAcks()
	s.emit(t, n)
	s.nc.Close()
	require.NoError(t, s.b.Flush(ctxTimeout(t, 10*time.Second)))
	errs := s.errs.all()
	require.Len(t, errs, n)
	for _, err := range errs {
		assert.ErrorIs(t, err, natsbus.ErrAckTimeout)
		assert.ErrorIs(t, err, nats.ErrConnectionClosed)
	}
	assert.Equal(t, uint64(n), s.b.Stats().Unconfirmed)
}

// Flush returns only after the outcome of every publish it waited for is
// counted (issue 13: an ack taken off the pending list but not yet counted
// let Flush return early). The hook holds the publisher between the two.
func TestJetStreamFlushWaitsUntilOutcomeIsCounted(t *testing.T) {
	ts := startServer(t, withJetStream(t.TempDir()))
	nc := connect(t, ts)
	createStream(t, nc, "S", "s.>")
	m := newManager(t)
	b := newBridge(t, m, nc, natsbus.Outbound("s.>"), natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S"}))
	inHook := make(chan struct{})
	release := make(chan struct{})
	natsbus.SetAfterTake(b, func() {
		close(inHook)
		<-release
	})
	require.NoError(t, m.EmitSync(ctxTimeout(t, 10*time.Second), "s.1", order{ID: 1}))
	receive(t, inHook) // the ack is claimed, not yet counted

	published := make(chan uint64, 1)
	go func() {
		err := b.Flush(ctxTimeout(t, 10*time.Second))
		assert.NoError(t, err)
		published <- b.Stats().Published
	}()
	require.Eventually(t, func() bool { return len(published) > 0 || natsbus.FlushWaiters(b) > 0 },
		10*time.Second, time.Millisecond, "Flush returned or waits")
	close(release)
	assert.Equal(t, uint64(1), receive(t, published), "Flush returned after the ack was counted")
}
