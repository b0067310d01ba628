package watermillbus

import (
	"context"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventbus-go/eventbus"
)

// subscription is one Subscribe call: an Ordered listener on the
// EventManager whose handler hands each message to out and waits for its
// ack.
type subscription struct {
	p        *PubSub
	out      chan *message.Message
	closing  chan struct{} // closed when the subscription starts closing
	done     chan struct{} // closed once out is closed
	listener *eventbus.Listener

	// ctx is the parent of the contexts of delivered messages (without
	// WithPreserveContext); cancel is called when the subscription ends.
	ctx    context.Context
	cancel context.CancelFunc

	// replay is what the log held when the subscription was made; the
	// first run of the handler sends it. Only the handler touches it after
	// registration (Ordered: one run at a time).
	replay []*message.Message

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

// handle is the listener: it sends the replay, if not done yet, then the
// event's message, each until acked. It returns early, dropping the
// message, when the subscription closes.
func (s *subscription) handle(ctx context.Context, ev eventbus.Event[envelope]) error {
	if !s.enter() {
		return nil
	}
	defer s.running.Done()
	if replay := s.replay; replay != nil {
		s.replay = nil
		for _, msg := range replay {
			if !s.deliver(ctx, msg) {
				return nil
			}
			s.p.stats.replayed.Add(1)
		}
	}
	if ev.Data.msg != nil {
		s.deliver(ctx, ev.Data.msg)
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

// deliver sends a copy of msg to out until one is acked. It returns false
// if the subscription closed first (or the EventManager gave up waiting
// for its listeners).
func (s *subscription) deliver(ctx context.Context, msg *message.Message) bool {
	for {
		m := msg.Copy()
		var cancel context.CancelFunc = func() {}
		if s.ctx != nil {
			var mctx context.Context
			mctx, cancel = context.WithCancel(s.ctx)
			m.SetContext(mctx)
		} else {
			m.SetContext(msg.Context())
		}
		acked, ok := s.offer(ctx, m)
		cancel()
		switch {
		case !ok:
			return false
		case acked:
			s.p.stats.acked.Add(1)
			return true
		}
		s.p.stats.nacked.Add(1)
		if d := s.p.cfg.nackDelay; d > 0 && !s.wait(ctx, d) {
			return false
		}
	}
}

// offer sends m to out and waits for its ack (acked) or nack; ok is false
// if the subscription closed first.
func (s *subscription) offer(ctx context.Context, m *message.Message) (acked, ok bool) {
	select {
	case s.out <- m:
	case <-s.closing:
		return false, false
	case <-ctx.Done():
		return false, false
	}
	select {
	case <-m.Acked():
		return true, true
	case <-m.Nacked():
		return false, true
	case <-s.closing:
		return false, false
	case <-ctx.Done():
		return false, false
	}
}

// wait waits d, or less if the subscription closes (then false).
func (s *subscription) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closing:
		return false
	case <-ctx.Done():
		return false
	}
}

// close ends the subscription: no handler run starts any more, the one in
// progress returns, and then out is closed. It is idempotent; every call
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
	close(s.out)
	s.p.forget(s)
	close(s.done)
}
