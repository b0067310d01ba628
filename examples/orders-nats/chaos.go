package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// chaosReport is what a chaos run observed.
type chaosReport struct {
	Emitted, Published, PublishErrors, Unconfirmed int
	Stored                                         int // messages in the stream at the end
	Delivered                                      int // distinct events delivered
	Duplicates                                     int // deliveries beyond the first
	Lost                                           int // acknowledged, never delivered
	Killed, NewLeader                              string
	Election                                       time.Duration
	Restarts                                       uint64 // consumer interruptions the bridges recovered from
}

// cluster is three nats-servers clustered on 127.0.0.1, in this process.
type cluster struct {
	servers map[string]*server.Server
	names   []string
	dirs    []string
}

func startCluster() (*cluster, error) {
	c := &cluster{servers: map[string]*server.Server{}}
	var routes []*url.URL
	var ports []int
	for range 3 {
		// Reserve a route port for each server, so that every one knows
		// all three from the start.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
		_ = ln.Close()
		routes = append(routes, &url.URL{Scheme: "nats", Host: ln.Addr().String()})
	}
	for i := range 3 {
		dir, err := os.MkdirTemp("", "orders-nats-chaos-*")
		if err != nil {
			c.stop()
			return nil, err
		}
		c.dirs = append(c.dirs, dir)
		name := fmt.Sprintf("n%d", i+1)
		s, err := server.NewServer(&server.Options{
			ServerName: name, Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: dir,
			Cluster: server.ClusterOpts{Name: "chaos", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		})
		if err != nil {
			c.stop()
			return nil, err
		}
		s.Start()
		c.servers[name] = s
		c.names = append(c.names, name)
	}
	for _, s := range c.servers {
		if !s.ReadyForConnections(10 * time.Second) {
			c.stop()
			return nil, errors.New("embedded nats-server did not start")
		}
	}
	// JetStream places an R3 stream once the cluster has elected a meta
	// leader and that leader has heard from every node (before that,
	// creating the stream fails with "no suitable peers for placement").
	for deadline := time.Now().Add(time.Minute); ; {
		for _, s := range c.servers {
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == len(c.servers) {
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, errors.New("no JetStream meta leader that knows every node")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *cluster) stop() {
	for _, s := range c.servers {
		if s != nil {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}
	for _, d := range c.dirs {
		_ = os.RemoveAll(d)
	}
}

// urls lists the running servers' client URLs, first's first.
func (c *cluster) urls(first string) string {
	var out []string
	if s := c.servers[first]; s != nil {
		out = append(out, s.ClientURL())
	}
	for _, n := range c.names {
		if n != first && c.servers[n] != nil {
			out = append(out, c.servers[n].ClientURL())
		}
	}
	return strings.Join(out, ",")
}

func (c *cluster) connect(first string) (*nats.Conn, error) {
	return nats.Connect(c.urls(first), nats.DontRandomize(), nats.MaxReconnects(-1),
		nats.ReconnectWait(20*time.Millisecond), nats.Name("orders-nats chaos"))
}

// leader polls the stream's leader until it is one other than not.
func leader(ctx context.Context, js jetstream.JetStream, stream, not string) (string, error) {
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		s, err := js.Stream(rctx, stream)
		cancel()
		if err == nil {
			if l := s.CachedInfo().Cluster; l != nil && l.Leader != "" && l.Leader != not {
				return l.Leader, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for a leader of %s: %w", stream, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// runChaos starts a 3-node cluster, provisions an R3 stream through the
// bridges, runs one publishing bridge (on the stream leader's node) and
// three consuming bridges sharing a durable (one per node), emits events
// at rate per second, shuts down the stream leader's node after a third of
// them, and reports what was published, delivered, duplicated and lost.
func runChaos(ctx context.Context, events, rate int) (rep chaosReport, err error) {
	c, err := startCluster()
	if err != nil {
		return rep, err
	}
	defer c.stop()
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	quiet := natsbus.WithErrorHandler(func(error) {}) // interruptions are counted in Stats
	set := &natsbus.StreamSettings{Replicas: 3}
	newBridge := func(node string, opts ...natsbus.Option) (*eventbus.EventManager[ShopEvent], *natsbus.Bridge[ShopEvent], error) {
		nc, err := c.connect(node)
		if err != nil {
			return nil, nil, err
		}
		m := eventbus.New[ShopEvent]()
		b, err := natsbus.New(ctx, m, nc, append(opts, natsbus.WithSubjectPrefix("chaos."))...)
		if err != nil {
			_ = m.Close(ctx)
			nc.Close()
			return nil, nil, err
		}
		closers = append(closers, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = b.Close(sctx)
			_ = m.Close(sctx)
			nc.Close()
		})
		return m, b, nil
	}

	var (
		mu  sync.Mutex
		got = map[string]int{}
	)
	var consumers []*natsbus.Bridge[ShopEvent]
	for _, node := range c.names {
		m, b, err := newBridge(node, natsbus.Inbound("order.>"), quiet,
			natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "CHAOS", Durable: "workers", Provision: set}))
		if err != nil {
			return rep, err
		}
		if _, err := m.RegisterListener("order.>", func(_ context.Context, e eventbus.Event[ShopEvent]) error {
			mu.Lock()
			got[e.Data.OrderID]++
			mu.Unlock()
			return nil
		}); err != nil {
			return rep, err
		}
		consumers = append(consumers, b)
	}
	admin, err := c.connect(c.names[0])
	if err != nil {
		return rep, err
	}
	closers = append(closers, admin.Close)
	js, err := jetstream.New(admin)
	if err != nil {
		return rep, err
	}
	rep.Killed, err = leader(ctx, js, "CHAOS", "")
	if err != nil {
		return rep, err
	}
	mP, bP, err := newBridge(rep.Killed, natsbus.Outbound("order.>"),
		natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "CHAOS", Provision: set}),
		natsbus.WithErrorHandler(func(err error) { say("chaos", "publish: %v", err) }))
	if err != nil {
		return rep, err
	}

	fmt.Printf("chaos      3 nodes, R3 stream; publisher on %s (stream leader), consumers on %s; %d events at %d/s\n",
		rep.Killed, strings.Join(c.names, ", "), events, rate)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	per := max(rate/100, 1)
	var killed time.Time
	for i := 0; i < events; {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return rep, ctx.Err()
		}
		for end := min(i+per, events); i < end; i++ {
			if err := mP.Emit(ctx, "order.placed", ShopEvent{OrderID: fmt.Sprint(i), Item: "book", Qty: 1}); err != nil {
				return rep, err
			}
			rep.Emitted++
		}
		if killed.IsZero() && i >= events/3 {
			killed = time.Now()
			fmt.Printf("chaos      shutting down %s after %d events\n", rep.Killed, i)
			c.servers[rep.Killed].Shutdown()
			c.servers[rep.Killed].WaitForShutdown()
			c.servers[rep.Killed] = nil
			admin.Close()
			if admin, err = c.connect(c.names[0]); err != nil {
				return rep, err
			}
			closers = append(closers, admin.Close)
			if js, err = jetstream.New(admin); err != nil {
				return rep, err
			}
			if rep.NewLeader, err = leader(ctx, js, "CHAOS", rep.Killed); err != nil {
				return rep, err
			}
			rep.Election = time.Since(killed)
			fmt.Printf("chaos      new stream leader %s after %v\n", rep.NewLeader, rep.Election.Round(time.Millisecond))
		}
	}
	if err := mP.Flush(ctx); err != nil {
		return rep, err
	}
	if err := bP.Flush(ctx); err != nil {
		return rep, err
	}
	st := bP.Stats()
	rep.Published, rep.PublishErrors, rep.Unconfirmed = int(st.Published), int(st.PublishErrors), int(st.Unconfirmed)

	// Wait until every acknowledged event is delivered (a message lost
	// with a node comes again after AckWait), or ctx ends.
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= rep.Published {
			break
		}
		select {
		case <-ctx.Done():
			fmt.Printf("chaos      stopped waiting for deliveries: %v\n", ctx.Err())
		case <-time.After(20 * time.Millisecond):
			continue
		}
		break
	}
	s, err := js.Stream(ctx, "CHAOS")
	if err != nil {
		return rep, err
	}
	rep.Stored = int(s.CachedInfo().State.Msgs)
	mu.Lock()
	for i := range rep.Emitted {
		switch n := got[fmt.Sprint(i)]; {
		case n == 0:
			rep.Lost++
		default:
			rep.Delivered++
			rep.Duplicates += n - 1
		}
	}
	mu.Unlock()
	// An event reported failed was never acknowledged: it is not lost.
	rep.Lost = max(rep.Lost-rep.PublishErrors-rep.Unconfirmed, 0)
	for _, b := range consumers {
		rep.Restarts += b.Stats().ConsumerRestarts
	}
	fmt.Printf("chaos      emitted %d, published %d, publish errors %d, outcome unknown %d, stored %d\n",
		rep.Emitted, rep.Published, rep.PublishErrors, rep.Unconfirmed, rep.Stored)
	fmt.Printf("chaos      delivered %d, duplicated %d, lost %d; consumer interruptions recovered %d\n",
		rep.Delivered, rep.Duplicates, rep.Lost, rep.Restarts)
	return rep, nil
}
