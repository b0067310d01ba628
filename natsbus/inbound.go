package natsbus

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/eventbus-go/eventbus"
	"github.com/nats-io/nats.go"
)

type coreSub struct {
	sub     *nats.Subscription
	slow    atomic.Bool // in slow-consumer state: callbacks check for drops
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
		cs := &coreSub{}
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
		// the burst. The channel is closed when the subscription is.
		ch := sub.StatusChanged(nats.SubscriptionSlowConsumer, nats.SubscriptionActive)
		b.monitors.Add(1)
		go func() {
			defer b.monitors.Done()
			for st := range ch {
				cs.slow.Store(st == nats.SubscriptionSlowConsumer)
				b.checkDropped(cs)
			}
		}()
	}
	return nil
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
// limits the client drops (counted and reported).
func (b *Bridge[T]) coreHandler(i int, cs *coreSub) nats.MsgHandler {
	earlier := b.o.inbound[:i]
	return func(msg *nats.Msg) {
		if !b.enterInbound() {
			return
		}
		defer b.inActive.Done()
		if cs.slow.Load() {
			defer b.checkDropped(cs)
		}
		ev, ok := b.decodeInbound(msg, earlier, 1)
		if !ok {
			return
		}
		if err := b.m.Emit(ev.ctx, ev.name, ev.data); err != nil {
			b.st.listenerErrors.Add(1)
			b.report(&MessageError{Subject: msg.Subject, ID: ev.id, Delivered: 1, Err: fmt.Errorf("%w: %w", ErrEmit, err)})
			return
		}
		b.st.received.Add(1)
	}
}

type inboundEvent[T any] struct {
	ctx  context.Context
	name string
	id   string
	data T
}

// decodeInbound turns a message into a local event. ok is false when the
// message is to be skipped: already handled by an earlier pattern, sent by
// this bridge, or bad (then it is counted and reported, and err says so).
func (b *Bridge[T]) decodeInbound(msg *nats.Msg, earlier []string, delivered uint64) (ev inboundEvent[T], ok bool) {
	ev, ok, _ = b.decodeInboundErr(msg, earlier, delivered)
	return ev, ok
}

func (b *Bridge[T]) decodeInboundErr(msg *nats.Msg, earlier []string, delivered uint64) (ev inboundEvent[T], ok bool, bad error) {
	ev.id = msg.Header.Get(HeaderID)
	ev.name = strings.TrimPrefix(msg.Subject, b.o.prefix)
	for _, p := range earlier {
		if eventbus.MatchPattern(p, ev.name) {
			return ev, false, nil
		}
	}
	origin := msg.Header.Get(HeaderOrigin)
	if origin == b.origin[0] {
		b.st.skippedOwn.Add(1)
		return ev, false, nil
	}
	fail := func(err error) (inboundEvent[T], bool, error) {
		b.st.decodeErrors.Add(1)
		err = &MessageError{Subject: msg.Subject, ID: ev.id, Delivered: delivered, Err: err}
		b.report(err)
		return ev, false, err
	}
	if err := eventbus.ValidateName(ev.name); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrInvalidSubject, err))
	}
	if err := b.decode(msg.Data, &ev.data); err != nil {
		return fail(err)
	}
	ctx := context.WithValue(b.life, inboundKey{}, &inbound{bridge: b, name: ev.name, info: Info{
		Subject: msg.Subject, ID: ev.id, Origin: origin, Delivered: delivered,
	}})
	for _, p := range b.o.propagators {
		ctx = p.Extract(ctx, msg.Header)
	}
	ev.ctx = ctx
	return ev, true, nil
}

// decode never panics: a panicking codec is reported as ErrDecode.
func (b *Bridge[T]) decode(data []byte, v *T) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: codec panicked: %v", ErrDecode, r)
		}
	}()
	if err := b.o.codec.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return nil
}
