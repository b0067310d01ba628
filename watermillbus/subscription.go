package watermillbus

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventbus-go/eventbus"
)

// subscription is one Subscribe call: an Ordered listener on the
// EventManager whose handler hands each message to out and waits for its
// ack.
type subscription struct {
	p        *PubSub
	name     string // the topic's event name
	out      chan *message.Message
	closing  chan struct{} // closed when the subscription starts closing
	done     chan struct{} // closed once out is closed
	listener *eventbus.Listener

	// ctx is the parent of the contexts of delivered messages (without
	// WithPreserveContext); cancel is called when the subscription ends.
	ctx    context.Context
	cancel context.CancelFunc

	// Set before the listener is registered, then owned by the handler
	// (Ordered: one run at a time, each run synchronized after the last):
	//
	// replay is what the log held when the subscription was made, less
	// what has been acked or skipped: the first runs of the handler send
	// it. from is the sequence number of the first message that comes
	// live: a live event numbered below it is in replay, or was dropped
	// from the log before, and is ignored. held are live messages that
	// came while the replay waited for a pending entry, in order.
	replay []*logEntry
	from   uint64
	held   []*message.Message

	// stuck is the pending entry the replay stopped at, while the handler
	// waits for the poke that its Publish sends once it settles; nil
	// otherwise. Whoever swaps it from the entry to nil, the handler or
	// that Publish, decides whether a poke is needed (see handle).
	stuck atomic.Pointer[logEntry]

	mu      sync.Mutex
	closed  bool
	stop    func() bool    // stops the watch on the Subscribe context
	running sync.WaitGroup // the handler run in progress, if any
}

func newSubscription(p *PubSub, ctx context.Context) *subscription {
	s := &subscription{
		p:       p,
		out:     make(chan *message.Message),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if !p.cfg.preserveContext {
		s.ctx, s.cancel = context.WithCancel(ctx)
	}
	return s
}

// watch closes the subscription when ctx is done.
func (s *subscription) watch(ctx context.Context) {
	stop := context.AfterFunc(ctx, s.close)
	s.mu.Lock()
	s.stop = stop
	closed := s.closed
	s.mu.Unlock()
	if closed {
		stop()
	}
}

// register registers the subscription's listener.
func (s *subscription) register() error {
	l, err := s.p.bus.RegisterListener(s.name, s.handle, s.p.cfg.listenerOptions()...)
	if err != nil {
		return busError(err)
	}
	s.listener = l
	return nil
}

// settled is called by the Publish of e, once e's state is stored: it pokes
// the listener if its replay stopped at e.
func (s *subscription) settled(e *logEntry) {
	if s.stuck.CompareAndSwap(e, nil) {
		s.poke()
	}
}

// poke makes the listener run, to start or resume the replay, with an
// event for it alone that carries no message. It never waits: when the
// listener's backlog is full, the deliveries in it will run the listener
// anyway, so the poke is not needed (nor is it after Close, or once the
// subscription is closed: the listener is unregistered and skips it).
func (s *subscription) poke() {
	if s.listener == nil { // its registration failed
		return
	}
	_ = s.p.bus.EmitTo(s.p.nowait, s.listener, s.name, envelope{})
}

// handle is the listener. It sends what is left of the replay, then the
// messages held, then the event's message if it is live (numbered from
// s.from on), each until acked. A nacked message is sent again at once, in
// this run, or, with WithNackDelay, the run returns errNacked and the
// listener's Retry policy runs handle again with the same event once the
// delay is over (the worker is free meanwhile): the replay, or the held
// messages, resume at the nacked message, and the messages behind it wait.
//
// When the replay reaches an entry whose Publish has not settled, the run
// does not wait for it: it holds the event's live message, if any, and
// returns; the Publish pokes the listener once it settles (settled). Waiting here
// could deadlock: that Publish may be waiting for room in this listener's
// backlog, which only this listener's runs free.
//
// It returns nil early, dropping the message, when the subscription closes.
func (s *subscription) handle(ctx context.Context, ev eventbus.Event[envelope]) error {
	if !s.enter() {
		return nil
	}
	defer s.running.Done()
	live := ev.Data.msg
	if live != nil && ev.Data.seq < s.from {
		live = nil // in the replay, or dropped from the log before it
	}
	for len(s.replay) > 0 {
		e := s.replay[0]
		switch e.state.Load() {
		case pending:
			// Either the Publish sees stuck set after its state store and
			// pokes, or this run sees the state settled and goes on: both
			// are sequentially consistent atomics, so one of the two
			// sees the other's store, and the swap of stuck decides.
			s.stuck.Store(e)
			if e.state.Load() != pending && s.stuck.CompareAndSwap(e, nil) {
				continue // settled meanwhile, and no poke is coming
			}
			if live != nil {
				s.held = append(s.held, live)
			}
			return nil
		case published:
			if r := s.deliverUntilAcked(ctx, e.msg); r != acked {
				return r.err()
			}
			s.p.stats.replayed.Add(1)
		}
		s.replay[0] = nil
		s.replay = s.replay[1:]
	}
	s.replay = nil
	for len(s.held) > 0 {
		if r := s.deliverUntilAcked(ctx, s.held[0]); r != acked {
			return r.err()
		}
		s.held[0] = nil
		s.held = s.held[1:]
	}
	s.held = nil
	if live != nil {
		return s.deliverUntilAcked(ctx, live).err()
	}
	return nil
}

// deliverUntilAcked delivers msg until it is acked, or, with a nack delay,
// once: the listener's Retry policy waits out the delay, on a timer.
//
// Without a delay the loop stays here rather than in Retry(RetryForever,
// 0, 0): the core's at-once retry currently lets the rest of an Ordered
// listener's batch overtake the retried delivery, and here costs nothing,
// since the worker is held anyway while the message waits for its ack.
func (s *subscription) deliverUntilAcked(ctx context.Context, msg *message.Message) result {
	for {
		r := s.deliver(ctx, msg)
		if r != nacked || s.p.cfg.nackDelay > 0 {
			return r
		}
	}
}

// result is what became of one delivery of a message.
type result int

const (
	acked  result = iota
	nacked        // to be sent again
	ended         // the subscription closed first
)

// err is what the handler returns for r: errNacked makes the listener's
// Retry policy send the message again after the nack delay.
func (r result) err() error {
	if r == nacked {
		return errNacked
	}
	return nil
}

// enter records a handler run, unless the subscription is closing.
func (s *subscription) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.running.Add(1)
	return true
}

// deliver sends a fresh copy of msg to out and waits for its ack or nack.
// It reports ended if the subscription closed first (or the EventManager
// gave up waiting for its listeners).
func (s *subscription) deliver(ctx context.Context, msg *message.Message) result {
	m := msg.Copy()
	var cancel context.CancelFunc = func() {}
	if s.ctx != nil {
		var mctx context.Context
		mctx, cancel = context.WithCancel(s.ctx)
		m.SetContext(mctx)
	} else {
		m.SetContext(msg.Context())
	}
	defer cancel()
	select {
	case s.out <- m:
	case <-s.closing:
		return ended
	case <-ctx.Done():
		return ended
	}
	select {
	case <-m.Acked():
	case <-m.Nacked():
	case <-s.closing:
	case <-ctx.Done():
	}
	// An ack or nack that came before the end counts, even if select
	// picked the end: Stats are exact after Close.
	select {
	case <-m.Acked():
		s.p.stats.acked.Add(1)
		return acked
	case <-m.Nacked():
		s.p.stats.nacked.Add(1)
		return nacked
	default:
		return ended
	}
}

// close ends the subscription: its listener is unregistered first, so no
// handler run starts any more (deliveries queued for it and nack retries
// still waiting are skipped), the one in progress returns, and then out is
// closed. It is idempotent; every call
// returns once out is closed.
func (s *subscription) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.closed = true
	stop := s.stop
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	if s.listener != nil {
		s.listener.Unregister()
	}
	close(s.closing)
	s.running.Wait()
	if s.cancel != nil {
		s.cancel()
	}
	// Forgotten before its channel closes: a reader that has seen the
	// channel close finds it gone from Stats.Subscriptions.
	s.p.forget(s)
	close(s.out)
	close(s.done)
}
