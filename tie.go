package eventbus

import "context"

// CancelWithEmitter ties the context the listener's handler gets on the pool
// (through Emit, EmitTo and Topic.Emit) to the cancellation of the emitter's
// context: when the context passed to Emit is cancelled or reaches its
// deadline while the handler runs (or before it starts), the handler's
// context is cancelled too, with ctx.Err() reporting context.Canceled and
// context.Cause the emitter's cause (context.DeadlineExceeded at its
// deadline). Without it a pool listener's context carries the emitter's
// values only, and ends only when Close gives up (see Emit); with it, it
// ends at whichever comes first. A delivery whose emitter's context is
// already done when it starts still runs, with a context already done, so
// the handler decides; Retry attempts are tied in the same way, each to the
// emitter's context.
//
// The tie is made per delivery, when its handler starts, and undone when it
// returns, so nothing outlives the invocation; it costs a few allocations
// (the derived context and its link to the emitter's) per delivery whose
// emitter's context can be cancelled, and nothing for other deliveries or
// other listeners. An emitter's context that cannot be
// cancelled (context.Background(), TryEmit) gives nothing to tie. EmitSync
// passes the caller's context as it is, so the option changes nothing
// there. A bridge that emits with a context it cancels on Close lets
// listeners with this option stop with it: natsbus core mode does, its
// Bridge.Close cancels them with the cause natsbus.ErrClosed.
func CancelWithEmitter() ListenerOption {
	return listenerOptionFunc(func(c *listenerConfig) { c.tied = true })
}

// tie returns the context a delivery made with ctx runs with when its
// listener has CancelWithEmitter, and the function that undoes the tie
// once the handler has returned. ctx is the delivery's context as accept
// made it: the pool's own (nothing to tie), a listenerCtx, or a nameCtx
// over one.
func tie(ctx context.Context) (context.Context, context.CancelFunc) {
	var lc *listenerCtx
	switch c := ctx.(type) {
	case *listenerCtx:
		lc = c
	case *nameCtx:
		lc, _ = c.Context.(*listenerCtx)
	}
	if lc == nil || lc.emitter == nil {
		return ctx, func() {}
	}
	emitter := lc.emitter
	tied, cancel := context.WithCancelCause(ctx)
	if emitter.Err() != nil {
		cancel(context.Cause(emitter))
		return tied, func() { cancel(nil) }
	}
	stop := context.AfterFunc(emitter, func() { cancel(context.Cause(emitter)) })
	return tied, func() {
		stop()
		cancel(nil)
	}
}
