package eventbus

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/eventbus-go/eventbus/internal/sched"
)

// The pool: Emit's deliveries run on the scheduler of internal/sched, which
// knows a listener only as a sched.Listener and its settings as a
// sched.Config. This file is the glue: an entry is the scheduler's
// listener (it runs one delivery, or for a lean listener a whole batch, and
// counts and reports those that fail or do not run), its options become a
// Config once, at registration, and the scheduler's errors become the
// package's (ErrClosed, ErrQueueFull, ErrReentrant) with the same
// messages.
//
// A delivery carries a *nameCtx, the context its handler gets, when the
// emit's context carries values (see names); otherwise nil, and the handler
// gets the listener's poolCtx.

// The entry is its pool's listener, and runs a lean listener's batches
// itself (RunBatch).
var _ sched.Listener[Event[int], nameCtx] = (*entry[int])(nil)

// newPool makes the scheduler of an EventManager configured by o, which
// reports failures to report.
func newPool[T any](o *options, report func(error)) *sched.Scheduler[Event[T], nameCtx] {
	return sched.New[Event[T], nameCtx](sched.Options{
		Workers:         o.workers,
		MaxWorkers:      o.maxWorkers,
		QueueSize:       o.queueSize,
		Overflow:        sched.Overflow(o.overflow),
		StallAfter:      o.stallAfter,
		IdleAfter:       o.idleAfter,
		Report:          report,
		Observed:        o.observer != nil,
		CheckInvariants: o.checkInvariants,
	})
}

// The scheduler's overflow policies are the package's, value for value.
var _ = [1]struct{}{}[sched.OverflowDropOldest-sched.Overflow(OverflowDropOldest)]

// schedConfig is the scheduling configuration of a listener of pattern
// configured by cfg; keyed says it is OrderedBy.
func schedConfig(pattern string, cfg *listenerConfig, keyed bool) sched.Config {
	return sched.Config{
		Name:        pattern,
		Ordered:     cfg.ordered,
		Keyed:       keyed,
		Concurrency: cfg.concurrency,
		QueueSize:   cfg.queueSize,
		Overflow:    sched.Overflow(cfg.overflow),
		OverflowSet: cfg.overflowSet,
	}
}

// names returns the contexts of the listeners to of an event whose
// listeners' context (see listenerContext) is lctx, for the scheduler to
// carry with each delivery: one per listener, made in one allocation rather
// than one per delivery. Its callers call it only when lctx carries values
// (it is not the pool's context); otherwise deliveries carry none, and the
// handlers get their poolCtx.
func (m *EventManager[T]) names(lctx context.Context, to []*entry[T]) []nameCtx {
	names := make([]nameCtx, len(to))
	for i, e := range to {
		names[i] = nameCtx{Context: lctx, l: e.l}
	}
	return names
}

// acceptError turns an error of the scheduler's Accept into the package's.
func acceptError(err error) error {
	if err == sched.ErrClosed {
		return ErrClosed
	}
	if q, ok := err.(*sched.QueueFullError); ok {
		if q.Err != nil { // a wait for room ended with its context
			return fmt.Errorf("%w: %w", ErrQueueFull, q.Err)
		}
		return queueFullError{q} // no allocation: see queueFullError
	}
	return err
}

// flushError is Flush's error, from the scheduler's.
func flushError(err error) error {
	switch err {
	case nil:
		return nil
	case sched.ErrReentrant:
		err = ErrReentrant
	}
	return fmt.Errorf("eventbus: flush: %w", err)
}

// closeError is Close's error, from the scheduler's Close.
func closeError(abandoned uint64, running int, err error) error {
	switch err {
	case nil:
		return nil
	case sched.ErrReentrant:
		return fmt.Errorf("eventbus: close: %w: the shutdown has started; the pool drains and its workers exit by themselves", ErrReentrant)
	}
	return fmt.Errorf("eventbus: close: %w: %d deliveries abandoned, %d in workers' hands (abandoned unless already running)", err, abandoned, running)
}

// quiesceError is UnregisterAndWait's error, from the scheduler's Quiesce.
func quiesceError(err error) error {
	switch err {
	case nil:
		return nil
	case sched.ErrReentrant:
		return fmt.Errorf("eventbus: unregister and wait: %w: called from the listener's own handler", ErrReentrant)
	}
	return fmt.Errorf("eventbus: unregister and wait: %w", err)
}

// poolStats is the pool's part of Stats.
func poolStats(p sched.Stats) Stats {
	return Stats{
		Emitted:   p.Emitted,
		Matched:   p.Matched,
		Delivered: p.Delivered,
		Failed:    p.Failed,
		Panicked:  p.Panicked,
		Skipped:   p.Skipped,
		Dropped:   p.Dropped,
		Abandoned: p.Abandoned,
		Retried:   p.Retried,
		Queued:    p.Queued,
		Running:   p.Running,
	}
}

// poolContext returns the context of a delivery to e that carries named
// (nil: the emit's context carried no values).
func (e *entry[T]) poolContext(named *nameCtx) context.Context {
	if named != nil {
		return named
	}
	return e.poolCtx
}

// Deliver runs one pool delivery (sched.Listener). It reports Retry when
// the delivery failed and must be run again (mayRetry is false once Close
// has given up); otherwise it counts the outcome for the listener, but for
// delivered (counted per batch, see Delivered), and returns the failure to
// report, if any. The batches of a lean listener (see entry.lean) do not
// come here: RunBatch runs them.
func (e *entry[T]) Deliver(named *nameCtx, ev Event[T], attempt int, accepted int64, mayRetry bool) (sched.Result, error) {
	ctx := e.poolContext(named)
	again := mayRetry && e.retry != nil && e.retry.again(attempt)
	hctx := ctx
	if e.tied { // CancelWithEmitter
		var untie context.CancelFunc
		hctx, untie = tie(ctx)
		defer untie()
	}
	oc, err := e.call(hctx, ev, attempt, accepted, !again)
	if oc == delivered {
		return sched.Delivered, nil
	}
	if (oc == failed || oc == panicked) && again {
		e.l.counts.add(cRetried, 1)
		return sched.Retry, nil
	}
	return e.settle(ctx, ev, attempt, oc, err)
}

// RunBatch runs a batch of a lean listener (sched.Listener): one with
// nothing to do around its handler (no Retry, Once, Observer or
// CancelWithEmitter), the common case. Other listeners decline, and their
// deliveries go through Deliver. Its handler is called directly, with the
// context the delivery carries (already named for the listener), as
// EmitSync's callAll does: runLean runs the batch under one deferred
// recover; when a handler panics it returns, RunBatch settles that delivery
// (counted and reported as a *ListenerError, with the panic's stack) and
// calls runLean again for the rest, so that a later panic's stack does not
// show the frames of an earlier one. Each delivery is a first and final
// attempt. A handler that calls runtime.Goexit ends the worker's goroutine:
// the scheduler counts that delivery as failed (Exited) and hands the rest
// of the batch back.
func (e *entry[T]) RunBatch(b *sched.Batch[Event[T], nameCtx]) bool {
	if !e.lean {
		return false
	}
	for {
		oc, err, more := e.runLean(b)
		if !more {
			return true
		}
		if oc == delivered {
			// panic(nil) under GODEBUG=panicnil=1, which recovers as nil:
			// delivered, as on EmitSync (see recovered). Next counts it.
			continue
		}
		e.settleCurrent(b, oc, err)
	}
}

// runLean runs the deliveries of b from the next one on, while their
// handlers return, and reports more false once b is over. A delivery whose
// handler returns an error, and one to a listener that was unregistered
// meanwhile (skipped, as Deliver would), is settled here. When a handler
// panics, runLean recovers it once and returns, with more true and the
// outcome of the panic (see recovered): that delivery, b.Current(), is not
// settled yet. The loop keeps only b and the delivery's context live
// across the handler call: what a failure needs is read again from b
// (settleCurrent), off the common path.
func (e *entry[T]) runLean(b *sched.Batch[Event[T], nameCtx]) (oc outcome, err error, more bool) {
	// calling says that a panic is a handler's: it is recovered only then
	// (a call into the runtime). It stays true between deliveries, as
	// nothing else there can panic (Next, the checks, the copy of the
	// event), and is false only while a delivery that did not deliver is
	// settled (failedWith may call an error's Is method; the settling may
	// call the error handler) and once b is over.
	calling := true
	defer func() {
		if calling {
			oc, err = recovered(recover())
			more = true
		}
	}()
	pctx, l := context.Context(e.poolCtx), e.l
	for {
		named, ev := b.Next() // inlined: see sched.Batch.Next
		if ev == nil {
			calling = false
			return delivered, nil, false
		}
		ctx := pctx
		if named != nil {
			ctx = named
		}
		if l.removed.Load() {
			calling = false
			e.settleCurrent(b, skipped, nil)
			calling = true
			continue
		}
		if herr := e.h(ctx, *ev); herr != nil {
			calling = false
			oc, herr := e.failedWith(herr)
			e.settleCurrent(b, oc, herr)
			calling = true
		}
	}
}

// settleCurrent settles the delivery of b that Next returned last, which
// did not deliver (outcome oc, error err).
func (e *entry[T]) settleCurrent(b *sched.Batch[Event[T], nameCtx], oc outcome, err error) {
	named, ev := b.Current()
	b.Settle(e.settle(e.poolContext(named), *ev, 0, oc, err))
}

// settle counts a pool delivery that did not deliver and will not be
// retried (outcome oc, error err), made with ctx, and returns its result
// and the failure to report, if any.
func (e *entry[T]) settle(ctx context.Context, ev Event[T], attempt int, oc outcome, err error) (sched.Result, error) {
	var c counters // the scheduler counts its own
	lerr := e.count(ev, oc, err, attempt, &c)
	if lerr == nil {
		return sched.Skipped, nil
	}
	lerr.ctx = e.named(ctx)
	if oc == panicked {
		return sched.Panicked, lerr
	}
	return sched.Failed, lerr
}

// Delivered counts n deliveries of a batch that were delivered.
func (e *entry[T]) Delivered(n uint64) { e.l.counts.add(cDelivered, n) }

// Skipped counts n deliveries whose retry was dropped by Unregister.
func (e *entry[T]) Skipped(n uint64) { e.l.counts.add(cSkipped, n) }

// Dropped counts a delivery dropped by the listener's overflow policy and
// returns its error.
func (e *entry[T]) Dropped(named *nameCtx, ev Event[T], attempt int, backlog int) error {
	e.l.counts.add(cDropped, 1)
	lerr := e.failureIn(e.poolContext(named), ev, attempt, fmt.Errorf("%w (%d queued, policy %v)", ErrDropped, backlog, e.overflow))
	lerr.Attempts = attempt
	return lerr
}

// Exited counts a delivery whose handler called runtime.Goexit as failed
// and returns its error.
func (e *entry[T]) Exited(named *nameCtx, ev Event[T], attempt int, mayRetry bool) (sched.Result, error) {
	if mayRetry && e.retry != nil && e.retry.again(attempt) { // as Deliver decided before the call
		e.l.counts.add(cRetried, 1)
		return sched.Retry, nil
	}
	return e.settle(e.poolContext(named), ev, attempt, failed, errGoexit)
}

// Lost tells the observer of a delivery that does not run. On the pool's
// own goroutines (workers, the retry timer) a panic in Observer.Lost is
// recovered and reported to the error handler, as the listener's, instead
// of ending the process; elsewhere it is the caller's.
func (e *entry[T]) Lost(named *nameCtx, ev Event[T], attempt int, accepted int64, why sched.Loss, onPool bool) {
	if e.obs == nil {
		return
	}
	d := e.describe(e.poolContext(named), ev, attempt, accepted)
	if onPool {
		defer e.m.recoverLost(d.Event, d.Listener)
	}
	o := OutcomeAbandoned
	switch why {
	case sched.LostSkipped:
		o = OutcomeSkipped
	case sched.LostDropped:
		o = OutcomeDropped
	}
	e.obs.Lost(d.ctx, d, o)
}

// Backoff is the listener's retry backoff after attempt+1 failed attempts.
func (e *entry[T]) Backoff(attempt int) time.Duration { return e.retry.backoff(attempt) }

// Removed reports whether the listener was unregistered.
func (e *entry[T]) Removed() bool { return e.l.removed.Load() }

// recoverLost, deferred around a call to Observer.Lost on the pool, reports
// its panic to the error handler.
func (m *EventManager[T]) recoverLost(event string, l *Listener) {
	if r := recover(); r != nil {
		m.report(fmt.Errorf("eventbus: observer Lost panicked for a delivery of %q to listener %q: %w", event, l.Name(), &PanicError{Value: r, Stack: debug.Stack()}))
	}
}
