package natsbus

import (
	"context"
	"fmt"
	"mime"
	"strings"

	"github.com/eventbus-go/eventbus"
	"github.com/nats-io/nats.go"
)

type inboundEvent[T any] struct {
	ctx  context.Context
	name string
	id   string
	data T
}

// decodeInbound turns a message into a local event. ok is false when the
// message is to be skipped: already handled by an earlier pattern, sent by
// this bridge, or bad (then it is counted and reported, and bad says so).
func (b *Bridge[T]) decodeInbound(msg *nats.Msg, earlier []string, delivered uint64) (ev inboundEvent[T], ok bool, bad error) {
	ev.id = msg.Header.Get(HeaderID)
	ev.name = strings.TrimPrefix(msg.Subject, b.o.prefix)
	for _, p := range earlier {
		if eventbus.MatchPattern(p, ev.name) {
			return ev, false, nil
		}
	}
	report := func(err error) error {
		err = &MessageError{Subject: msg.Subject, ID: ev.id, Delivered: delivered, Err: err}
		b.report(err)
		return err
	}
	fail := func(err error) (inboundEvent[T], bool, error) {
		b.st.decodeErrors.Add(1)
		return ev, false, report(err)
	}
	if msg.Header == nil && headerBytes(msg) > 0 {
		// nats.go hands over a message whose header block it could not
		// parse without headers (and tells only the connection's error
		// handler).
		return fail(fmt.Errorf("%w: %w: %d bytes", ErrDecode, ErrBadHeader, headerBytes(msg)))
	}
	origin := msg.Header.Get(HeaderOrigin)
	if origin == b.origin[0] {
		if b.ids.mine(ev.id) {
			b.st.skippedOwn.Add(1)
			return ev, false, nil
		}
		b.st.forged.Add(1)
		return ev, false, report(fmt.Errorf("%w (origin %q)", ErrForgedOrigin, origin))
	}
	if b.accept != "" {
		if ct := msg.Header.Get(HeaderContentType); ct != "" && mediaType(ct) != b.accept {
			return fail(fmt.Errorf("%w: %w: %q, the codec reads %q", ErrDecode, ErrContentType, ct, b.accept))
		}
	}
	if err := eventbus.ValidateName(ev.name); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrInvalidSubject, err))
	}
	if err := b.decodeFor(ev.name, msg.Data, &ev.data); err != nil {
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

// headerBytes is the size of a received message's header block: what
// nats.go read, less subject, reply and payload. It is 0 for a message
// built in this process (Size then encodes its Header, which is nil here).
func headerBytes(msg *nats.Msg) int {
	return msg.Size() - len(msg.Subject) - len(msg.Reply) - len(msg.Data)
}

// mediaType returns the lower-case media type of a Content-Type value,
// without parameters.
func mediaType(ct string) string {
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		return mt
	}
	mt, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// decode never panics: a panicking codec is reported as ErrDecode. v is a
// *T, or a pointer to a topic's declared type (see decodeFor).
func (b *Bridge[T]) decode(data []byte, v any) (err error) {
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
