package natsbus

import "sync/atomic"

type counters struct {
	published, duplicates, publishErrors, unconfirmed, retries atomic.Uint64
	received, decodeErrors, listenerErrors, skippedOwn, forged atomic.Uint64
	dropped, redelivered, naked, terminated, ackErrors         atomic.Uint64
	consumerRestarts                                           atomic.Uint64
}

// Stats is a snapshot of a bridge's counters. Each counter only grows.
//
// Every outbound event the bridge takes on (all that reach its outbound
// listener, except one held back by loop prevention) ends in exactly one of
// Published, PublishErrors or Unconfirmed once its outcome is known: at once
// in core mode, when its ack arrives or its attempts run out in JetStream
// mode. A Flush that waited for a publish returns after it is counted (and,
// if it failed, reported).
type Stats struct {
	// Published counts outbound messages handed to the connection (core)
	// or acknowledged by the stream (JetStream).
	Published uint64
	// Duplicates counts JetStream acks that reported the message as a
	// duplicate of one already stored (a resend after a lost ack). They
	// are also counted in Published.
	Duplicates uint64
	// PublishErrors counts outbound events known not to be published:
	// refused before sending (invalid subject, encoding, payload size,
	// closed bridge or connection, reconnect buffer full), or rejected by
	// the server (ErrPublishRejected). Each was returned to the emitter or
	// reported to the error handler.
	PublishErrors uint64
	// Unconfirmed counts JetStream publishes whose outcome is unknown: sent,
	// but not acknowledged after every attempt, or not before the bridge or
	// the connection closed. Each was reported with an error wrapping
	// ErrAckTimeout; the server may have stored the message.
	Unconfirmed uint64
	// Retries counts JetStream resends with the same Nats-Msg-Id, after an
	// ack timeout, a "no responders" answer or a reconnect.
	Retries uint64
	// Received counts inbound messages handed to the local EventManager.
	// Core: counted as the event is emitted (taken back if the emit fails:
	// refused, or under WithSyncInbound a listener failed), so a listener
	// that has the event finds it counted. JetStream: counted once the
	// listeners have returned and the message is acknowledged, so a
	// listener does not yet find its own message counted.
	Received uint64
	// DecodeErrors counts inbound messages the bridge could not turn into
	// an event: payloads the codec rejected (empty ones included, whatever
	// their headers), subjects that are not valid event names, malformed
	// header blocks, an unexpected Content-Type, and messages on a
	// JetStream bridge's pull subscription that are not JetStream
	// deliveries. Each was reported with an error wrapping ErrDecode or
	// ErrInvalidSubject; in JetStream mode each stored one was terminated.
	DecodeErrors uint64
	// ListenerErrors counts inbound deliveries that a local listener
	// failed (JetStream) or the EventManager refused (core).
	ListenerErrors uint64
	// SkippedOwn counts inbound messages ignored because this bridge
	// published them (loop prevention).
	SkippedOwn uint64
	// ForgedOrigin counts inbound messages that carried this bridge's
	// origin but an event ID it did not make; each was reported with
	// ErrForgedOrigin and not delivered.
	ForgedOrigin uint64
	// Dropped counts messages the NATS client dropped because the local
	// side was too slow (core mode): copies, with overlapping Inbound
	// patterns, each subscription counting its own (see the README).
	Dropped uint64
	// Redelivered counts JetStream deliveries after the first.
	Redelivered uint64
	// Naked counts JetStream messages handed back for redelivery.
	Naked uint64
	// Terminated counts JetStream messages the bridge terminated
	// (undecodable, forged origin, or every delivery failed).
	Terminated uint64
	// AckErrors counts failures to send an ack, nak or term to JetStream.
	AckErrors uint64
	// ConsumerRestarts counts interruptions of the JetStream consumer
	// (each reported with ErrConsumerInterrupted) after which the bridge
	// waited for the consumer's leader and pulled again.
	ConsumerRestarts uint64
}

// Stats returns a snapshot of the bridge's counters. It is safe to call at
// any time, also after Close; the counters are read one by one, so a
// snapshot taken while messages flow need not add up.
func (b *Bridge[T]) Stats() Stats {
	s := &b.st
	return Stats{
		Published: s.published.Load(), Duplicates: s.duplicates.Load(),
		PublishErrors: s.publishErrors.Load(), Unconfirmed: s.unconfirmed.Load(),
		Retries: s.retries.Load(), Received: s.received.Load(),
		DecodeErrors: s.decodeErrors.Load(), ListenerErrors: s.listenerErrors.Load(),
		SkippedOwn: s.skippedOwn.Load(), ForgedOrigin: s.forged.Load(),
		Dropped: s.dropped.Load(), Redelivered: s.redelivered.Load(),
		Naked: s.naked.Load(), Terminated: s.terminated.Load(), AckErrors: s.ackErrors.Load(),
		ConsumerRestarts: s.consumerRestarts.Load(),
	}
}
