// Package eventbus is an embeddable, in-process event bus: register
// listeners for named events (with NATS-style wildcards), then emit events,
// either in the calling goroutine (EmitSync) or through a bounded worker pool
// (Emit). It loses nothing on Close, never deadlocks when a listener emits,
// keeps memory bounded under a flood, and leaves no goroutine behind.
//
// Event names are dot-separated tokens ("order.created"). Patterns may use
// '*' for exactly one token and a final '>' for one or more tokens.
//
// For events shared between processes, see the natsbus module.
package eventbus
