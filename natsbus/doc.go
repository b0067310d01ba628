// Package natsbus bridges an [eventbus.EventManager] to NATS, so that
// listeners in many processes share one event stream.
//
// A [Bridge] connects one EventManager to one *nats.Conn. Events emitted
// locally whose names match an outbound pattern are published to NATS with
// the event name (plus an optional prefix) as the subject; messages on
// subjects matching an inbound pattern are emitted into the local
// EventManager, so local listeners receive remote events exactly like local
// ones. Event names and NATS subjects share the same token and wildcard
// rules, so a pattern means the same thing on both sides.
//
// Two delivery modes are available per bridge:
//
//   - core NATS (the default): at-most-once, lowest latency. Events published
//     while no subscriber is connected are gone; messages a slow local side
//     cannot keep up with are dropped by the client, counted in
//     [Stats.Dropped] and reported to the error handler.
//   - JetStream ([WithJetStream]): at-least-once. Publishes are confirmed by
//     the server, carry a bridge-generated Nats-Msg-Id for de-duplication and
//     are sent again with the same ID when the acknowledgement is lost or
//     the connection comes back; a publish whose acknowledgement never came
//     is reported as outcome unknown ([ErrAckTimeout], [Stats.Unconfirmed]).
//     Publishes ride out a stream leader election within a time budget
//     (JetStreamConfig.PublishTimeout). Inbound messages are pulled by the
//     bridge itself, within a byte bound (PullMaxBytes), and acknowledged
//     only after every local listener returned nil; a consumer that loses
//     its leader waits for the next one and resumes
//     ([ErrConsumerInterrupted]). JetStreamConfig.Provision creates or
//     updates the stream.
//
// Inbound messages the bridge cannot or will not deliver (undecodable,
// malformed headers, an unexpected Content-Type, a forged origin) are
// counted and reported to the error handler, never dropped silently; in
// JetStream mode they are also terminated. No stored message, whatever its
// shape, is taken for a server reply. Event IDs (also the Nats-Msg-Id) are
// random, so they cannot be guessed from the ones seen.
// [Bridge.Drain] publishes every outbound event the EventManager accepted
// before it; [Bridge.Close] reports each one it no longer publishes.
// Close also cancels the contexts of inbound events: listeners running in
// the bridge's callbacks (JetStream, [WithSyncInbound]) all see it; in core
// mode only listeners registered with [eventbus.CancelWithEmitter] do.
//
// The wire format (subjects, headers, payload) is documented in the module's
// README so that services written in other languages can take part.
//
// The bridge never owns the connection or the EventManager: close the bridge
// first, then the EventManager and the connection.
package natsbus
