package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func (b *Bridge[T]) startJetStream(ctx context.Context) error {
	cfg := b.o.js
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	if len(b.o.inbound) > 0 && cfg.Durable == "" {
		return configErr("JetStream: inbound patterns need a Durable consumer name")
	}
	if b.o.queue != "" {
		return configErr("WithQueueGroup is for core mode; JetStream bridges share a Durable instead")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	js, err := jetstream.New(b.nc)
	if err != nil {
		return fmt.Errorf("natsbus: JetStream: %w", err)
	}
	if cfg.Provision != nil {
		if err := provisionStream(ctx, js, cfg.Stream, cfg.Provision, b.o.bridgeSubjects()); err != nil {
			return err
		}
	}
	stream, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return fmt.Errorf("natsbus: JetStream stream %q: %w", cfg.Stream, err)
	}
	// Refuse outbound patterns the stream does not capture: their
	// publishes could never be acknowledged.
	streamSubjects := stream.CachedInfo().Config.Subjects
	for _, p := range b.o.outbound {
		covered := false
		for _, s := range streamSubjects {
			if coveredBy(b.o.prefix+p, s) {
				covered = true
				break
			}
		}
		if !covered {
			return configErr("outbound pattern %q (subject %q) is not captured by stream %q subjects %q",
				p, b.o.prefix+p, cfg.Stream, streamSubjects)
		}
	}

	if len(b.o.inbound) > 0 {
		filters := make([]string, len(b.o.inbound))
		for i, p := range b.o.inbound {
			filters[i] = b.o.prefix + p
		}
		cc := jetstream.ConsumerConfig{
			Durable:       cfg.Durable,
			AckPolicy:     jetstream.AckExplicitPolicy,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckWait:       cfg.AckWait,
			// One more than the bridge's own limit: the bridge terminates
			// and reports a message after its last failed delivery, so the
			// server's limit (which stops redelivery with only an
			// advisory) is reached only if the process died during that
			// last delivery.
			MaxDeliver:    cfg.MaxDeliver + 1,
			MaxAckPending: cfg.MaxAckPending,
		}
		if len(filters) == 1 {
			cc.FilterSubject = filters[0]
		} else {
			cc.FilterSubjects = filters
		}
		if _, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, cc); err != nil {
			return fmt.Errorf("natsbus: JetStream consumer %q on stream %q: %w", cfg.Durable, cfg.Stream, err)
		}
		c := newJSConsumer(b.nc, js, cfg)
		c.handle, c.refuse, c.report, c.restarts = b.jsHandler, b.refuseJS, b.report, &b.st.consumerRestarts
		c.ackErr = func(m *nats.Msg, err error) { b.ackOp(m, 0, err) }
		if err := c.start(); err != nil {
			return err
		}
		b.consumer = c
	}
	if len(b.o.outbound) > 0 {
		b.pub, err = newJSPublisher(b.nc, cfg, &b.st, b.report)
		if err != nil {
			return err
		}
	}
	return nil
}

// jsHandler delivers one JetStream message to the local listeners with
// EmitSync and acknowledges it only if all of them returned nil. A failed
// delivery is handed back (Nak) for redelivery after NakDelay, up to
// MaxDeliver deliveries; after the last one the message is reported with
// ErrMaxDeliver and terminated, so that one poison message cannot block
// the consumer forever. Messages that cannot be decoded are terminated at
// once: redelivering them cannot help. While the listeners run, the
// message is kept alive with in-progress acks every AckWait/2, the first
// AckWait/2 after kept (its arrival, or its last in-progress ack while it
// waited in the consumer).
func (b *Bridge[T]) jsHandler(msg *nats.Msg, md *nats.MsgMetadata, kept time.Time) {
	cfg := b.o.js
	delivered := max(md.NumDelivered, 1)
	if !b.enterInbound() {
		// Closing: pulled ahead and not handled. Not acked: redelivered
		// after AckWait, unless the server has no delivery left for it.
		if b.lastDelivery(delivered) {
			id := msg.Header.Get(HeaderID)
			if msg.Header.Get(HeaderOrigin) == b.origin[0] && b.ids.mine(id) {
				// The bridge's own event: nothing to deliver, nor to
				// report (decodeInbound would skip it).
				b.ackOp(msg, delivered, ackMsg(b.nc, msg))
				return
			}
			b.giveUpAtClose(msg, id, delivered)
		}
		return
	}
	defer b.inActive.Done()
	if delivered > 1 {
		b.st.redelivered.Add(1)
	}
	ev, ok, bad := b.decodeInbound(msg, nil, delivered)
	if !ok {
		if bad != nil {
			// Redelivering cannot help: bad input, or a forged origin.
			b.st.terminated.Add(1)
			b.ackOp(msg, delivered, termMsg(b.nc, msg, bad.Error()))
		} else {
			b.ackOp(msg, delivered, ackMsg(b.nc, msg)) // our own message: nothing to do
		}
		return
	}

	every := cfg.AckWait / 2
	ka := startKeepAlive(max(time.Until(kept.Add(every)), 0), every, func() error { return inProgress(b.nc, msg) },
		func(err error) { b.ackOp(msg, delivered, err) })
	err := b.m.EmitSync(ev.ctx, ev.name, ev.data)
	ka.stop()

	switch {
	case err == nil:
		b.st.received.Add(1)
		b.ackOp(msg, delivered, ackMsg(b.nc, msg))
	case (b.life.Err() != nil || errors.Is(err, eventbus.ErrClosed)) && b.lastDelivery(delivered):
		b.giveUpAtClose(msg, ev.id, delivered)
	case b.life.Err() != nil || errors.Is(err, eventbus.ErrClosed):
		// Shutting down (here or in the EventManager): hand the message
		// back at once, not as a failure. The server counts its
		// redelivery all the same (see lastDelivery).
		b.st.naked.Add(1)
		b.ackOp(msg, delivered, nakMsg(b.nc, msg, 0))
	case delivered >= uint64(cfg.MaxDeliver):
		b.st.listenerErrors.Add(1)
		b.st.terminated.Add(1)
		b.report(&MessageError{Subject: msg.Subject, ID: ev.id, Delivered: delivered,
			Err: fmt.Errorf("%w (%d): %w", ErrMaxDeliver, delivered, err)})
		b.ackOp(msg, delivered, termMsg(b.nc, msg, ErrMaxDeliver.Error()))
	default:
		b.st.listenerErrors.Add(1)
		b.st.naked.Add(1)
		b.ackOp(msg, delivered, nakMsg(b.nc, msg, cfg.NakDelay))
	}
}

// lastDelivery reports whether a message delivered this many times would
// not be delivered again by the server: its limit is MaxDeliver+1, and it
// counts every delivery, those that Close interrupted or pulled ahead and
// left unhandled included (JetStream counts deliveries, not failures).
func (b *Bridge[T]) lastDelivery(delivered uint64) bool {
	return delivered >= uint64(b.o.js.MaxDeliver)+1
}

// giveUpAtClose reports and terminates a message that Close kept from
// being handled on the server's last delivery of it: handed back, it would
// never come again, and nothing would say so. (Each interrupted delivery
// spends one: a message caught by MaxDeliver+1 restarts was dropped
// silently.)
func (b *Bridge[T]) giveUpAtClose(msg *nats.Msg, id string, delivered uint64) {
	b.st.terminated.Add(1)
	b.report(&MessageError{Subject: msg.Subject, ID: id, Delivered: delivered,
		Err: fmt.Errorf("%w (%d): Close interrupted the server's last delivery of it, which would not deliver it again", ErrMaxDeliver, delivered)})
	b.ackOp(msg, delivered, termMsg(b.nc, msg, ErrMaxDeliver.Error()))
}

// refuseJS counts and reports a message on the consumer's subscription
// that is not a JetStream delivery the bridge can handle. A stored message
// (it has an ack subject) is terminated, so that it is not redelivered.
func (b *Bridge[T]) refuseJS(msg *nats.Msg, err error) {
	b.st.decodeErrors.Add(1)
	b.report(&MessageError{Subject: msg.Subject, ID: msg.Header.Get(HeaderID), Err: err})
	if strings.HasPrefix(msg.Reply, _jsAckPrefix) {
		b.st.terminated.Add(1)
		b.ackOp(msg, 0, termMsg(b.nc, msg, err.Error()))
	}
}

func (b *Bridge[T]) ackOp(m *nats.Msg, delivered uint64, err error) {
	if err == nil {
		return
	}
	b.st.ackErrors.Add(1)
	b.report(&MessageError{Subject: m.Subject, ID: m.Header.Get(HeaderID), Delivered: delivered,
		Err: fmt.Errorf("natsbus: acknowledging: %w", err)})
}

// keepAlive sends in-progress acks while a listener runs, so that a long
// listener does not get its message redelivered behind its back. It uses a
// timer rather than a goroutine per message.
type keepAlive struct {
	mu      sync.Mutex
	stopped bool
	t       *time.Timer
}

// startKeepAlive calls send after first, then every every, until stop.
func startKeepAlive(first, every time.Duration, send func() error, onErr func(error)) *keepAlive {
	k := &keepAlive{}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.t = time.AfterFunc(first, func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.stopped {
			return
		}
		if err := send(); err != nil {
			onErr(err)
		}
		k.t.Reset(every)
	})
	return k
}

func (k *keepAlive) stop() {
	k.mu.Lock()
	k.stopped = true
	k.t.Stop()
	k.mu.Unlock()
}
