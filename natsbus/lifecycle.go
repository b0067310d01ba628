package natsbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Close stops the bridge now. Inbound subscriptions stop: messages buffered
// in the client are discarded (in JetStream mode they are redelivered
// later, in core mode they are lost).
//
// Once the subscriptions (or the JetStream consumer) are stopped, Close
// cancels the context of every inbound event: its Err is context.Canceled
// and context.Cause reports ErrClosed. Which listeners see it depends on
// where they run:
//
//   - JetStream mode, and core mode with WithSyncInbound: listeners run in
//     the bridge's callbacks, through EmitSync, which passes that context
//     as it is: every listener still running sees the cancellation, and
//     Close waits for them (until ctx ends). In JetStream mode the message
//     being handled is then acknowledged if every listener returned nil,
//     and otherwise handed back (Nak, no delay) for redelivery, counted in
//     Stats.Naked and not as a listener error.
//   - Core mode: inbound events are handed to the EventManager with Emit
//     and run on its workers. A listener registered with
//     eventbus.CancelWithEmitter sees the cancellation, in the invocation
//     running and in those not started yet (they start with a context
//     already done). A listener without it does not: its context ends
//     only when the EventManager's own Close gives up. Close does not wait
//     for these listeners, except through the Flush of the EventManager
//     described below, which bridges with Outbound patterns make and which
//     waits for every listener of every event the EventManager holds.
//
// The cancellation reaches the listeners only through the context each
// Propagator's Extract derives from the one it is given.
//
// Outbound, Close publishes nothing new: every event that reaches the
// outbound listeners from now on, including those the EventManager had
// queued for them, fails with a *PublishError wrapping ErrClosed (counted
// in Stats.PublishErrors and, for Emit, passed to the EventManager's error
// handler). Close waits, until ctx is done, for the EventManager to hand
// those queued events over (its Flush), then waits for publishes in flight
// to be sent and (in JetStream mode) acknowledged, and then removes the
// outbound listeners, so that an event emitted while Close runs reaches
// them and fails as well. Publishes still unacknowledged when ctx is done,
// or when the connection is closed, are reported with ErrAckTimeout
// (outcome unknown) and counted in Stats.Unconfirmed.
//
// Close returns once the bridge's goroutines have exited, or ctx's error
// (wrapped) if ctx ended first; it does not hang on a closed connection.
// Events still queued in the EventManager when ctx ends are not handed
// over: once the listeners are removed, the EventManager counts them as
// skipped. A listener that ignores its context and is still running when
// ctx ends is not waited for. Do not call Close or Drain from a listener
// of the bridged EventManager: they would wait for that listener itself
// (they then fail with eventbus.ErrReentrant, or wait until ctx ends).
// Calling Close or Drain again returns the first call's result.
func (b *Bridge[T]) Close(ctx context.Context) error {
	b.closeOnce.Do(func() { b.closeErr = b.shutdown(ctx, false) })
	return b.closeErr
}

// Drain stops the bridge gracefully. Inbound subscriptions stop taking new
// messages, and every message already buffered is delivered locally first.
// Then every event the EventManager accepted before Drain, or while it
// runs, is published: Drain flushes the EventManager (waiting for all of
// its listeners) until a whole Flush passes in which no event reached the
// outbound listeners (in JetStream mode, that Flush and the wait for the
// acks of the publishes in flight after it), so the events that listeners
// emit while handling drained inbound messages, and their follow-ups, and
// those emitted while acks are awaited, go out too. Only then does the
// outbound side close and behave as in Close: publishes in flight are
// flushed (in JetStream mode, until acknowledged), and an event that
// reaches the bridge meanwhile fails with ErrClosed, counted and reported;
// the outbound listeners are removed last, after one more Flush. Under a
// steady stream of outbound events Drain goes on until ctx ends.
//
// Inbound events keep their contexts while Drain works: Drain cancels them
// (as Close does, with ErrClosed as the cause) when ctx ends, and when it
// returns. In core mode it waits before returning, as part of its Flush of
// the EventManager, for the inbound events it handed over to be handled,
// so that listeners with eventbus.CancelWithEmitter finish them with live
// contexts; that Flush waits for every listener of the EventManager.
//
// Drain returns ctx's error if ctx ended first, and then behaves as Close:
// what it could not publish is reported (ErrClosed) or, once the listeners
// are removed, counted by the EventManager as skipped.
func (b *Bridge[T]) Drain(ctx context.Context) error {
	b.closeOnce.Do(func() { b.closeErr = b.shutdown(ctx, true) })
	return b.closeErr
}

func (b *Bridge[T]) shutdown(ctx context.Context, drain bool) error {
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	// The contexts of inbound events end (endLife) for Close as soon as
	// the inbound side has stopped taking messages (stopInbound); for
	// Drain when ctx ends, or when Drain returns, so that what it delivers
	// is handled with live contexts.
	if drain {
		stop := context.AfterFunc(ctx, b.endLife)
		defer stop()
	}
	defer b.endLife()
	// Inbound first, so that events triggered by buffered inbound messages
	// can still go out.
	b.stopInbound(ctx, drain, keep)
	if b.afterInbound != nil {
		b.afterInbound()
	}
	b.stopOutbound(ctx, drain, keep)
	if drain && b.emitsInbound() && len(b.listeners) == 0 {
		// Without outbound listeners nothing above flushed the
		// EventManager: wait for it to handle the inbound events handed
		// over, before their contexts end.
		if err := b.m.Flush(ctx); err != nil {
			keep(fmt.Errorf("natsbus: inbound events still queued in the EventManager: %w", err))
		}
	}
	close(b.stopMon)
	b.monitors.Wait()
	if b.closedEv != nil {
		b.nc.RemoveStatusListener(b.closedEv)
	}
	return dedupe(errs)
}

func (b *Bridge[T]) stopInbound(ctx context.Context, drain bool, keep func(error)) {
	for _, s := range b.subs {
		b.checkDropped(s)
	}
	switch {
	case b.consumer != nil && drain:
		b.consumer.Drain()
		keep(stage("draining the inbound consumer", b.waitOrConnClosed(ctx, b.consumer.Closed())))
		b.consumer.Stop()
	case b.consumer != nil:
		b.consumer.Stop()
	}
	for _, s := range b.subs {
		if drain {
			_ = s.sub.Drain()
		} else {
			_ = s.sub.Unsubscribe()
		}
	}
	if drain {
		// A draining subscription closes once its buffer is delivered.
		for _, s := range b.subs {
			if err := b.waitOrConnClosed(ctx, s.closed); err != nil {
				keep(stage("draining the inbound subscriptions", err))
				break
			}
		}
		for _, s := range b.subs {
			_ = s.sub.Unsubscribe() // no-op unless ctx expired
		}
	}
	b.setInClosed()
	// Only now, with the consumer and the subscriptions stopped: a message
	// that a cancelled listener makes the bridge hand back (JetStream Nak)
	// must not come back to this bridge's pull, spending its deliveries
	// (the unsubscription reaches the server before the Nak). After a
	// drain, listeners still running in the bridge's callbacks (JetStream,
	// WithSyncInbound) do so because ctx ended or the connection is closed
	// for good; those on the EventManager's workers (core mode) are left
	// to finish what Drain delivered.
	if !drain || !b.emitsInbound() {
		b.endLife()
	}
	keep(stage("waiting for the inbound messages being handled", waitGroup(ctx, &b.inActive)))
	if b.consumer != nil {
		keep(stage("stopping the inbound consumer", b.waitOrConnClosed(ctx, b.consumer.Closed())))
	}
}

// stage says which stage of a shutdown err comes from (nil stays nil), so
// that a ctx that ended in one stage is not blamed on the next.
func stage(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("natsbus: %s: %w", what, err)
}

func (b *Bridge[T]) stopOutbound(ctx context.Context, drain bool, keep func(error)) {
	if len(b.listeners) > 0 {
		if drain {
			keep(b.publishQueued(ctx))
		}
		b.outMu.Lock()
		b.outClosed = true
		b.outMu.Unlock()
		// Deliveries the EventManager still holds for the outbound
		// listeners now fail with ErrClosed, reported, instead of being
		// skipped silently once the listeners are gone.
		if err := b.m.Flush(ctx); err != nil {
			keep(fmt.Errorf("natsbus: outbound events still queued in the EventManager: %w", err))
		}
		// The listeners stay until the publishes in flight are settled,
		// so that an event emitted meanwhile reaches them and fails with
		// ErrClosed, reported, rather than matching no listener and
		// going nowhere unsaid (a JetStream ack wait can last a leader
		// election).
		defer func() {
			// The deliveries queued meanwhile fail with ErrClosed too,
			// rather than being skipped once the listeners are gone.
			// (ctx's end, if any, was kept by the Flush above.)
			_ = b.m.Flush(ctx)
			for _, l := range b.listeners {
				l.Unregister()
			}
		}()
	}
	if b.pub != nil {
		if err := waitGroup(ctx, &b.outActive); err != nil {
			keep(err)
			b.pub.abort() // release listeners waiting for an in-flight slot
		}
		keep(b.pub.flush(ctx))
		b.pub.abort()
		b.outActive.Wait()
		b.pub.close()
		return
	}
	b.outActive.Wait() // core publishes never block
	if b.nc.IsConnected() {
		keep(flushConn(ctx, b.nc))
	}
}

// publishQueued flushes the EventManager until a whole Flush passes in
// which no event reached the outbound listeners; in JetStream mode, until
// such a Flush and the wait for the acks of the publishes in flight that
// follows it pass with none, so that the events emitted while acks are
// awaited (a leader election can last seconds) are published too.
func (b *Bridge[T]) publishQueued(ctx context.Context) error {
	for {
		before := b.outboundCalls()
		if err := b.m.Flush(ctx); err != nil {
			return fmt.Errorf("natsbus: publishing the events queued in the EventManager: %w", err)
		}
		if b.outboundCalls() != before {
			continue
		}
		if b.pub == nil {
			return nil
		}
		if err := b.pub.flush(ctx); err != nil {
			return fmt.Errorf("natsbus: waiting for the acks of the events published: %w", err)
		}
		// An Emit made meanwhile may still be queued: its delivery counts
		// only once it has run.
		if err := b.m.Flush(ctx); err != nil {
			return fmt.Errorf("natsbus: publishing the events queued in the EventManager: %w", err)
		}
		if b.outboundCalls() == before {
			return nil
		}
	}
}

// outboundCalls counts the invocations of the outbound listeners so far.
func (b *Bridge[T]) outboundCalls() (n uint64) {
	for _, l := range b.listeners {
		s := l.Stats()
		n += s.Delivered + s.Failed + s.Panicked + s.Skipped
	}
	return n
}

// endLife cancels the context of every inbound event, with ErrClosed as
// its cause. It may be called any number of times, from any goroutine.
func (b *Bridge[T]) endLife() { b.cancel(ErrClosed) }

// emitsInbound reports whether inbound events are handed to the
// EventManager with Emit (core mode without WithSyncInbound), so that
// their listeners run on its workers rather than in the bridge's
// callbacks.
func (b *Bridge[T]) emitsInbound() bool {
	return b.o.js == nil && !b.o.syncInbound && len(b.o.inbound) > 0
}

func (b *Bridge[T]) setInClosed() {
	b.inMu.Lock()
	b.inClosed = true
	b.inMu.Unlock()
}

// enterInbound admits a message callback unless the bridge is closing.
func (b *Bridge[T]) enterInbound() bool {
	b.inMu.RLock()
	defer b.inMu.RUnlock()
	if b.inClosed {
		return false
	}
	b.inActive.Add(1)
	return true
}

// waitOrConnClosed waits for done, ctx, or the connection to be closed
// for good (after which nothing more arrives, and nats.go does not close
// the subscriptions' status channels).
func (b *Bridge[T]) waitOrConnClosed(ctx context.Context, done <-chan struct{}) error {
	for !b.nc.IsClosed() {
		select {
		case <-done:
			return nil
		case <-b.closedEv: // the loop checks the state
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func wait(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitGroup waits for wg or ctx. If ctx ends first the helper goroutine
// lingers until wg is done; the shutdown sequence guarantees that it will
// be, because everything waited for is stopped right after (only a
// listener that ignores its context can keep it).
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return wait(ctx, done)
}

// dedupe joins errs, leaving out a bare context error that another error
// already wraps, and repeats.
func dedupe(errs []error) error {
	var out []error
	bare := func(err error) bool {
		return err == context.Canceled || err == context.DeadlineExceeded
	}
	has := func(err error) bool {
		for _, o := range out {
			if errors.Is(o, err) {
				return true
			}
		}
		return false
	}
	for _, err := range errs {
		if !bare(err) && !has(err) {
			out = append(out, err)
		}
	}
	for _, err := range errs {
		if bare(err) && !has(err) {
			out = append(out, err)
		}
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}
