package eventbustest

import (
	"context"
	"fmt"
	"runtime"

	"github.com/eventbus-go/eventbus"
)

// Bus is what WaitIdle needs of an EventManager. Every
// *eventbus.EventManager[T] implements it, whatever T.
type Bus interface {
	Flush(ctx context.Context) error
	Stats() eventbus.Stats
}

// WaitIdle waits until b is idle, or until ctx is done; then it returns an
// error matching ctx's error.
//
// Flush alone waits for the events accepted before it, not for the
// follow-up events their listeners emit. WaitIdle therefore repeats
// {read Stats; Flush; read Stats} until a round in which no event was
// emitted (Stats.Emitted unchanged) and that ends with nothing queued or
// running on the pool (Stats.Queued and Stats.Running zero). So when it
// returns nil, every event accepted before the call has been handled,
// retries included, and so has every event that those listeners emitted,
// transitively, before returning. It does not wait for emits made by
// goroutines that a listener started and did not wait for, for Emit calls
// of other goroutines still in progress (such as one waiting for queue
// room), nor for EmitSync calls running in other goroutines.
//
// Called from a handler running on b's pool it cannot wait for itself: it
// returns at once an error matching eventbus.ErrReentrant, as Flush does.
//
// WaitIdle never sleeps: it only waits in Flush. It is safe to call
// concurrently with anything, including after Close (it then returns once
// Close has drained the pool). A bus whose listeners emit forever is never
// idle: WaitIdle then returns ctx's error.
func WaitIdle(ctx context.Context, b Bus) error {
	if isNil(b) {
		return fmt.Errorf("eventbustest: WaitIdle: bus: %w", ErrNilArgument)
	}
	for {
		before := b.Stats()
		if err := b.Flush(ctx); err != nil {
			return fmt.Errorf("eventbustest: waiting for the bus to be idle: %w", err)
		}
		after := b.Stats()
		if after.Emitted == before.Emitted && after.Queued == 0 && after.Running == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("eventbustest: waiting for the bus to be idle: %w (last stats %+v)", err, after)
		}
		if after.Emitted == before.Emitted {
			// Nothing new was accepted, so Flush had nothing to wait for:
			// a worker is still finishing its bookkeeping.
			runtime.Gosched()
		}
	}
}
