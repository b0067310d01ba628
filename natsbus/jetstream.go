package natsbus

import (
	"context"
	"errors"
	"fmt"
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
		cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, cc)
		if err != nil {
			return fmt.Errorf("natsbus: JetStream consumer %q on stream %q: %w", cfg.Durable, cfg.Stream, err)
		}
		consume, err := cons.Consume(b.jsHandler,
			jetstream.PullMaxMessages(cfg.PullBatch),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				// Missed heartbeats, pull errors and the like: the
				// consumer keeps going, but the user should know.
				b.report(fmt.Errorf("natsbus: JetStream consumer %q: %w", cfg.Durable, err))
			}))
		if err != nil {
			return fmt.Errorf("natsbus: JetStream consume %q: %w", cfg.Durable, err)
		}
		b.consumer = consume
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
// once: redelivering them cannot help.
func (b *Bridge[T]) jsHandler(msg jetstream.Msg) {
	if !b.enterInbound() {
		return // not acked: redelivered after AckWait
	}
	defer b.inActive.Done()
	cfg := b.o.js
	delivered := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	if delivered > 1 {
		b.st.redelivered.Add(1)
	}
	nm := &nats.Msg{Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()}
	ev, ok, bad := b.decodeInbound(nm, nil, delivered)
	if !ok {
		if bad != nil {
			// Redelivering cannot help: bad input, or a forged origin.
			b.st.terminated.Add(1)
			b.ackOp(nm, delivered, msg.TermWithReason(bad.Error()))
		} else {
			b.ackOp(nm, delivered, msg.Ack()) // our own message: nothing to do
		}
		return
	}

	ka := startKeepAlive(msg, cfg.AckWait/2, func(err error) { b.ackOp(nm, delivered, err) })
	err := b.m.EmitSync(ev.ctx, ev.name, ev.data)
	ka.stop()

	switch {
	case err == nil:
		b.st.received.Add(1)
		b.ackOp(nm, delivered, msg.Ack())
	case b.life.Err() != nil || errors.Is(err, eventbus.ErrClosed):
		// Shutting down (here or in the EventManager): hand the message
		// back without spending one of its deliveries on our own exit.
		b.st.naked.Add(1)
		b.ackOp(nm, delivered, msg.Nak())
	case delivered >= uint64(cfg.MaxDeliver):
		b.st.listenerErrors.Add(1)
		b.st.terminated.Add(1)
		b.report(&MessageError{Subject: nm.Subject, ID: ev.id, Delivered: delivered,
			Err: fmt.Errorf("%w (%d): %w", ErrMaxDeliver, delivered, err)})
		b.ackOp(nm, delivered, msg.TermWithReason(ErrMaxDeliver.Error()))
	default:
		b.st.listenerErrors.Add(1)
		b.st.naked.Add(1)
		b.ackOp(nm, delivered, msg.NakWithDelay(cfg.NakDelay))
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

func startKeepAlive(msg jetstream.Msg, every time.Duration, onErr func(error)) *keepAlive {
	k := &keepAlive{}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.t = time.AfterFunc(every, func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.stopped {
			return
		}
		if err := msg.InProgress(); err != nil {
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
