// Package eventbus is an embeddable, in-process event bus: register
// listeners for named events (with NATS-style wildcards), then emit events,
// either in the calling goroutine (EmitSync) or through a bounded worker pool
// (Emit). A graceful Close loses nothing (a Close whose context ends first
// abandons what has not started, and counts it); an emit made on a pool
// worker, from a handler, never waits for room, so listeners that emit do
// not deadlock the pool (a goroutine a handler starts is not a worker: see
// Handler); memory stays bounded under a flood; and no goroutine of the
// pool outlives Close.
//
// Event names are dot-separated tokens ("order.created"). Patterns may use
// '*' for exactly one token and a final '>' for one or more tokens.
//
// For events shared between processes, see the natsbus module.
package eventbus
