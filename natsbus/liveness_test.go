package natsbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A pull that falls silent (no heartbeat, no message) is given up two
// heartbeats after its last sign of life, however many messages about
// earlier pulls arrive meanwhile (late heartbeats, "batch completed"
// answers). Before, any message restarted the two-heartbeat wait: on a
// loaded 3-node cluster a consumer on a surviving node noticed the loss of
// its pull 11s and 16s after the consumer leader's node was cut off,
// instead of 2s.
//
// The bridge's connection goes through a proxy that then drops every byte
// from the server (the pull in progress falls silent), while the test
// hands the consumer a heartbeat of an earlier pull every 10ms, until the
// interruption is reported.
func TestJetStreamSilentPullIsGivenUpDespiteOldPullTraffic(t *testing.T) {
	const hb = 100 * time.Millisecond
	ts := startServer(t, withJetStream(t.TempDir()))
	createStream(t, connect(t, ts), "S", "s.>")
	js, err := jetstream.New(connect(t, ts))
	require.NoError(t, err)
	px := startProxy(t, ts.url)
	nc := connect(t, &testServer{t: t, url: px.url()})
	m := newManager(t)
	errs := newErrorLog()
	b := newBridge(t, m, nc, natsbus.Inbound("s.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S", Durable: "d", Heartbeat: hb, PullExpiry: time.Minute}),
		natsbus.WithErrorHandler(errs.handle))
	got := make(chan struct{}, 1)
	_, err = m.RegisterListener("s.>", func(context.Context, eventbus.Event[order]) error {
		got <- struct{}{}
		return nil
	})
	require.NoError(t, err)

	// The pull is live: a message goes through.
	ctx := ctxTimeout(t, 10*time.Second)
	_, err = js.Publish(ctx, "s.1", []byte(`{"id": 1}`))
	require.NoError(t, err)
	receive(t, got)

	// A heartbeat that a loaded machine delays past two heartbeat
	// intervals can interrupt the live pull before the silence: such
	// interruptions, each counted and then reported, come before the one
	// watched for.
	before := int(b.Stats().ConsumerRestarts)
	px.loseAcks()
	stop, stopped, started := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var injected int
	go func() {
		defer close(stopped)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			hdr := nats.Header{}
			hdr.Set("Status", "100")
			hdr.Set("Description", "Idle Heartbeat")
			natsbus.InjectConsumerMsg(b, &nats.Msg{Subject: natsbus.ConsumerInbox(b) + "old", Header: hdr})
			if injected++; injected == 1 {
				close(started)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	<-started
	require.Eventually(t, func() bool { return len(errs.all()) > before }, 10*time.Second, time.Millisecond,
		"the silent pull is given up while old pulls' heartbeats arrive")
	close(stop)
	<-stopped
	err = errs.all()[before]
	assert.ErrorIs(t, err, natsbus.ErrConsumerInterrupted)
	assert.ErrorContains(t, err, "no heartbeat for 200ms")
	assert.Equal(t, uint64(before+1), b.Stats().ConsumerRestarts, "given up once")
	t.Logf("%d old pulls' heartbeats injected; %d restarts before the silence", injected, before)

	// Back to normal: the consumer resumes.
	px.healNew()
	px.cut()
	_, err = js.Publish(ctx, "s.2", []byte(`{"id": 2}`))
	require.NoError(t, err)
	receive(t, got)
}
