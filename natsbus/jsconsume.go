package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// jsConsumer pulls the messages of one durable consumer and hands them, one
// at a time and in the order the server sent them, to handle.
//
// It speaks the pull protocol itself rather than using nats.go's Consume,
// for three reasons (issue 19):
//
//   - nats.go takes any message with an empty payload and a Status header
//     for a server reply, and a stored message can be exactly that: one
//     such message stopped its consume loop for good (a hostile publisher
//     could stop a bridge), and others vanished uncounted. Here a message
//     is a stored one if and only if its reply subject is a JetStream ack
//     subject ("$JS.ACK."), which only the server sets; status replies
//     have none. Every stored message reaches handle.
//   - Memory must have a bound in bytes. Each pull asks for at most
//     maxBytes (the server counts a message as its delivery subject, reply,
//     headers and payload) and the next pull is sent only when the previous
//     one is over, so at most maxBytes of messages wait in the client, plus
//     the one being handled.
//   - A consumer must never sit idle while its stream is served. Before
//     pulling, the consumer waits until the consumer has a leader; a pull
//     answered "no responders", a leadership change, or a silence longer
//     than two heartbeats starts over from there, and is reported.
//
// Each pull gets its own reply subject (one wildcard subscription covers
// them all), so the status replies of an earlier pull (a late "batch
// completed", say) cannot end the current one.
//
// A stored message is held from its arrival until handle acknowledges it,
// and the server's ack wait runs all that time, queued here behind a long
// listener included. The keeper sends an in-progress ack for each queued
// stored message at least every keepEvery after its arrival (or its last
// one), and handle gets the time of the last one, so that its own
// keep-alive goes on from there: no held message goes longer than
// keepEvery (AckWait/2) without one, however long it waited here.
//
// All the state below the configuration is owned by the run goroutine.
type jsConsumer struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	stream    string
	durable   string
	next      string // the consumer's pull API subject
	inbox     string // reply prefix, ending in '.'
	batch     int
	maxBytes  int
	expires   time.Duration
	heartbeat time.Duration
	reqTO     time.Duration
	keepEvery time.Duration // AckWait/2: the longest a held message goes without an in-progress ack
	// handle gets each stored message, with the time it arrived or was
	// last kept alive, whichever is later.
	handle   func(msg *nats.Msg, md *nats.MsgMetadata, kept time.Time)
	refuse   func(msg *nats.Msg, err error)
	ackErr   func(msg *nats.Msg, err error) // an in-progress ack failed
	report   func(error)
	restarts *atomic.Uint64

	sub      *nats.Subscription
	ctx      context.Context // cancelled by Stop and Drain: no more pulls
	cancel   context.CancelFunc
	draining atomic.Bool
	done     chan struct{}

	// The subscription's callback queues every message here, untouched:
	// nats.go's synchronous NextMsg turns a message with an empty payload
	// and "Status: 503" into ErrNoResponders and drops it, and a stored
	// message can look like that. The stored messages queued are bounded
	// by the pulls; consecutive heartbeats are coalesced.
	mu    sync.Mutex
	queue []queued      // guarded by mu
	wake  chan struct{} // capacity 1: something was queued

	// keepMu serialises the keeper's rounds (which take mu inside it, to
	// pick the messages due, then send without it) with run's barrier
	// after taking a message off the queue: once past the barrier, no
	// in-progress ack for that message is in flight from the keeper, so
	// none can follow the message's ack or nak.
	keepMu      sync.Mutex
	keeper      *time.Timer // guarded by keepMu
	keeperEnded bool        // guarded by keepMu: run has returned

	// Owned by run.
	seq       uint64 // pulls sent
	cur       string // reply subject of the pull in progress
	left      int    // messages the pull in progress may still bring
	leftBytes int    // bytes it may still bring
	quiet     bool   // an interruption was reported and nothing arrived since
	fails     int    // interruptions since the last message or heartbeat
	// alive is the last sign of life of the pull in progress: its
	// sending, its heartbeat, or the end of handling a stored message
	// (time spent in handle does not count against the pull). Messages
	// about earlier pulls are no sign of it: a trickle of them must not
	// keep a dead pull waiting.
	alive time.Time
}

// queued is a message of the subscription waiting for run.
type queued struct {
	msg  *nats.Msg
	kept time.Time // arrival, or the last in-progress ack sent for it
}

// pullRequest is the body of a pull ($JS.API.CONSUMER.MSG.NEXT).
type pullRequest struct {
	Batch     int           `json:"batch"`
	Expires   time.Duration `json:"expires"`
	MaxBytes  int           `json:"max_bytes,omitempty"`
	Heartbeat time.Duration `json:"idle_heartbeat,omitempty"`
}

const (
	_jsAckPrefix  = "$JS.ACK."
	_jsNextPrefix = "$JS.API.CONSUMER.MSG.NEXT."
	// _pullOverhead is added to the server's max payload for the bytes a
	// message costs beyond its headers and payload (subjects), so that a
	// pull always has room for the largest message.
	_pullOverhead = 8 << 10
)

func newJSConsumer(nc *nats.Conn, js jetstream.JetStream, cfg *JetStreamConfig) *jsConsumer {
	c := &jsConsumer{
		nc: nc, js: js,
		stream: cfg.Stream, durable: cfg.Durable,
		next:      _jsNextPrefix + cfg.Stream + "." + cfg.Durable,
		inbox:     nc.NewInbox() + ".",
		batch:     cfg.PullBatch,
		maxBytes:  max(cfg.PullMaxBytes, int(nc.MaxPayload())+_pullOverhead),
		expires:   cfg.PullExpiry,
		heartbeat: cfg.Heartbeat,
		reqTO:     cfg.RequestTimeout,
		keepEvery: cfg.AckWait / 2,
		done:      make(chan struct{}),
		wake:      make(chan struct{}, 1),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// start subscribes and starts pulling.
func (c *jsConsumer) start() error {
	sub, err := c.nc.Subscribe(c.inbox+"*", c.onMsg)
	if err != nil {
		return fmt.Errorf("natsbus: JetStream consumer %q: subscribe: %w", c.durable, err)
	}
	// The pulls bound what the server sends (see the type's comment); the
	// subscription must never drop what was asked for.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("natsbus: JetStream consumer %q: %w", c.durable, err)
	}
	c.sub = sub
	c.keepMu.Lock()
	c.keeper = time.AfterFunc(c.keepRound(), c.keep)
	c.keepMu.Unlock()
	go c.run()
	return nil
}

// keep sends an in-progress ack for each queued stored message that went
// keepEvery/2 or more without one. It runs every keepRound (keepEvery/2),
// so none goes longer than keepEvery without one, until run returns.
func (c *jsConsumer) keep() {
	c.keepMu.Lock()
	defer c.keepMu.Unlock()
	if c.keeperEnded {
		return
	}
	now := time.Now()
	var due []*nats.Msg
	c.mu.Lock()
	for i := range c.queue {
		q := &c.queue[i]
		if strings.HasPrefix(q.msg.Reply, _jsAckPrefix) && now.Sub(q.kept) >= c.keepEvery/2 {
			q.kept = now
			due = append(due, q.msg)
		}
	}
	c.mu.Unlock()
	for _, m := range due {
		if err := inProgress(c.nc, m); err != nil {
			c.ackErr(m, err)
		}
	}
	c.keeper.Reset(c.keepRound())
}

// keepRound is the keeper's period: keepEvery/2, at least a millisecond
// (a tiny AckWait must not make it spin).
func (c *jsConsumer) keepRound() time.Duration { return max(c.keepEvery/2, time.Millisecond) }

// stopKeeper stops the keeper for good; a round in progress ends first.
func (c *jsConsumer) stopKeeper() {
	c.keepMu.Lock()
	c.keeperEnded = true
	c.keeper.Stop()
	c.keepMu.Unlock()
}

// onMsg queues a message for run.
func (c *jsConsumer) onMsg(m *nats.Msg) {
	c.mu.Lock()
	if n := len(c.queue); n > 0 && isHeartbeat(m) && isHeartbeat(c.queue[n-1].msg) {
		c.mu.Unlock()
		return
	}
	c.queue = append(c.queue, queued{msg: m, kept: time.Now()})
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func isHeartbeat(m *nats.Msg) bool {
	return m.Reply == "" && len(m.Data) == 0 && m.Header.Get(headerStatus) == "100"
}

// nextMsg returns the next queued message and when it arrived or was last
// kept alive. It reports a timeout if none came within wait (0: no limit),
// and returns nil when the consumer is stopped, or drained and nothing is
// left.
func (c *jsConsumer) nextMsg(wait time.Duration) (msg *nats.Msg, kept time.Time, timeout bool) {
	var timer <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			q := c.queue[0]
			c.queue[0] = queued{}
			c.queue = c.queue[1:]
			c.mu.Unlock()
			// The barrier (see keepMu): a keeper round that picked
			// this message before it left the queue has sent.
			c.keepMu.Lock()
			//lint:ignore SA2001 an empty critical section is the point
			c.keepMu.Unlock()
			return q.msg, q.kept, false
		}
		c.mu.Unlock()
		var (
			poll *time.Timer
			tick <-chan time.Time
		)
		if c.ctx.Err() != nil {
			if !c.draining.Load() || !c.sub.IsValid() {
				return nil, time.Time{}, false
			}
			// Draining: nats.go closes the subscription once it has
			// handed over what it buffered; it does not say when.
			poll = time.NewTimer(10 * time.Millisecond)
			tick, timer = poll.C, nil
		}
		select {
		case <-c.wake:
		case <-tick:
		case <-timer:
			return nil, time.Time{}, true
		case <-c.ctxDone():
		}
		if poll != nil {
			poll.Stop()
		}
	}
}

// ctxDone is c.ctx.Done() until the context ends, then nil (a drain keeps
// waiting for the other cases).
func (c *jsConsumer) ctxDone() <-chan struct{} {
	if c.ctx.Err() != nil {
		return nil
	}
	return c.ctx.Done()
}

// Stop stops pulling now; messages not handled yet are redelivered by the
// server after AckWait. Closed is closed once the handler has returned.
func (c *jsConsumer) Stop() {
	c.cancel()
	_ = c.sub.Unsubscribe()
}

// Drain stops pulling; the messages already received are handled, then
// Closed is closed.
func (c *jsConsumer) Drain() {
	c.draining.Store(true)
	c.cancel()
	_ = c.sub.Drain()
}

// Closed is closed when the consumer has stopped.
func (c *jsConsumer) Closed() <-chan struct{} { return c.done }

func (c *jsConsumer) run() {
	defer close(c.done)
	defer c.stopKeeper()
	waitLeader := true
	for {
		if c.ctx.Err() == nil && waitLeader {
			if !c.waitLeader() {
				if c.nc.IsClosed() {
					return // for good: nothing more can arrive
				}
				continue // stopping: deliver what is buffered (Drain)
			}
			waitLeader = false
		}
		if c.cur == "" && c.ctx.Err() == nil {
			if err := c.pull(); err != nil {
				c.interrupted(fmt.Errorf("pull: %w", err))
				waitLeader = true
				continue
			}
		}
		wait := time.Duration(0) // draining: until the subscription is closed
		if c.cur != "" {
			// Two heartbeats since the last sign of life of this pull.
			wait = max(time.Until(c.alive.Add(2*c.heartbeat)), time.Nanosecond)
		}
		msg, kept, timeout := c.nextMsg(wait)
		switch {
		case timeout && c.nc.IsClosed():
			return // for good: nothing more can arrive
		case timeout:
			// The server sends a heartbeat to a pending pull every
			// heartbeat interval: the pull (or its server) is gone.
			c.interrupted(fmt.Errorf("no heartbeat for %v", 2*c.heartbeat))
			c.cur, waitLeader = "", true
			continue
		case msg == nil:
			return // stopped, or drained
		}
		if waitLeader = c.dispatch(msg, kept); waitLeader {
			c.cur = ""
		}
	}
}

// dispatch handles one message of the subscription. It reports whether
// the consumer must wait for a leader again.
func (c *jsConsumer) dispatch(msg *nats.Msg, kept time.Time) (waitLeader bool) {
	if strings.HasPrefix(msg.Reply, _jsAckPrefix) {
		md, err := msg.Metadata()
		if err != nil {
			c.refuse(msg, fmt.Errorf("%w: ack subject %q: %w", ErrDecode, msg.Reply, err))
			return false
		}
		c.quiet, c.fails = false, 0
		if c.cur != "" {
			// Account the message against the pull in progress, as the
			// server does (delivery subject, reply, headers, payload).
			c.left--
			c.leftBytes -= msg.Size() - len(msg.Subject) + len(c.cur)
			if c.left <= 0 || c.leftBytes <= 0 {
				// The pull is complete: ask for the next one before
				// handling this message, so that the server works
				// meanwhile. Nothing older waits in the client.
				c.cur = ""
				if c.ctx.Err() == nil {
					if err := c.pull(); err != nil {
						c.interrupted(fmt.Errorf("pull: %w", err))
					}
				}
			}
		}
		c.handle(msg, md, kept)
		c.alive = time.Now()
		return false
	}
	status := msg.Header.Get(headerStatus)
	if len(msg.Data) != 0 || status == "" || msg.Reply != "" {
		c.refuse(msg, fmt.Errorf("%w: not a JetStream delivery (reply %q)", ErrDecode, msg.Reply))
		return false
	}
	if msg.Subject != c.cur {
		return false // about an earlier pull, which is over
	}
	desc := msg.Header.Get("Description")
	switch status {
	case "100": // idle heartbeat: the pull is alive
		c.quiet, c.fails = false, 0
		c.alive = time.Now()
		return false
	case "404", "408":
		// No messages, or the pull expired: pull again.
		c.cur = ""
		return false
	case "409":
		switch {
		case strings.HasPrefix(desc, "Batch Completed"), strings.HasPrefix(desc, "Message Size Exceeds"),
			strings.HasPrefix(desc, "Exceeded Max"):
			c.cur = ""
			return false
		case strings.HasPrefix(desc, "Leadership Change"):
			c.interrupted(errors.New("consumer leadership changed"))
			return true
		}
	case "503":
		c.interrupted(errors.New("no responders: the consumer has no leader"))
		return true
	}
	c.interrupted(fmt.Errorf("status %s %s", status, desc))
	return true
}

// pull sends a new pull request.
func (c *jsConsumer) pull() error {
	c.seq++
	c.cur = c.inbox + strconv.FormatUint(c.seq, 36)
	c.left, c.leftBytes = c.batch, c.maxBytes
	body, _ := json.Marshal(pullRequest{Batch: c.batch, Expires: c.expires, MaxBytes: c.maxBytes, Heartbeat: c.heartbeat})
	if err := c.nc.PublishRequest(c.next, c.cur, body); err != nil {
		c.cur = ""
		return err
	}
	c.alive = time.Now()
	return nil
}

// waitLeader waits until the consumer exists and has a leader. It reports
// false if the consumer is stopping.
//
// Repeated interruptions without a message or a heartbeat in between back
// off (10ms, doubling up to 500ms), so that a pull the server refuses again
// and again does not spin.
func (c *jsConsumer) waitLeader() bool {
	for {
		if c.nc.IsClosed() {
			return false
		}
		if c.fails > 1 {
			t := time.NewTimer(min(10*time.Millisecond<<min(c.fails-2, 6), 500*time.Millisecond))
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
				return false
			}
		}
		err := c.leader()
		if err == nil {
			return true
		}
		c.interrupted(err)
	}
}

// leader checks once. The request gets at most two heartbeat intervals: a
// JetStream API request that meets a dead meta leader is not answered at
// all, and waiting the whole RequestTimeout for it would keep the
// consumer idle that long.
func (c *jsConsumer) leader() error {
	ctx, cancel := context.WithTimeout(c.ctx, min(c.reqTO, 2*c.heartbeat))
	defer cancel()
	cons, err := c.js.Consumer(ctx, c.stream, c.durable)
	if err != nil {
		return fmt.Errorf("consumer info: %w", err)
	}
	info := cons.CachedInfo()
	if info.Cluster != nil && info.Cluster.Leader == "" {
		return errors.New("the consumer has no leader")
	}
	return nil
}

// interrupted reports that consuming stopped and starts over, once per
// interruption: further causes are not reported until a message or a
// heartbeat arrives.
func (c *jsConsumer) interrupted(cause error) {
	c.fails++
	if c.ctx.Err() != nil || c.quiet {
		return
	}
	c.quiet = true
	c.restarts.Add(1)
	c.report(fmt.Errorf("%w: consumer %q on stream %q: %w", ErrConsumerInterrupted, c.durable, c.stream, cause))
}

// Ack operations on a stored message: a publish to its reply subject.
var (
	_ackAck  = []byte("+ACK")
	_ackNak  = []byte("-NAK")
	_ackWPI  = []byte("+WPI")
	_ackTerm = "+TERM "
)

func ackMsg(nc *nats.Conn, msg *nats.Msg) error { return nc.Publish(msg.Reply, _ackAck) }

func nakMsg(nc *nats.Conn, msg *nats.Msg, delay time.Duration) error {
	if delay <= 0 {
		return nc.Publish(msg.Reply, _ackNak)
	}
	return nc.Publish(msg.Reply, fmt.Appendf(nil, `-NAK {"delay":%d}`, delay.Nanoseconds()))
}

func termMsg(nc *nats.Conn, msg *nats.Msg, reason string) error {
	return nc.Publish(msg.Reply, []byte(_ackTerm+reason))
}

func inProgress(nc *nats.Conn, msg *nats.Msg) error { return nc.Publish(msg.Reply, _ackWPI) }
