package natsbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Bridge connects one EventManager to one NATS connection. Create it with
// [New]; stop it with [Bridge.Close] or [Bridge.Drain]. All methods are safe
// for concurrent use. A Bridge must not be copied.
//
// The bridge does not own the EventManager or the connection: it registers
// listeners on the one and subscriptions on the other, and removes them when
// it stops. Close the bridge before closing either. The bridge follows the
// connection through reconnects; while the connection is reconnecting, core
// publishes go to nats.go's reconnect buffer (nats.ReconnectBufSize, 8 MiB
// by default) and fail with an error once it is full, and JetStream
// publishes wait for their acks within JetStreamConfig.MaxInFlight.
type Bridge[T any] struct {
	m      *eventbus.EventManager[T]
	nc     *nats.Conn
	o      options
	origin []string // HeaderOrigin value, shared by every outbound message
	ctype  []string // HeaderContentType value, or nil

	headers sync.Pool // of nats.Header, for core-mode publishes

	life   context.Context // parent of inbound event contexts; cancelled by Close
	cancel context.CancelFunc

	listeners []*eventbus.Listener
	subs      []*coreSub
	consumer  jetstream.ConsumeContext
	pub       *jsPublisher

	// Gates: outbound listener calls and inbound message callbacks enter
	// under the read lock and are waited for after the flag is set.
	outMu     sync.RWMutex
	outClosed bool
	outActive sync.WaitGroup
	inMu      sync.RWMutex
	inClosed  bool
	inActive  sync.WaitGroup
	monitors  sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	st counters
}

type counters struct {
	published, duplicates, publishErrors, retries      atomic.Uint64
	received, decodeErrors, listenerErrors, skippedOwn atomic.Uint64
	dropped, redelivered, naked, terminated, ackErrors atomic.Uint64
}

// Stats is a snapshot of a bridge's counters.
type Stats struct {
	// Published counts outbound messages handed to the connection (core)
	// or acknowledged by the stream (JetStream).
	Published uint64
	// Duplicates counts JetStream acks that reported the message as a
	// duplicate of one already stored (a resend after a lost ack).
	Duplicates uint64
	// PublishErrors counts outbound events that were not published,
	// whether the error was returned to the emitter or reported later.
	PublishErrors uint64
	// Retries counts JetStream resends with the same Nats-Msg-Id.
	Retries uint64
	// Received counts inbound messages handed to the local EventManager
	// (core: queued with Emit; JetStream: handled and acknowledged).
	Received uint64
	// DecodeErrors counts inbound payloads the codec rejected, and inbound
	// subjects that are not valid event names.
	DecodeErrors uint64
	// ListenerErrors counts inbound deliveries that a local listener
	// failed (JetStream) or the EventManager refused.
	ListenerErrors uint64
	// SkippedOwn counts inbound messages ignored because this bridge
	// published them (loop prevention).
	SkippedOwn uint64
	// Dropped counts messages the NATS client dropped because the local
	// side was too slow (core mode).
	Dropped uint64
	// Redelivered counts JetStream deliveries after the first.
	Redelivered uint64
	// Naked counts JetStream messages handed back for redelivery.
	Naked uint64
	// Terminated counts JetStream messages the bridge terminated
	// (undecodable, or every delivery failed).
	Terminated uint64
	// AckErrors counts failures to send an ack, nak or term to JetStream.
	AckErrors uint64
}

// Stats returns a snapshot of the bridge's counters.
func (b *Bridge[T]) Stats() Stats {
	s := &b.st
	return Stats{
		Published: s.published.Load(), Duplicates: s.duplicates.Load(),
		PublishErrors: s.publishErrors.Load(), Retries: s.retries.Load(),
		Received: s.received.Load(), DecodeErrors: s.decodeErrors.Load(),
		ListenerErrors: s.listenerErrors.Load(), SkippedOwn: s.skippedOwn.Load(),
		Dropped: s.dropped.Load(), Redelivered: s.redelivered.Load(),
		Naked: s.naked.Load(), Terminated: s.terminated.Load(), AckErrors: s.ackErrors.Load(),
	}
}

// Origin returns the value this bridge sends in the Eventbus-Origin header.
func (b *Bridge[T]) Origin() string { return b.origin[0] }

// New starts a bridge between m and nc. At least one Outbound or Inbound
// pattern is required. ctx bounds the setup only (in JetStream mode: the
// stream lookup and the consumer creation); it is not retained.
//
// Outbound listeners are registered on m, so every matching event emitted
// after New returns is published; inbound subscriptions are live when New
// returns.
func New[T any](ctx context.Context, m *eventbus.EventManager[T], nc *nats.Conn, opts ...Option) (*Bridge[T], error) {
	if m == nil {
		return nil, configErr("nil EventManager")
	}
	if nc == nil {
		return nil, configErr("nil connection")
	}
	o := options{codec: JSON{}, pendingMsgs: _defaultPendingMsgs, pendingBytes: _defaultPendingBytes}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt.apply(&o); err != nil {
			return nil, err
		}
	}
	if len(o.outbound)+len(o.inbound) == 0 {
		return nil, configErr("no Outbound or Inbound patterns")
	}
	if err := validatePrefix(o.prefix); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	for _, p := range append(append([]string(nil), o.outbound...), o.inbound...) {
		if err := validateSubjectPattern(o.prefix, p); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if o.origin == "" {
		o.origin = nuid.Next()
	}
	b := &Bridge[T]{m: m, nc: nc, o: o, origin: []string{o.origin}}
	// JSON, the default, goes without a Content-Type header: each header
	// costs time to write and parse on every message (see README).
	if ct, ok := o.codec.(ContentTyper); ok && ct.ContentType() != "" && ct.ContentType() != (JSON{}).ContentType() {
		b.ctype = []string{ct.ContentType()}
	}
	b.headers.New = func() any { return make(nats.Header, 4) }
	b.life, b.cancel = context.WithCancel(context.Background())

	if err := b.start(ctx); err != nil {
		b.teardown()
		return nil, err
	}
	return b, nil
}

func (b *Bridge[T]) start(ctx context.Context) error {
	if b.o.js != nil {
		if err := b.startJetStream(ctx); err != nil {
			return err
		}
	} else if len(b.o.inbound) > 0 {
		if err := b.startCoreInbound(); err != nil {
			return err
		}
		// A round trip, so that the server knows the subscriptions when
		// New returns. While disconnected they are sent on reconnect.
		if b.nc.IsConnected() {
			fctx, cancel := context.WithTimeout(ctx, _defaultRequestTimeout)
			defer cancel()
			if err := b.nc.FlushWithContext(fctx); err != nil {
				return fmt.Errorf("natsbus: flush subscriptions: %w", err)
			}
		}
	}
	for i, p := range b.o.outbound {
		l, err := b.m.RegisterListener(p, b.outboundHandler(i))
		if err != nil {
			return fmt.Errorf("%w: outbound pattern %q: %w", ErrConfig, p, err)
		}
		b.listeners = append(b.listeners, l)
	}
	return nil
}

// teardown releases whatever start acquired, without waiting for anything.
// It is used when New fails.
func (b *Bridge[T]) teardown() {
	for _, l := range b.listeners {
		l.Unregister()
	}
	b.setInClosed()
	for _, s := range b.subs {
		_ = s.sub.Unsubscribe()
	}
	if b.consumer != nil {
		b.consumer.Stop()
		<-b.consumer.Closed()
	}
	if b.pub != nil {
		b.pub.abort()
		b.pub.close()
	}
	b.cancel()
	b.inActive.Wait()
	b.monitors.Wait()
}

// Flush waits until every event published so far has left the bridge: in
// core mode, until the server has processed everything the connection sent
// (a PING/PONG round trip); in JetStream mode, until every in-flight
// publish is acknowledged or has failed and been reported. Flush does not
// wait for the EventManager's own queue: call its Flush first.
func (b *Bridge[T]) Flush(ctx context.Context) error {
	if b.pub != nil {
		return b.pub.flush(ctx)
	}
	return flushConn(ctx, b.nc)
}

// flushConn is nc.FlushWithContext for contexts with or without deadline.
func flushConn(ctx context.Context, nc *nats.Conn) error {
	if _, ok := ctx.Deadline(); !ok {
		// nats.go insists on a deadline; cancellation still works.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 24*time.Hour)
		defer cancel()
	}
	return nc.FlushWithContext(ctx)
}

// Close stops the bridge now: outbound listeners are removed, inbound
// subscriptions stop (messages buffered in the client are discarded; in
// JetStream mode they are redelivered later, in core mode they are lost),
// and the context of running inbound listeners is cancelled. It then waits,
// until ctx is done, for outbound publishes in flight to be sent and (in
// JetStream mode) acknowledged. Publishes still unconfirmed when ctx is done
// are reported to the error handler with ErrClosed.
//
// Close leaves no goroutine behind. It returns ctx's error if ctx expired
// first. Calling Close or Drain again returns the first call's result.
func (b *Bridge[T]) Close(ctx context.Context) error {
	b.closeOnce.Do(func() { b.closeErr = b.shutdown(ctx, false) })
	return b.closeErr
}

// Drain stops the bridge gracefully: inbound subscriptions stop taking new
// messages but every message already buffered is delivered locally first;
// then outbound listeners are removed and in-flight publishes flushed, as in
// Close. Events that local listeners emit while the inbound side drains are
// still published. Drain returns ctx's error if ctx expired first, and then
// behaves as Close.
func (b *Bridge[T]) Drain(ctx context.Context) error {
	b.closeOnce.Do(func() { b.closeErr = b.shutdown(ctx, true) })
	return b.closeErr
}

func (b *Bridge[T]) shutdown(ctx context.Context, drain bool) error {
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	// Inbound first, so that events triggered by buffered inbound messages
	// can still go out.
	for _, s := range b.subs {
		b.checkDropped(s)
	}
	if !drain {
		b.cancel()
	}
	switch {
	case b.consumer != nil && drain:
		b.consumer.Drain()
		keep(wait(ctx, b.consumer.Closed()))
		b.consumer.Stop()
	case b.consumer != nil:
		b.consumer.Stop()
	}
	for _, s := range b.subs {
		if drain {
			_ = s.sub.Drain()
		} else {
			_ = s.sub.Unsubscribe()
		}
	}
	if drain && len(b.subs) > 0 {
		// The monitors return when their subscription is closed, which
		// for a draining subscription is once its buffer is delivered.
		keep(waitGroup(ctx, &b.monitors))
		for _, s := range b.subs {
			_ = s.sub.Unsubscribe() // no-op unless ctx expired
		}
	}
	b.setInClosed()
	b.cancel()
	keep(waitGroup(ctx, &b.inActive))
	if b.consumer != nil {
		keep(wait(ctx, b.consumer.Closed()))
	}

	// Outbound: no new publishes, then flush the ones in flight.
	for _, l := range b.listeners {
		l.Unregister()
	}
	b.outMu.Lock()
	b.outClosed = true
	b.outMu.Unlock()
	if b.pub != nil {
		if err := waitGroup(ctx, &b.outActive); err != nil {
			keep(err)
			b.pub.abort() // release listeners waiting for an in-flight slot
		}
		keep(b.pub.flush(ctx))
		b.pub.abort()
		b.outActive.Wait()
		b.pub.close()
	} else {
		b.outActive.Wait() // core publishes never block
		if b.nc.IsConnected() {
			keep(flushConn(ctx, b.nc))
		}
	}
	b.monitors.Wait()
	b.inActive.Wait()
	return dedupe(errs)
}

func (b *Bridge[T]) setInClosed() {
	b.inMu.Lock()
	b.inClosed = true
	b.inMu.Unlock()
}

// enterInbound admits a message callback unless the bridge is closing.
func (b *Bridge[T]) enterInbound() bool {
	b.inMu.RLock()
	defer b.inMu.RUnlock()
	if b.inClosed {
		return false
	}
	b.inActive.Add(1)
	return true
}

func (b *Bridge[T]) report(err error) {
	if b.o.onError != nil {
		b.o.onError(err)
	}
}

func wait(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitGroup waits for wg or ctx. If ctx ends first the helper goroutine
// lingers until wg is done; the shutdown sequence guarantees that it will
// be, because everything waited for is stopped right after.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return wait(ctx, done)
}

// dedupe joins errs, reporting a repeated context error once.
func dedupe(errs []error) error {
	var out []error
	for _, err := range errs {
		dup := false
		for _, o := range out {
			if errors.Is(err, o) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, err)
		}
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}
