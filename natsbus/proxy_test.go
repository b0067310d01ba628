package natsbus_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// proxy forwards TCP connections on 127.0.0.1 to a server. It can drop
// the bytes of one direction (a lost publish or a lost ack, with the
// connection still up) and cut every connection (the client reconnects
// through the proxy).
type proxy struct {
	t      testing.TB
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu       sync.Mutex
	dropUp   bool // for new links: drop client to server bytes
	dropDown bool // for new links: drop server to client bytes
	links    map[*link]struct{}
}

// link is one proxied connection.
type link struct {
	client, server net.Conn
	dropUp         atomic.Bool
	dropDown       atomic.Bool
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{t: t, ln: ln, target: strings.TrimPrefix(target, "nats://"), links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close() // server down: the client tries again
			continue
		}
		l := &link{client: c, server: s}
		if !p.track(l) {
			return
		}
		p.wg.Add(2)
		go p.pipe(l, s, c, &l.dropUp)
		go p.pipe(l, c, s, &l.dropDown)
	}
}

// track registers a link with the current drop settings, or closes it if
// the proxy is closed.
func (p *proxy) track(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.links == nil {
		_, _ = l.client.Close(), l.server.Close()
		return false
	}
	l.dropUp.Store(p.dropUp)
	l.dropDown.Store(p.dropDown)
	p.links[l] = struct{}{}
	return true
}

// pipe copies src to dst until either fails, discarding while drop is set,
// then closes the link.
func (p *proxy) pipe(l *link, dst, src net.Conn, drop *atomic.Bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !drop.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_, _ = l.client.Close(), l.server.Close()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// loseAcks drops server to client bytes on every link, current and new.
func (p *proxy) loseAcks() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropDown = true
	for l := range p.links {
		l.dropDown.Store(true)
	}
}

// healNew makes new links forward everything; current links keep dropping
// until they are cut, so that nothing they held back arrives late.
func (p *proxy) healNew() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropUp, p.dropDown = false, false
}

// cut closes every link; new ones are accepted.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		_, _ = l.client.Close(), l.server.Close()
	}
}

// freeze drops every byte of every link, current and new, both ways, and
// refuses new links: the far ends see silence, as from a hung host or
// across a network partition.
func (p *proxy) freeze() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropUp, p.dropDown = true, true
	for l := range p.links {
		l.dropUp.Store(true)
		l.dropDown.Store(true)
	}
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.cut()
	p.mu.Lock()
	p.links = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// publishRaw sends one message with a raw header block, bypassing nats.go's
// header encoding, as a client in another language could.
func publishRaw(t testing.TB, ts *testServer, subject, header, payload string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "nats://"))
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "INFO "), line)
	_, err = fmt.Fprintf(c, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\nHPUB %s %d %d\r\n%s%s\r\nPING\r\n",
		subject, len(header), len(header)+len(payload), header, payload)
	require.NoError(t, err)
	for {
		line, err = r.ReadString('\n')
		if errors.Is(err, io.EOF) {
			t.Fatal("server closed the raw connection")
		}
		require.NoError(t, err)
		require.False(t, strings.HasPrefix(line, "-ERR"), line)
		if strings.HasPrefix(line, "PONG") {
			return // the server has processed the HPUB
		}
	}
}
