package natsbus_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// order is the event payload used throughout the tests.
type order struct {
	ID   int    `json:"id"`
	Item string `json:"item,omitempty"`
	Blob string `json:"blob,omitempty"`
}

// testServer is a real nats-server running in this process on a random
// loopback port.
type testServer struct {
	t    testing.TB
	opts server.Options
	srv  *server.Server
	url  string
}

type serverOpt func(*server.Options)

func withJetStream(dir string) serverOpt {
	return func(o *server.Options) {
		o.JetStream = true
		o.StoreDir = dir
	}
}

func withMaxPayload(n int32) serverOpt {
	return func(o *server.Options) { o.MaxPayload = n }
}

// startServer starts a server and registers its shutdown with t.Cleanup.
// Register it before the connections, so that they close first (Cleanup
// runs last-in first-out).
func startServer(t testing.TB, opts ...serverOpt) *testServer {
	t.Helper()
	ts := &testServer{t: t, opts: server.Options{
		Host:   "127.0.0.1",
		Port:   -1,
		NoLog:  true,
		NoSigs: true,
	}}
	for _, o := range opts {
		o(&ts.opts)
	}
	ts.start()
	// After the first start, keep the port so that a restart comes back
	// where clients reconnect to.
	ts.opts.Port = ts.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) start() {
	ts.t.Helper()
	o := ts.opts // the server keeps and mutates its options
	s, err := server.NewServer(&o)
	require.NoError(ts.t, err)
	s.Start()
	require.True(ts.t, s.ReadyForConnections(10*time.Second), "nats-server not ready")
	ts.srv = s
	ts.url = s.ClientURL()
}

func (ts *testServer) stop() {
	if ts.srv == nil {
		return
	}
	ts.srv.Shutdown()
	ts.srv.WaitForShutdown()
	ts.srv = nil
}

func (ts *testServer) restart() {
	ts.t.Helper()
	ts.stop()
	ts.start()
}

// connect opens a connection that reconnects quickly and forever, and
// closes it in t.Cleanup.
func connect(t testing.TB, ts *testServer, opts ...nats.Option) *nats.Conn {
	t.Helper()
	base := []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(20 * time.Millisecond),
		nats.ReconnectJitter(0, 0),
		// The tests watch errors through the bridge; keep nats.go quiet.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
	}
	nc, err := nats.Connect(ts.url, append(base, opts...)...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// newManager returns an EventManager closed in t.Cleanup.
func newManager(t testing.TB, opts ...eventbus.Option) *eventbus.EventManager[order] {
	t.Helper()
	m := eventbus.New[order](opts...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

// newBridge starts a bridge and closes it in t.Cleanup.
func newBridge(t testing.TB, m *eventbus.EventManager[order], nc *nats.Conn, opts ...natsbus.Option) *natsbus.Bridge[order] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsbus.New(ctx, m, nc, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

// createStream creates a file-backed stream.
func createStream(t testing.TB, nc *nats.Conn, name string, subjects ...string) jetstream.Stream {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     name,
		Subjects: subjects,
		Storage:  jetstream.FileStorage,
	})
	require.NoError(t, err)
	return s
}

// errorLog collects what a bridge reports to its error handler.
type errorLog struct {
	mu   sync.Mutex
	errs []error
	ch   chan error
}

func newErrorLog() *errorLog { return &errorLog{ch: make(chan error, 1024)} }

func (l *errorLog) handle(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
	select {
	case l.ch <- err:
	default:
	}
}

func (l *errorLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

// next waits for the next reported error.
func (l *errorLog) next(t testing.TB) error {
	t.Helper()
	select {
	case err := <-l.ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no error reported")
		return nil
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// receive waits for a value on ch.
func receive[V any](t testing.TB, ch <-chan V) V {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(45 * time.Second):
		t.Fatal("timed out waiting")
		var zero V
		return zero
	}
}
