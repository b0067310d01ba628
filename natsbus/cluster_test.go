package natsbus_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// testCluster is a JetStream cluster of embedded nats-servers in this
// process, on loopback addresses.
type testCluster struct {
	t       testing.TB
	servers map[string]*server.Server // by server name; nil once shut down
	names   []string
}

// freePorts reserves n loopback ports, so that every server's routes can
// name all of them from the start (JetStream infers the cluster size from
// the configured routes).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		require.NoError(t, ln.Close())
	}
	return ports
}

func startCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, servers: map[string]*server.Server{}}
	ports := freePorts(t, n)
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		o := &server.Options{
			ServerName: name,
			Host:       "127.0.0.1",
			Port:       -1,
			NoLog:      true,
			NoSigs:     true,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			Cluster:    server.ClusterOpts{Name: "C", Host: "127.0.0.1", Port: ports[i]},
			Routes:     routes,
		}
		s, err := server.NewServer(o)
		require.NoError(t, err)
		s.Start()
		c.servers[name] = s
		c.names = append(c.names, name)
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			if s != nil {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	})
	for _, s := range c.servers {
		require.True(t, s.ReadyForConnections(10*time.Second))
	}
	// JetStream is usable once the meta group has a leader.
	require.Eventually(t, func() bool {
		for _, s := range c.servers {
			if s.JetStreamIsLeader() {
				return true
			}
		}
		return false
	}, 60*time.Second, 10*time.Millisecond, "JetStream meta leader")
	return c
}

// urls returns the client URLs of the running servers, first's first.
func (c *testCluster) urls(first string) string {
	out := []string{c.servers[first].ClientURL()}
	for _, n := range c.names {
		if n != first && c.servers[n] != nil {
			out = append(out, c.servers[n].ClientURL())
		}
	}
	return strings.Join(out, ",")
}

// connect opens a connection to server first (the others as fallbacks, in
// order), reconnecting quickly and forever.
func (c *testCluster) connect(t testing.TB, first string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.urls(first),
		nats.DontRandomize(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(20*time.Millisecond),
		nats.ReconnectJitter(0, 0),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// alive returns the name of a running server.
func (c *testCluster) alive() string {
	for _, n := range c.names {
		if c.servers[n] != nil {
			return n
		}
	}
	c.t.Fatal("no server running")
	return ""
}

// kill shuts server name down, without handing its leaderships over.
func (c *testCluster) kill(name string) {
	s := c.servers[name]
	c.servers[name] = nil
	s.Shutdown()
	s.WaitForShutdown()
}

// streamLeader waits until stream has a leader other than not, and
// returns its name.
func streamLeader(t testing.TB, js jetstream.JetStream, stream, not string) string {
	t.Helper()
	var leader string
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		info := s.CachedInfo()
		if info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Leader == not {
			return false
		}
		leader = info.Cluster.Leader
		return true
	}, 60*time.Second, 10*time.Millisecond, "stream %s has a leader", stream)
	return leader
}

// consumerLeader is streamLeader for a consumer.
func consumerLeader(t testing.TB, js jetstream.JetStream, stream, durable, not string) string {
	t.Helper()
	var leader string
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, stream, durable)
		if err != nil {
			return false
		}
		info := c.CachedInfo()
		if info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Leader == not {
			return false
		}
		leader = info.Cluster.Leader
		return true
	}, 60*time.Second, 10*time.Millisecond, "consumer %s has a leader", durable)
	return leader
}
