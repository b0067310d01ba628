package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// jsPublisher publishes to JetStream and tracks the acks itself, instead of
// using jetstream.PublishMsgAsync, for three reasons: a resend after a lost
// ack must reuse the same Nats-Msg-Id and the same bookkeeping entry (so a
// late ack still counts); the in-flight bound must push back on the
// listener rather than fail; and everything it starts (one reply
// subscription, one timer goroutine) must stop with the bridge, where
// nats.go's async publisher keeps a goroutine per JetStream context until
// the connection closes.
type jsPublisher struct {
	nc         *nats.Conn
	prefix     string // reply subject prefix, ending in '.'
	sub        *nats.Subscription
	slots      chan struct{} // one token per publish in flight
	ackTimeout time.Duration
	retryWait  time.Duration
	attempts   int
	st         *counters
	report     func(error)

	mu      sync.Mutex
	seq     uint64
	pending map[string]*pendingPub
	waiters []flushWaiter

	aborted   chan struct{}
	abortOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

type pendingPub struct {
	seq      uint64
	msg      *nats.Msg
	name, id string
	sent     int
	deadline time.Time
	lastErr  error
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
		aborted:    make(chan struct{}),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	sub, err := nc.Subscribe(p.prefix+"*", p.onAck)
	if err != nil {
		return nil, fmt.Errorf("natsbus: subscribe for publish acks: %w", err)
	}
	p.sub = sub
	tick := min(p.ackTimeout, p.retryWait) / 4
	tick = max(5*time.Millisecond, min(tick, 250*time.Millisecond))
	go p.run(tick)
	return p, nil
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
		deadline: time.Now().Add(p.ackTimeout),
	}
	p.mu.Unlock()
	if err := p.nc.PublishMsg(msg); err != nil {
		p.finish(token)
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
		if pp := p.pending[token]; pp != nil {
			pp.deadline = time.Now().Add(p.retryWait)
			pp.lastErr = errNoResponders
		}
		p.mu.Unlock()
		return
	}
	pp := p.take(token)
	if pp == nil {
		return // late ack for a message already resolved
	}
	// Count before releasing the entry, so that a Flush that returns
	// sees the outcome in Stats.
	defer p.release()
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
}

// take removes a pending publish; the caller settles it and then calls
// release.
func (p *jsPublisher) take(token string) *pendingPub {
	p.mu.Lock()
	defer p.mu.Unlock()
	pp := p.pending[token]
	if pp != nil {
		delete(p.pending, token)
	}
	return pp
}

// release frees the slot of a publish settled after take, and wakes the
// flush waiters it may have been holding up.
func (p *jsPublisher) release() {
	p.mu.Lock()
	p.notifyLocked()
	p.mu.Unlock()
	<-p.slots
}

// finish removes a pending publish and frees its slot.
func (p *jsPublisher) finish(token string) *pendingPub {
	pp := p.take(token)
	if pp != nil {
		p.release()
	}
	return pp
}

func (p *jsPublisher) fail(pp *pendingPub, err error) {
	p.st.publishErrors.Add(1)
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

// flush waits until every publish started before the call has resolved.
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
		case now := <-t.C:
			p.scan(now)
		}
	}
}

// scan resends publishes whose ack is overdue, with the same message (and
// so the same Nats-Msg-Id), and fails those out of attempts. An ack that
// timed out is ambiguous: the server may have stored the message, and the
// resend is then reported back as a duplicate.
func (p *jsPublisher) scan(now time.Time) {
	var resend, failed []*pendingPub
	p.mu.Lock()
	for token, pp := range p.pending {
		if now.Before(pp.deadline) {
			continue
		}
		if pp.sent >= p.attempts {
			delete(p.pending, token)
			failed = append(failed, pp)
			continue
		}
		pp.sent++
		pp.deadline = now.Add(p.ackTimeout)
		resend = append(resend, pp)
	}
	p.mu.Unlock()
	for _, pp := range failed {
		err := pp.lastErr
		if err == nil {
			err = fmt.Errorf("%w after %d attempts of %v", ErrAckTimeout, pp.sent, p.ackTimeout)
		}
		p.fail(pp, err)
		p.release()
	}
	for _, pp := range resend {
		p.st.retries.Add(1)
		if err := p.nc.PublishMsg(pp.msg); errors.Is(err, nats.ErrConnectionClosed) {
			if p.take(strings.TrimPrefix(pp.msg.Reply, p.prefix)) != nil {
				p.fail(pp, err)
				p.release()
			}
		}
		// Other errors (reconnect buffer full) leave the entry pending:
		// the next deadline resends it or fails it.
	}
}

// abort makes publishes waiting for a slot return ErrClosed.
func (p *jsPublisher) abort() {
	p.abortOnce.Do(func() { close(p.aborted) })
}

// close stops the ack subscription and the timer goroutine and reports every
// publish still unconfirmed.
func (p *jsPublisher) close() {
	_ = p.sub.Unsubscribe()
	close(p.stop)
	<-p.done
	p.mu.Lock()
	left := p.pending
	p.pending = map[string]*pendingPub{}
	for _, w := range p.waiters {
		close(w.ch)
	}
	p.waiters = nil
	p.mu.Unlock()
	for _, pp := range left {
		<-p.slots
		p.fail(pp, fmt.Errorf("%w: not acknowledged before the bridge closed", ErrClosed))
	}
}
