package natsbus_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// testCluster is a JetStream cluster of embedded nats-servers in this
// process, on loopback addresses. Every connection, route or client, goes
// through a proxy of the test, so that a node can be cut off (see kill):
// its peers then elect new leaders only after nats-server's election
// timeout (4-9s).
type testCluster struct {
	t       testing.TB
	servers map[string]*server.Server // by server name
	names   []string
	clients map[string]*proxy   // client proxy of each server
	routes  map[string][]*proxy // route proxies from and to each server
	down    map[string]bool
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
	for attempt := 1; ; attempt++ {
		c, err := tryStartCluster(t, n)
		if err == nil {
			return c
		}
		if attempt == 3 {
			t.Fatalf("starting a cluster of %d: %v", n, err)
		}
		// A port freePorts reserved can be taken by another listener (a
		// proxy's, a server's client port) before its server binds it:
		// that server never gets ready. Start again, on other ports.
		t.Logf("starting a cluster of %d, attempt %d: %v; again on other ports", n, attempt, err)
	}
}

// tryStartCluster starts a cluster of n nodes, or shuts down what it
// started and says why not.
func tryStartCluster(t testing.TB, n int) (*testCluster, error) {
	t.Helper()
	c := &testCluster{t: t, servers: map[string]*server.Server{}, clients: map[string]*proxy{},
		routes: map[string][]*proxy{}, down: map[string]bool{}}
	ports := freePorts(t, n)
	for i := range n {
		c.names = append(c.names, fmt.Sprintf("n%d", i+1))
	}
	var proxies []*proxy
	stop := func() {
		for _, s := range c.servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
		for _, px := range proxies {
			px.close()
		}
	}
	// Route i -> j goes through its own proxy, so that cutting a node
	// cuts exactly its links.
	routes := make([][]*url.URL, n)
	for i := range n {
		for j := range n {
			if i == j {
				continue
			}
			px := startProxy(t, fmt.Sprintf("127.0.0.1:%d", ports[j]))
			proxies = append(proxies, px)
			u, err := url.Parse(px.url())
			require.NoError(t, err)
			routes[i] = append(routes[i], u)
			c.routes[c.names[i]] = append(c.routes[c.names[i]], px)
			c.routes[c.names[j]] = append(c.routes[c.names[j]], px)
		}
	}
	for i, name := range c.names {
		o := &server.Options{
			ServerName: name,
			Host:       "127.0.0.1",
			Port:       -1,
			NoLog:      true,
			NoSigs:     true,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			// NoAdvertise: clients learn no server addresses but the
			// proxies they were given.
			Cluster: server.ClusterOpts{Name: "C", Host: "127.0.0.1", Port: ports[i], NoAdvertise: true},
			Routes:  routes[i],
		}
		s, err := server.NewServer(o)
		require.NoError(t, err)
		s.Start()
		c.servers[name] = s
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	for _, name := range c.names {
		if !c.servers[name].ReadyForConnections(10 * time.Second) {
			stop()
			return nil, fmt.Errorf("server %s not ready for connections after 10s (cluster port %d)", name, ports[slices.Index(c.names, name)])
		}
		c.clients[name] = startProxy(t, c.servers[name].ClientURL())
	}
	// JetStream is usable once the meta group has a leader that knows
	// every peer, and every server is current.
	require.Eventually(t, func() bool {
		leader := false
		for _, s := range c.servers {
			if !s.JetStreamIsCurrent() {
				return false
			}
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == n {
				leader = true
			}
		}
		return leader
	}, 60*time.Second, 10*time.Millisecond, "JetStream meta leader")
	return c, nil
}

// urls returns the client URLs of the running servers, first's first.
func (c *testCluster) urls(first string) string {
	out := []string{c.clients[first].url()}
	for _, n := range c.names {
		if n != first && !c.down[n] {
			out = append(out, c.clients[n].url())
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
		nats.IgnoreDiscoveredServers(),
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
		if !c.down[n] {
			return n
		}
	}
	c.t.Fatal("no server running")
	return ""
}

// kill cuts server name off from its peers and clients for good, without
// a word: its connections close on the far side of the proxies, and new
// ones are refused. The server itself runs on, alone, until the test ends.
func (c *testCluster) kill(name string) {
	c.down[name] = true
	c.clients[name].close()
	for _, px := range c.routes[name] {
		px.freeze()
	}
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
