package natsbus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/nats-io/nats.go"
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
// publishes wait for their acks within JetStreamConfig.MaxInFlight and are
// sent again as soon as the connection is back.
type Bridge[T any] struct {
	m      *eventbus.EventManager[T]
	nc     *nats.Conn
	o      options
	origin []string // HeaderOrigin value, shared by every outbound message
	ctype  []string // HeaderContentType value, or nil
	accept string   // media type an inbound Content-Type must name; "" accepts any
	ids    *idGen

	headers sync.Pool // of nats.Header, for core-mode publishes

	// life is the parent of every inbound event's context; endLife cancels
	// it, with ErrClosed as its cause (see Close and Drain for when).
	life   context.Context
	cancel context.CancelCauseFunc

	listeners []*eventbus.Listener
	subs      []*coreSub
	consumer  *jsConsumer
	pub       *jsPublisher
	closedEv  chan nats.Status // CLOSED events of the connection, for shutdown waits

	// Gates: outbound listener calls and inbound message callbacks enter
	// under the read lock and are waited for after the flag is set.
	outMu     sync.RWMutex
	outClosed bool
	outActive sync.WaitGroup
	inMu      sync.RWMutex
	inClosed  bool
	inActive  sync.WaitGroup
	monitors  sync.WaitGroup
	stopMon   chan struct{} // closed at shutdown: the slow-consumer monitors return

	closeOnce sync.Once
	closeErr  error

	// afterInbound, if set (tests only, before Close or Drain), is called
	// by the shutdown once the inbound side has stopped.
	afterInbound func()

	st counters
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
	b := &Bridge[T]{m: m, nc: nc, o: o, origin: []string{o.origin}, ids: newIDGen(), stopMon: make(chan struct{})}
	if ct, ok := o.codec.(ContentTyper); ok && ct.ContentType() != "" {
		b.accept = mediaType(ct.ContentType())
		// JSON, the default, goes without a Content-Type header: each
		// header costs time to write and parse on every message (see
		// README).
		if ct.ContentType() != (JSON{}).ContentType() {
			b.ctype = []string{ct.ContentType()}
		}
	}
	b.headers.New = func() any { return make(nats.Header, 4) }
	b.life, b.cancel = context.WithCancelCause(context.Background())

	if err := b.start(ctx); err != nil {
		b.teardown()
		return nil, err
	}
	return b, nil
}

func (b *Bridge[T]) start(ctx context.Context) error {
	if len(b.o.inbound) > 0 {
		b.closedEv = b.nc.StatusChanged(nats.CLOSED)
	}
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
	b.endLife()
	b.inActive.Wait()
	close(b.stopMon)
	b.monitors.Wait()
	if b.closedEv != nil {
		b.nc.RemoveStatusListener(b.closedEv)
	}
}

// Flush waits until every event published so far has left the bridge: in
// core mode, until the server has processed everything the connection sent
// (a PING/PONG round trip); in JetStream mode, until the outcome of every
// publish started before the call is known, counted in Stats and, if it
// failed, reported. Ack timeouts count only while the connection is up, so
// during an outage Flush waits for the connection to come back (or to be
// closed) unless ctx ends first; it then returns ctx's error. Flush does
// not wait for the EventManager's own queue: call its Flush first.
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

func (b *Bridge[T]) report(err error) {
	if b.o.onError != nil {
		b.o.onError(err)
	}
}
