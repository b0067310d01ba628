package natsbus_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// rawClient publishes raw HPUB frames, as a hostile client could, over one
// connection that it reopens after the server closed it (-ERR).
type rawClient struct {
	t    testing.TB
	addr string
	c    net.Conn
	r    *bufio.Reader
}

func (rc *rawClient) close() {
	if rc.c != nil {
		_ = rc.c.Close()
		rc.c = nil
	}
}

// publish reports whether the server accepted the frame.
func (rc *rawClient) publish(subject, header, payload string) bool {
	rc.t.Helper()
	if rc.c == nil {
		c, err := net.Dial("tcp", rc.addr)
		require.NoError(rc.t, err)
		rc.c, rc.r = c, bufio.NewReader(c)
		line, err := rc.r.ReadString('\n')
		require.NoError(rc.t, err)
		require.True(rc.t, strings.HasPrefix(line, "INFO "), line)
		_, err = fmt.Fprintf(c, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n")
		require.NoError(rc.t, err)
	}
	_ = rc.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(rc.c, "HPUB %s %d %d\r\n%s%s\r\nPING\r\n",
		subject, len(header), len(header)+len(payload), header, payload); err != nil {
		rc.close()
		return false
	}
	for {
		line, err := rc.r.ReadString('\n')
		if err != nil || strings.HasPrefix(line, "-ERR") {
			rc.close()
			return false
		}
		if strings.HasPrefix(line, "PONG") {
			return true
		}
	}
}

// validFrame filters out inputs that are not one HPUB frame at all.
func validFrame(subject, header string) bool {
	return subject != "" && !strings.ContainsAny(subject, " \t\r\n") && !strings.Contains(header, "\r\nPING")
}

func fuzzSeeds(f *testing.F) {
	for _, s := range []struct{ subject, header, payload string }{
		{"a", "NATS/1.0\r\n\r\n", `{"id":1}`},
		{"a.b", "NATS/1.0\r\nStatus: 400\r\n\r\n", ""},
		{"a", "NATS/1.0 503\r\n\r\n", ""},
		{"a", "NATS/1.0 100 Idle Heartbeat\r\n\r\n", ""},
		{"a", "NATS/1.0\r\nStatus: 409\r\nDescription: Leadership Change\r\n\r\n", ""},
		{"a", "NATS/1.0\r\nEventbus-Origin: x\r\nEventbus-Id: y\r\n\r\n", `{"id":2}`},
		{"a", "GARBAGE\r\nno colon\r\n\r\n", `{"id":3}`},
		{"a", "NATS/1.0\r\nContent-Type: text/plain\r\n\r\n", `{"id":4}`},
		{"a.*", "NATS/1.0\r\n\r\n", `{"id":5}`},
		{"a..b", "NATS/1.0\r\n\r\n", `[[[[[[[[`},
		{"a", "NATS/1.0\r\nNats-Msg-Id: z\r\n\r\n", `null`},
	} {
		f.Add(s.subject, s.header, s.payload)
	}
}

// Every message a hostile core-NATS client manages to send to a core bridge
// moves exactly one of its counters (delivered, refused, forged, own), and
// the bridge keeps delivering: a plain subscription on the same subjects
// counts what the server delivered, and a sentinel after each input shows
// that the bridge has dealt with it.
func FuzzCoreInbound(f *testing.F) {
	fuzzSeeds(f)
	ts := startServer(f)
	nc, obs := connect(f, ts), connect(f, ts)
	m := newManager(f)
	sentinel := make(chan struct{}, 1)
	_, err := m.RegisterListener("in.>", func(_ context.Context, e eventbus.Event[order]) error {
		if e.Name == "in.sentinel" {
			sentinel <- struct{}{}
		}
		return nil
	})
	require.NoError(f, err)
	b := newBridge(f, m, nc, natsbus.Inbound("in.>"), natsbus.WithErrorHandler(func(error) {}))
	var delivered atomic.Int64
	obsSentinel := make(chan struct{}, 1)
	sub, err := obs.Subscribe("in.>", func(msg *nats.Msg) {
		if msg.Subject == "in.sentinel" {
			obsSentinel <- struct{}{}
		} else {
			delivered.Add(1)
		}
	})
	require.NoError(f, err)
	require.NoError(f, obs.Flush())
	f.Cleanup(func() { _ = sub.Unsubscribe() })
	rc := &rawClient{t: f, addr: strings.TrimPrefix(ts.url, "nats://")}
	f.Cleanup(rc.close)
	accounted := func() uint64 {
		st := b.Stats()
		return st.Received + st.DecodeErrors + st.ForgedOrigin + st.SkippedOwn + st.ListenerErrors
	}

	f.Fuzz(func(t *testing.T, subject, header, payload string) {
		if !validFrame(subject, header) {
			t.Skip()
		}
		before, seen := accounted(), delivered.Load()
		rc.t = t
		rc.publish("in."+subject, header, payload)
		require.NoError(t, nc.Publish("in.sentinel", []byte(`{"id":0}`)))
		// Both subscriptions deliver in order: once each has its sentinel,
		// it has dealt with the input.
		receive(t, sentinel)
		receive(t, obsSentinel)
		// The sentinel is one of the accounted messages; it is counted as
		// received when Emit returns, which may be after its listener ran.
		want := uint64(delivered.Load()-seen) + 1
		require.Eventually(t, func() bool { return accounted()-before >= want }, 10*time.Second, time.Millisecond)
		require.Equal(t, want, accounted()-before, "each delivered message moves one counter")
	})
}

// The JetStream version: every message a hostile client stores is
// delivered or refused (counted, reported, terminated), and nothing stays
// pending or unacknowledged.
func FuzzJetStreamInbound(f *testing.F) {
	fuzzSeeds(f)
	ts := startServer(f, withJetStream(f.TempDir()))
	nc := connect(f, ts)
	stream := createStream(f, nc, "IN", "in.>")
	js, err := jetstream.New(nc)
	require.NoError(f, err)
	m := newManager(f)
	sentinel := make(chan struct{}, 1)
	_, err = m.RegisterListener("in.>", func(_ context.Context, e eventbus.Event[order]) error {
		if e.Name == "in.sentinel" {
			sentinel <- struct{}{}
		}
		return nil
	})
	require.NoError(f, err)
	b := newBridge(f, m, connect(f, ts), natsbus.Inbound("in.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "IN", Durable: "d"}), natsbus.WithErrorHandler(func(error) {}))
	rc := &rawClient{t: f, addr: strings.TrimPrefix(ts.url, "nats://")}
	f.Cleanup(rc.close)
	accounted := func() uint64 {
		st := b.Stats()
		return st.Received + st.DecodeErrors + st.ForgedOrigin + st.SkippedOwn
	}
	stored := func(t *testing.T) uint64 {
		info, err := stream.Info(context.Background())
		require.NoError(t, err)
		return info.State.Msgs
	}

	f.Fuzz(func(t *testing.T, subject, header, payload string) {
		if !validFrame(subject, header) {
			t.Skip()
		}
		before, storedBefore := accounted(), stored(t)
		rc.t = t
		rc.publish("in."+subject, header, payload)
		_, err := js.Publish(ctxTimeout(t, 10*time.Second), "in.sentinel", []byte(`{"id":0}`))
		require.NoError(t, err)
		receive(t, sentinel) // the consumer delivers in stream order
		consumerSettled(t, stream, "d")
		require.Equal(t, stored(t)-storedBefore, accounted()-before, "each stored message moves one counter")
	})
}
