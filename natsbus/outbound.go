package natsbus

import (
	"context"
	"errors"
	"fmt"

	"github.com/eventbus-go/eventbus"
	"github.com/nats-io/nats.go"
)

// outboundHandler returns the listener registered for outbound pattern i.
func (b *Bridge[T]) outboundHandler(i int) eventbus.Handler[T] {
	earlier := b.o.outbound[:i]
	return func(ctx context.Context, e eventbus.Event[T]) error {
		// Loop prevention: an event this bridge emitted from NATS is not
		// sent back out, whatever the patterns.
		if in, ok := ctx.Value(inboundKey{}).(*inbound); ok && in.bridge == any(b) && in.name == e.Name {
			return nil
		}
		// Publish an event matching several outbound patterns only once:
		// the listener of the first matching pattern does it.
		for _, p := range earlier {
			if eventbus.MatchPattern(p, e.Name) {
				return nil
			}
		}
		b.outMu.RLock()
		if b.outClosed {
			b.outMu.RUnlock()
			return b.publishFailed(e.Name, b.o.prefix+e.Name, "", ErrClosed)
		}
		b.outActive.Add(1)
		b.outMu.RUnlock()
		defer b.outActive.Done()
		return b.publish(ctx, e)
	}
}

func (b *Bridge[T]) publish(ctx context.Context, e eventbus.Event[T]) error {
	id := b.ids.next()
	subject, err := publishSubject(b.o.prefix, e.Name)
	if err != nil {
		return b.publishFailed(e.Name, b.o.prefix+e.Name, id, err)
	}
	data, err := b.encode(e.Data)
	if err != nil {
		return b.publishFailed(e.Name, subject, id, err)
	}
	ids := []string{id}
	var h nats.Header
	if b.pub == nil {
		// Core mode: nats.go has encoded the headers when PublishMsg
		// returns, so the map can be reused. JetStream keeps the message
		// for resends.
		h = b.headers.Get().(nats.Header)
		defer func() {
			clear(h)
			b.headers.Put(h)
		}()
	} else {
		h = make(nats.Header, 4)
	}
	h[HeaderName] = []string{e.Name}
	h[HeaderID] = ids
	h[HeaderOrigin] = b.origin
	if b.ctype != nil {
		h[HeaderContentType] = b.ctype
	}
	for _, p := range b.o.propagators {
		p.Inject(ctx, h)
	}
	msg := &nats.Msg{Subject: subject, Header: h, Data: data}
	if b.pub != nil {
		// The de-duplication ID is always the bridge's own, set after the
		// propagators so that no user value can replace it.
		h[headerMsgID] = ids
		err = b.pub.publish(ctx, msg, e.Name, id)
	} else {
		err = b.nc.PublishMsg(msg)
		if err == nil {
			b.st.published.Add(1)
		}
	}
	if err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			err = fmt.Errorf("%w: %d bytes of data plus headers, server allows %d: %w",
				ErrPayloadTooLarge, len(data), b.nc.MaxPayload(), err)
		}
		return b.publishFailed(e.Name, subject, id, err)
	}
	return nil
}

func (b *Bridge[T]) publishFailed(name, subject, id string, err error) error {
	b.st.publishErrors.Add(1)
	return &PublishError{Event: name, Subject: subject, ID: id, Err: err}
}

// encode never panics: a panicking codec is reported as ErrEncode.
func (b *Bridge[T]) encode(v T) (data []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: codec panicked: %v", ErrEncode, r)
		}
	}()
	data, err = b.o.codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEncode, err)
	}
	return data, nil
}
