package natsbus

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

type coreSub struct {
	sub     *nats.Subscription
	slow    atomic.Bool   // in slow-consumer state: callbacks check for drops
	closed  chan struct{} // closed when the subscription is (drained or unsubscribed)
	mu      sync.Mutex
	dropped int // last value of sub.Dropped() already reported
}

func (b *Bridge[T]) startCoreInbound() error {
	for i, p := range b.o.inbound {
		subject := b.o.prefix + p
		var (
			sub *nats.Subscription
			err error
		)
		cs := &coreSub{closed: make(chan struct{})}
		if b.o.queue != "" {
			sub, err = b.nc.QueueSubscribe(subject, b.o.queue, b.coreHandler(i, cs))
		} else {
			sub, err = b.nc.Subscribe(subject, b.coreHandler(i, cs))
		}
		if err != nil {
			return fmt.Errorf("natsbus: subscribe %q: %w", subject, err)
		}
		cs.sub = sub
		b.subs = append(b.subs, cs)
		if err := sub.SetPendingLimits(b.o.pendingMsgs, b.o.pendingBytes); err != nil {
			return fmt.Errorf("natsbus: pending limits: %w", err)
		}
		// Slow consumers: nats.go drops messages for a subscription whose
		// buffer is full and flags it (the SlowConsumer status, then
		// Active again once a message gets through). Watch the flag rather
		// than the connection's error handler, which belongs to the user.
		// While it is up, every callback checks the drop count: a drop
		// means the buffer was full, so callbacks follow it, and the last
		// of them sees the final count even when no message arrives after
		// the burst. The channel is closed when the subscription is, but
		// not when the connection is closed: then the bridge's shutdown
		// stops the monitor.
		ch := sub.StatusChanged(nats.SubscriptionSlowConsumer, nats.SubscriptionActive)
		b.monitors.Add(1)
		go b.monitor(cs, ch)
	}
	return nil
}

// monitor follows the slow-consumer state of one subscription.
func (b *Bridge[T]) monitor(cs *coreSub, ch <-chan nats.SubStatus) {
	defer b.monitors.Done()
	for {
		select {
		case st, ok := <-ch:
			if !ok {
				close(cs.closed)
				return
			}
			cs.slow.Store(st == nats.SubscriptionSlowConsumer)
			b.checkDropped(cs)
		case <-b.stopMon:
			return
		}
	}
}

// checkDropped reports messages dropped since the last check.
func (b *Bridge[T]) checkDropped(cs *coreSub) {
	n, err := cs.sub.Dropped()
	if err != nil {
		return // subscription already closed
	}
	cs.mu.Lock()
	delta := n - cs.dropped
	cs.dropped = n
	cs.mu.Unlock()
	if delta > 0 {
		b.st.dropped.Add(uint64(delta))
		b.report(&MessageError{Subject: cs.sub.Subject, Err: fmt.Errorf("%w: %d messages", ErrSlowConsumer, delta)})
	}
}

// coreHandler returns the message callback for inbound pattern i. Core mode
// emits with Emit, so listeners run on the EventManager's workers; when its
// queue is full the callback waits, NATS buffers, and past the pending
// limits the client drops (counted and reported). With WithSyncInbound it
// emits with EmitSync, so that nothing is held beyond the pending limits
// but the message being handled.
//
// Without a queue group, a message matching several inbound patterns
// arrives once per subscription, and only the subscription of the first
// matching pattern delivers it. With a queue group, the server hands each
// message to one subscription of the group, whichever pattern it belongs
// to, so every subscription delivers what it gets.
func (b *Bridge[T]) coreHandler(i int, cs *coreSub) nats.MsgHandler {
	earlier := b.o.inbound[:i]
	if b.o.queue != "" {
		earlier = nil
	}
	return func(msg *nats.Msg) {
		if !b.enterInbound() {
			return
		}
		defer b.inActive.Done()
		if cs.slow.Load() {
			defer b.checkDropped(cs)
		}
		ev, ok, _ := b.decodeInbound(msg, earlier, 1)
		if !ok {
			return
		}
		emit := b.m.Emit
		if b.o.syncInbound {
			emit = b.m.EmitSync
		}
		// Counted before the emit, so that a listener that has the event
		// finds it counted; taken back if the emit refuses it.
		b.st.received.Add(1)
		if err := emit(ev.ctx, ev.name, ev.data); err != nil {
			b.st.received.Add(^uint64(0))
			b.st.listenerErrors.Add(1)
			b.report(&MessageError{Subject: msg.Subject, ID: ev.id, Delivered: 1, Err: fmt.Errorf("%w: %w", ErrEmit, err)})
			return
		}
	}
}
