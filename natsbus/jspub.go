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
)

// jsPublisher publishes to JetStream and tracks the acks itself, instead of
// using jetstream.PublishMsgAsync, for three reasons: a resend after a lost
// ack must reuse the same Nats-Msg-Id and the same bookkeeping entry (so a
// late ack still counts); the in-flight bound must push back on the
// listener rather than fail; and everything it starts (one reply
// subscription, one goroutine, one status listener) must stop with the
// bridge, where nats.go's async publisher keeps a goroutine per JetStream
// context until the connection closes.
//
// Ack timeouts count only while the connection is up. When it comes back,
// every publish still waiting for its ack is sent again at once (same
// Nats-Msg-Id); when it is closed for good, they are reported as
// outcome unknown.
type jsPublisher struct {
	nc         *nats.Conn
	prefix     string // reply subject prefix, ending in '.'
	sub        *nats.Subscription
	status     chan nats.Status // connection events; they wake run
	slots      chan struct{}    // one token per publish in flight
	ackTimeout time.Duration
	retryWait  time.Duration
	attempts   int
	st         *counters
	report     func(error)

	mu      sync.Mutex
	seq     uint64
	pending map[string]*pendingPub
	waiters []flushWaiter

	// Owned by run.
	up         bool   // connected at the last check
	reconnects uint64 // nc.Stats().Reconnects at the last check

	// Test hooks (export_test.go): a clock offset, the number of checks
	// run, and a function called between claiming an ack and counting it.
	skew      atomic.Int64
	checks    atomic.Uint64
	afterTake atomic.Pointer[func()]

	aborted   chan struct{}
	abortOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

type pendingPub struct {
	seq      uint64
	msg      *nats.Msg
	name, id string
	sent     int       // sends counted against PublishAttempts
	deadline time.Time // when to resend (or give up)
	noResp   bool      // the last send was answered "no responders": not stored
	unknown  bool      // some send may have been stored: its ack never came
	settling bool      // outcome being counted; entry removed after that
}

type flushWaiter struct {
	upTo uint64
	ch   chan struct{}
}

var errNoResponders = fmt.Errorf("%w: no stream responded (is the subject captured by the stream, and is JetStream up?)", ErrPublishRejected)

func newJSPublisher(nc *nats.Conn, cfg *JetStreamConfig, st *counters, report func(error)) (*jsPublisher, error) {
	p := &jsPublisher{
		nc:         nc,
		prefix:     nc.NewInbox() + ".",
		slots:      make(chan struct{}, cfg.MaxInFlight),
		ackTimeout: cfg.AckTimeout,
		retryWait:  cfg.RetryWait,
		attempts:   cfg.PublishAttempts,
		st:         st,
		report:     report,
		pending:    make(map[string]*pendingPub),
		up:         true,
		reconnects: nc.Stats().Reconnects,
		aborted:    make(chan struct{}),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	sub, err := nc.Subscribe(p.prefix+"*", p.onAck)
	if err != nil {
		return nil, fmt.Errorf("natsbus: subscribe for publish acks: %w", err)
	}
	p.sub = sub
	p.status = nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	tick := min(p.ackTimeout, p.retryWait) / 4
	tick = max(5*time.Millisecond, min(tick, 250*time.Millisecond))
	go p.run(tick)
	return p, nil
}

func (p *jsPublisher) now() time.Time {
	return time.Now().Add(time.Duration(p.skew.Load()))
}

// publish sends msg once an in-flight slot is free and returns; the ack is
// awaited in the background.
func (p *jsPublisher) publish(ctx context.Context, msg *nats.Msg, name, id string) error {
	select {
	case p.slots <- struct{}{}:
	default:
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.aborted:
			return ErrClosed
		}
	}
	p.mu.Lock()
	p.seq++
	token := strconv.FormatUint(p.seq, 36)
	msg.Reply = p.prefix + token
	p.pending[token] = &pendingPub{
		seq: p.seq, msg: msg, name: name, id: id, sent: 1,
		deadline: p.now().Add(p.ackTimeout),
	}
	p.mu.Unlock()
	if err := p.nc.PublishMsg(msg); err != nil {
		if p.claim(token) == nil {
			// The connection closed meanwhile and the check already
			// reported this publish (as outcome unknown).
			return nil
		}
		// Not sent: a known failure, which the caller counts.
		p.settle(token)
		return err
	}
	return nil
}

type pubAckResponse struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Error     *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error,omitempty"`
}

func (p *jsPublisher) onAck(m *nats.Msg) {
	token := strings.TrimPrefix(m.Subject, p.prefix)
	if len(m.Data) == 0 && m.Header.Get(headerStatus) == "503" {
		// No responders: the stream is not there (yet). Resend after
		// RetryWait, within the same attempt budget.
		p.mu.Lock()
		if pp := p.pending[token]; pp != nil && !pp.settling {
			pp.deadline = p.now().Add(p.retryWait)
			pp.noResp = true
		}
		p.mu.Unlock()
		return
	}
	pp := p.claim(token)
	if pp == nil {
		return // late ack for a message already resolved
	}
	if f := p.afterTake.Load(); f != nil {
		(*f)()
	}
	var r pubAckResponse
	switch err := json.Unmarshal(m.Data, &r); {
	case err != nil:
		p.fail(pp, fmt.Errorf("%w: invalid ack: %w", ErrPublishRejected, err))
	case r.Error != nil:
		p.fail(pp, fmt.Errorf("%w: %s (code %d, err_code %d)", ErrPublishRejected, r.Error.Description, r.Error.Code, r.Error.ErrCode))
	case r.Stream == "":
		p.fail(pp, fmt.Errorf("%w: ack without stream", ErrPublishRejected))
	default:
		p.st.published.Add(1)
		if r.Duplicate {
			p.st.duplicates.Add(1)
		}
	}
	// Only now may a Flush waiting for this publish return: its outcome
	// is counted and reported.
	p.settle(token)
}

// claim marks a pending publish as being settled and returns it, or nil if
// it is unknown or already claimed. The entry stays in pending, holding up
// the flush waiters, until settle.
func (p *jsPublisher) claim(token string) *pendingPub {
	p.mu.Lock()
	defer p.mu.Unlock()
	pp := p.pending[token]
	if pp == nil || pp.settling {
		return nil
	}
	pp.settling = true
	return pp
}

// settle removes a claimed publish, wakes the flush waiters it was holding
// up, and frees its slot.
func (p *jsPublisher) settle(token string) {
	p.mu.Lock()
	delete(p.pending, token)
	p.notifyLocked()
	p.mu.Unlock()
	<-p.slots
}

// fail counts and reports a publish known not to be stored.
func (p *jsPublisher) fail(pp *pendingPub, err error) {
	p.st.publishErrors.Add(1)
	p.report(&PublishError{Event: pp.name, Subject: pp.msg.Subject, ID: pp.id, Err: err})
}

// failUnknown counts and reports a publish whose outcome is unknown.
func (p *jsPublisher) failUnknown(pp *pendingPub, err error) {
	p.st.unconfirmed.Add(1)
	p.report(&PublishError{Event: pp.name, Subject: pp.msg.Subject, ID: pp.id, Err: err})
}

// notifyLocked wakes flush waiters whose publishes have all resolved.
func (p *jsPublisher) notifyLocked() {
	if len(p.waiters) == 0 {
		return
	}
	oldest := p.seq + 1
	for _, pp := range p.pending {
		oldest = min(oldest, pp.seq)
	}
	keep := p.waiters[:0]
	for _, w := range p.waiters {
		if w.upTo < oldest {
			close(w.ch)
		} else {
			keep = append(keep, w)
		}
	}
	p.waiters = keep
}

// flush waits until every publish started before the call has resolved and
// been counted.
func (p *jsPublisher) flush(ctx context.Context) error {
	p.mu.Lock()
	w := flushWaiter{upTo: p.seq, ch: make(chan struct{})}
	p.waiters = append(p.waiters, w)
	p.notifyLocked()
	p.mu.Unlock()
	return wait(ctx, w.ch)
}

func (p *jsPublisher) run(tick time.Duration) {
	defer close(p.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-p.status:
		case <-t.C:
		}
		p.check()
	}
}

// check follows the connection and handles overdue acks. The status
// events only wake it; it reads the state itself, so a lost event costs at
// most a tick.
func (p *jsPublisher) check() {
	p.checks.Add(1)
	now := p.now()
	if p.nc.IsClosed() {
		p.failAll(fmt.Errorf("%w: %w", ErrAckTimeout, nats.ErrConnectionClosed))
		return
	}
	up := p.nc.IsConnected()
	reconnects := p.nc.Stats().Reconnects
	if up && (!p.up || reconnects != p.reconnects) {
		p.resendAll(now)
	}
	p.up, p.reconnects = up, reconnects
	if up {
		p.scan(now)
	}
}

// resendAll sends every unresolved publish again after a reconnect, with
// the same message (and so the same Nats-Msg-Id), and restarts its ack
// timer. Whatever was sent before the connection dropped may or may not
// have been stored; the stream's duplicate window sorts it out. These
// resends do not use up PublishAttempts.
func (p *jsPublisher) resendAll(now time.Time) {
	var resend []*nats.Msg
	p.mu.Lock()
	for _, pp := range p.pending {
		if pp.settling {
			continue
		}
		pp.unknown = pp.unknown || !pp.noResp
		pp.noResp = false
		pp.deadline = now.Add(p.ackTimeout)
		resend = append(resend, pp.msg)
	}
	p.mu.Unlock()
	for _, msg := range resend {
		p.st.retries.Add(1)
		// An error (closed again, reconnect buffer full) leaves the entry
		// pending: the next check deals with it.
		_ = p.nc.PublishMsg(msg)
	}
}

// scan resends publishes whose ack is overdue, with the same message (and
// so the same Nats-Msg-Id), and gives up on those out of attempts: as
// outcome unknown if any send's ack timed out, as rejected if every send
// was answered "no responders".
func (p *jsPublisher) scan(now time.Time) {
	var resend []*nats.Msg
	var failed []string
	p.mu.Lock()
	for token, pp := range p.pending {
		if pp.settling || now.Before(pp.deadline) {
			continue
		}
		pp.unknown = pp.unknown || !pp.noResp
		if pp.sent >= p.attempts {
			pp.settling = true
			failed = append(failed, token)
			continue
		}
		pp.sent++
		pp.noResp = false
		pp.deadline = now.Add(p.ackTimeout)
		resend = append(resend, pp.msg)
	}
	p.mu.Unlock()
	for _, token := range failed {
		p.mu.Lock()
		pp := p.pending[token]
		p.mu.Unlock()
		if pp.unknown {
			p.failUnknown(pp, fmt.Errorf("%w after %d attempts of %v", ErrAckTimeout, pp.sent, p.ackTimeout))
		} else {
			p.fail(pp, errNoResponders)
		}
		p.settle(token)
	}
	for _, msg := range resend {
		p.st.retries.Add(1)
		if err := p.nc.PublishMsg(msg); errors.Is(err, nats.ErrConnectionClosed) {
			break // the next check reports them all
		}
		// Other errors (reconnect buffer full) leave the entry pending:
		// the next deadline resends it or gives up.
	}
}

// failAll gives up on every unresolved publish, as outcome unknown: each
// was sent, and may have been stored.
func (p *jsPublisher) failAll(cause error) {
	var tokens []string
	p.mu.Lock()
	for token, pp := range p.pending {
		if !pp.settling {
			pp.settling = true
			tokens = append(tokens, token)
		}
	}
	p.mu.Unlock()
	for _, token := range tokens {
		p.mu.Lock()
		pp := p.pending[token]
		p.mu.Unlock()
		p.failUnknown(pp, cause)
		p.settle(token)
	}
}

// abort makes publishes waiting for a slot return ErrClosed.
func (p *jsPublisher) abort() {
	p.abortOnce.Do(func() { close(p.aborted) })
}

// close stops the ack subscription, the goroutine and the status listener,
// and reports every publish still unconfirmed as outcome unknown.
func (p *jsPublisher) close() {
	_ = p.sub.Unsubscribe()
	close(p.stop)
	<-p.done
	p.nc.RemoveStatusListener(p.status)
	p.failAll(fmt.Errorf("%w before the acknowledgement came: %w", ErrClosed, ErrAckTimeout))
	p.mu.Lock()
	for _, w := range p.waiters {
		close(w.ch)
	}
	p.waiters = nil
	p.mu.Unlock()
}
