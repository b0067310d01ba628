package natsbus

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned or reported by the bridge wrap one of these;
// test for them with [errors.Is].
var (
	// ErrClosed is returned or reported for an outbound event that reaches
	// a bridge whose outbound side is closed (Close, or Drain once it has
	// published what was queued), and, together with ErrAckTimeout, for a
	// JetStream publish still unacknowledged when Close or Drain gave up.
	ErrClosed = errors.New("natsbus: bridge closed")
	// ErrConfig is returned by [New] for an invalid option or argument.
	ErrConfig = errors.New("natsbus: invalid configuration")
	// ErrInvalidSubject is returned when an event name, prefix or pattern
	// would give a subject the bridge refuses: one that breaks the token
	// rules, contains a wildcard where a literal is needed, or starts with
	// '$' (system subjects such as $SYS and $JS).
	ErrInvalidSubject = errors.New("natsbus: invalid subject")
	// ErrPayloadTooLarge is returned when an encoded event (payload plus
	// headers) exceeds the server's max_payload.
	ErrPayloadTooLarge = errors.New("natsbus: payload exceeds server max_payload")
	// ErrEncode is returned when the codec cannot encode an event's data.
	ErrEncode = errors.New("natsbus: cannot encode event data")
	// ErrDecode is reported when an inbound message cannot be turned into
	// an event: its payload cannot be decoded, or (wrapped together with
	// ErrBadHeader or ErrContentType) its headers are unusable.
	ErrDecode = errors.New("natsbus: cannot decode payload")
	// ErrBadHeader is reported, wrapped with ErrDecode, for an inbound
	// message whose header block the NATS client could not parse.
	ErrBadHeader = errors.New("natsbus: malformed header block")
	// ErrContentType is reported, wrapped with ErrDecode, for an inbound
	// message whose Content-Type names another media type than the
	// bridge's codec (checked only when the codec names one, see
	// ContentTyper; a message without Content-Type is not checked).
	ErrContentType = errors.New("natsbus: unexpected Content-Type")
	// ErrForgedOrigin is reported for an inbound message that carries this
	// bridge's Eventbus-Origin but an Eventbus-Id this bridge did not make:
	// another bridge uses the same origin (see WithOrigin), an earlier run
	// of this service published it under a fixed origin, or the header was
	// forged. The message is not delivered (terminated in JetStream mode).
	ErrForgedOrigin = errors.New("natsbus: message carries this bridge's origin but was not published by it")
	// ErrSlowConsumer is reported when the NATS client dropped inbound
	// messages because the local side could not keep up (core mode).
	ErrSlowConsumer = errors.New("natsbus: slow consumer, messages dropped")
	// ErrAckTimeout is reported when the outcome of a JetStream publish is
	// unknown: it was sent, but no acknowledgement came within its retry
	// budget (JetStreamConfig.PublishTimeout, counted while connected)
	// while some send may have been stored (its ack never came, or the
	// server had it "in process"), or before the connection or the bridge
	// closed. The message says what the sends met. The server may well
	// have stored the message: a resend with the same Nats-Msg-Id within
	// the stream's duplicate window would not store it twice. Such
	// publishes are counted in Stats.Unconfirmed, apart from the known
	// failures in Stats.PublishErrors.
	ErrAckTimeout = errors.New("natsbus: publish outcome unknown: no acknowledgement")
	// ErrPublishRejected is reported when JetStream answered a publish with
	// an error that means it was not stored (for example: the message is
	// too large for the stream), or when every send of a publish was
	// refused for its whole retry budget ("no responders": no stream
	// captures the subject, or it had no leader that long). Answers that
	// mean "try again" (no responders, temporarily unavailable, duplicate
	// message ID in process) are retried within the budget first.
	ErrPublishRejected = errors.New("natsbus: publish rejected by server")
	// ErrConsumerInterrupted is reported when a JetStream bridge's
	// consumer stopped receiving and starts over: its pull was answered
	// "no responders" or "leadership change", two heartbeats were missed,
	// the consumer had no leader, or the server refused a pull. The bridge
	// waits for the consumer's leader and pulls again by itself; the
	// report (one per interruption, counted in Stats.ConsumerRestarts)
	// is for the operator.
	ErrConsumerInterrupted = errors.New("natsbus: JetStream consumer interrupted, resuming")
	// ErrMaxDeliver is reported when an inbound JetStream message failed in
	// local listeners on every allowed delivery and was terminated, or when
	// Close kept it from being handled on the last delivery the server
	// would make of it (see JetStreamConfig.MaxDeliver): terminated too.
	ErrMaxDeliver = errors.New("natsbus: delivery attempts exhausted")
	// ErrEmit is reported when the local EventManager refused an inbound
	// event (core mode; for example because it is closed or its queue
	// stayed full until the bridge closed).
	ErrEmit = errors.New("natsbus: local emit failed")
)

// PublishError describes an outbound event that could not be published.
// It is returned to the emitter when the failure is known at once and
// passed to the error handler when it is known only later (JetStream acks).
type PublishError struct {
	Event   string // local event name
	Subject string // NATS subject
	ID      string // event ID (the Nats-Msg-Id in JetStream mode)
	Err     error  // wraps one of the sentinel errors, and the cause
}

func (e *PublishError) Error() string {
	return fmt.Sprintf("natsbus: publish %q (id %s): %v", e.Subject, e.ID, e.Err)
}

// Unwrap returns the underlying error.
func (e *PublishError) Unwrap() error { return e.Err }

// MessageError describes an inbound message the bridge could not deliver
// locally. It is passed to the error handler.
type MessageError struct {
	Subject   string // NATS subject the message arrived on
	ID        string // event ID from the Eventbus-Id header, if any
	Delivered uint64 // delivery attempt (JetStream), 1 in core mode
	Err       error  // wraps one of the sentinel errors, and the cause
}

func (e *MessageError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("natsbus: message on %q: %v", e.Subject, e.Err)
	}
	return fmt.Sprintf("natsbus: message on %q (id %s): %v", e.Subject, e.ID, e.Err)
}

// Unwrap returns the underlying error.
func (e *MessageError) Unwrap() error { return e.Err }

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
}
