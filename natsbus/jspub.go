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
	retryWait  time.Duration // first pause after a refusal; doubles up to _maxRetryWait
	budget     time.Duration // PublishTimeout
	attempts   int           // 0: no limit but the budget
	st         *counters
	report     func(error)

	mu      sync.Mutex
	seq     uint64
	pending map[string]*pendingPub
	waiters []flushWaiter

	// Owned by run.
	up         bool      // connected at the last check
	reconnects uint64    // nc.Stats().Reconnects at the last check
	downAt     time.Time // when a check first found the connection down (zero: up, or a drop no check saw)

	// Test hooks (export_test.go): a clock offset, a stopped clock
	// (UnixNano, 0: the clock runs), the number of checks run, and a
	// function called between claiming an ack and counting it.
	skew      atomic.Int64
	frozen    atomic.Int64
	checks    atomic.Uint64
	afterTake atomic.Pointer[func()]
	ackHook   atomic.Pointer[func(*nats.Msg) *nats.Msg]

	aborted   chan struct{}
	abortOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

type pendingPub struct {
	seq      uint64
	msg      *nats.Msg
	name, id string
	sent     int           // sends, resends on reconnect included
	born     time.Time     // when published
	deadline time.Time     // when to resend (or give up)
	giveUp   time.Time     // end of the retry budget, moved later by the time disconnected
	awaiting bool          // the last send awaits its ack (else: a pause after a refusal)
	backoff  time.Duration // next pause after a refusal
	unknown  bool          // some send may have been stored: its ack never came, or the server had it in process
	settling bool          // outcome being counted; entry removed after that

	// What the sends met, for the report when the budget is spent.
	timeouts, noResp, inProcess, unavailable int
}

// summary says what the sends of a publish met.
func (pp *pendingPub) summary() string {
	parts := []string{fmt.Sprintf("%d sends", pp.sent)}
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(pp.timeouts, "without an ack in time")
	add(pp.noResp, `answered "no responders"`)
	add(pp.unavailable, "answered JetStream unavailable")
	add(pp.inProcess, `answered "duplicate message id is in process"`)
	return strings.Join(parts, ", ")
}

type flushWaiter struct {
	upTo uint64
	ch   chan struct{}
}

// _maxRetryWait caps the pause between resends after refusals.
const _maxRetryWait = time.Second

// JetStream API error codes the publisher treats as "try again".
const (
	// _errCodeInProcess: "duplicate message id is in process": a send with
	// the same Nats-Msg-Id is being stored (for example one sent before a
	// reconnect). Its outcome is pending, not failed.
	_errCodeInProcess = 10158
	// _codeUnavailable: the HTTP-like code of JetStream's "temporarily
	// unavailable" answers (no leader, cluster not available, ...).
	_codeUnavailable = 503
)

func newJSPublisher(nc *nats.Conn, cfg *JetStreamConfig, st *counters, report func(error)) (*jsPublisher, error) {
	p := &jsPublisher{
		nc:         nc,
		prefix:     nc.NewInbox() + ".",
		slots:      make(chan struct{}, cfg.MaxInFlight),
		ackTimeout: cfg.AckTimeout,
		retryWait:  cfg.RetryWait,
		budget:     cfg.PublishTimeout,
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
	tick := min(p.ackTimeout, p.retryWait) / 2
	tick = max(5*time.Millisecond, min(tick, 250*time.Millisecond))
	go p.run(tick)
	return p, nil
}

func (p *jsPublisher) now() time.Time {
	if f := p.frozen.Load(); f != 0 {
		return time.Unix(0, f+p.skew.Load())
	}
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
	now := p.now()
	p.pending[token] = &pendingPub{
		seq: p.seq, msg: msg, name: name, id: id, sent: 1, awaiting: true, backoff: p.retryWait,
		born: now, deadline: now.Add(p.ackTimeout), giveUp: now.Add(p.budget),
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
	if f := p.ackHook.Load(); f != nil {
		if m = (*f)(m); m == nil {
			return
		}
	}
	if len(m.Data) == 0 && m.Header.Get(headerStatus) == "503" {
		// No responders: no stream leader (yet), nothing was stored.
		p.retryLater(token, func(pp *pendingPub) { pp.noResp++ })
		return
	}
	var r pubAckResponse
	err := json.Unmarshal(m.Data, &r)
	if err == nil && r.Error != nil {
		switch {
		case r.Error.ErrCode == _errCodeInProcess:
			// Pending, not failed: the server holds a send with this ID
			// and has not decided yet. Ask again, same Nats-Msg-Id,
			// until it answers with the ack (a duplicate) or an error.
			p.retryLater(token, func(pp *pendingPub) { pp.inProcess++; pp.unknown = true })
			return
		case r.Error.Code == _codeUnavailable:
			p.retryLater(token, func(pp *pendingPub) { pp.unavailable++ })
			return
		}
	}
	pp := p.claim(token)
	if pp == nil {
		return // late ack for a message already resolved
	}
	if f := p.afterTake.Load(); f != nil {
		(*f)()
	}
	switch {
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

// retryLater records a "try again" answer to a send and schedules the
// resend after a pause that doubles with each such answer (RetryWait up to
// _maxRetryWait). The budget is checked when the pause is over.
func (p *jsPublisher) retryLater(token string, note func(*pendingPub)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pp := p.pending[token]
	if pp == nil || pp.settling || !pp.awaiting {
		return // resolved, or an answer to an earlier send
	}
	note(pp)
	pp.awaiting = false
	pp.deadline = p.now().Add(pp.backoff)
	pp.backoff = min(2*pp.backoff, max(_maxRetryWait, p.retryWait))
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
	if !up && p.up {
		p.downAt = now
	}
	if up && (!p.up || reconnects != p.reconnects) {
		p.resendAll(now)
		p.downAt = time.Time{}
	}
	p.up, p.reconnects = up, reconnects
	if up {
		p.scan(now)
	}
}

// resendAll sends every unresolved publish again after a reconnect, with
// the same message (and so the same Nats-Msg-Id), and restarts its ack
// timer. Whatever was sent before the connection dropped may or may not
// have been stored; the stream's duplicate window sorts it out. Each such
// resend counts as a send (PublishAttempts) and gets a whole AckTimeout,
// past the end of the retry budget if need be. Time disconnected does not
// count against the budget: each publish's end of budget moves later by
// the time the connection was down during its life, as the checks saw it
// (from the first check that found it down; a drop that no check saw
// moves nothing).
func (p *jsPublisher) resendAll(now time.Time) {
	var resend []*nats.Msg
	p.mu.Lock()
	for _, pp := range p.pending {
		if pp.settling {
			continue
		}
		if !p.downAt.IsZero() {
			if down := now.Sub(later(p.downAt, pp.born)); down > 0 {
				pp.giveUp = pp.giveUp.Add(down)
			}
		}
		// A send awaiting its ack when the connection dropped may have
		// been stored.
		pp.unknown = pp.unknown || pp.awaiting
		pp.awaiting = true
		pp.sent++
		pp.deadline = now.Add(p.ackTimeout)
		// The budget does not run out before this send had its chance.
		pp.giveUp = later(pp.giveUp, pp.deadline)
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

// scan resends publishes whose ack is overdue or whose pause after a
// refusal is over, with the same message (and so the same Nats-Msg-Id),
// and gives up on those whose budget is spent: as outcome unknown if any
// send may have been stored (its ack timed out, or the server had it "in
// process"), as rejected if every send was refused.
func (p *jsPublisher) scan(now time.Time) {
	var resend []*nats.Msg
	var failed []string
	p.mu.Lock()
	for token, pp := range p.pending {
		if pp.settling || now.Before(pp.deadline) {
			continue
		}
		if pp.awaiting {
			pp.timeouts++
			pp.unknown = true
		}
		if !now.Before(pp.giveUp) || (p.attempts > 0 && pp.sent >= p.attempts) {
			pp.settling = true
			failed = append(failed, token)
			continue
		}
		pp.sent++
		pp.awaiting = true
		pp.deadline = now.Add(p.ackTimeout)
		resend = append(resend, pp.msg)
	}
	p.mu.Unlock()
	for _, token := range failed {
		p.mu.Lock()
		pp := p.pending[token]
		p.mu.Unlock()
		if pp.unknown {
			p.failUnknown(pp, fmt.Errorf("%w within the retry budget (%v): %s", ErrAckTimeout, p.budget, pp.summary()))
		} else {
			p.fail(pp, fmt.Errorf("%w: every send refused within the retry budget (%v; is the subject captured by the stream, and is JetStream up?): %s",
				ErrPublishRejected, p.budget, pp.summary()))
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

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
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
