package eventbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"time"

	"github.com/eventbus-go/eventbus/internal/guard"
	"github.com/eventbus-go/eventbus/internal/sched"
)

// _defaultQueueSize bounds each listener's backlog when neither
// WithQueueSize nor QueueSize is given.
const _defaultQueueSize = 4096

// An Option configures an EventManager; pass it to New.
type Option interface {
	apply(*options)
}

type options struct {
	workers    int
	maxWorkers int
	queueSize  int
	overflow   Overflow
	onError    func(context.Context, *ListenerError) // never nil after buildOptions
	logger     *slog.Logger                          // nil: slog.Default() at the time of logging
	middleware []any                                 // each a Middleware[T], checked by RegisterListener
	observer   Observer

	// Test seams, set through export_test.go.
	stallAfter      time.Duration
	idleAfter       time.Duration
	checkInvariants bool
	onSoleMove      func() // called as a listener's sole count moves to soleGone (sole.go)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

func buildOptions(opts []Option) options {
	o := options{
		workers:    runtime.GOMAXPROCS(0),
		maxWorkers: sched.DefaultMaxWorkers,
		queueSize:  _defaultQueueSize,
		stallAfter: sched.DefaultStallAfter,
		idleAfter:  sched.DefaultIdleAfter,
	}
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	if o.onError == nil {
		logger := o.logger
		o.onError = func(ctx context.Context, err *ListenerError) { logFailure(ctx, logger, err) }
	}
	return o
}

// WithWorkers sets how many worker goroutines may run handlers at once for
// Emit, not counting stalled ones (below). The default is
// runtime.GOMAXPROCS(0); n < 1 keeps the default. Workers are started as
// work arrives, each exits after 1 to 2 s with nothing to do (so an idle
// bus holds no goroutine), and all of them exit in Close.
//
// n is also each listener's default limit of invocations at once, stalled
// ones included: a plain listener (no Ordered, OrderedBy or Concurrency
// option) runs at most n, and an OrderedBy listener at most n keys (one
// invocation per key) unless Concurrency sets its limit. Workers take turns
// among the listeners that have work, one batch each, whatever their number
// of keys or backlog; a batch is cut short, its unstarted rest going back to
// the listener, once it has run for one to two stall thresholds (below)
// while another listener waits.
//
// A worker whose handler has not returned for a stall threshold (5 ms)
// while other deliveries wait for a worker is a suspect. It is stalled, and
// another worker started in its place, when its handler is blocked rather
// than computing: the scheduler counts, with runtime/metrics, the
// goroutines of the process that are running or runnable; that many
// suspects may be computing and are left alone, the others are counted
// blocked, and one counted blocked is stalled at the next look (a stall
// threshold later) unless a garbage collection cycle was marking at either
// look or completed around them: a handler that allocates waits for the
// collector at times, and the metrics then count it waiting.
// So handlers that compute run at most n at once (n+1 while a replacement
// starts, as the metrics are approximate), and listeners that block
// (waiting for an acknowledgement, a lock, the network) do not stop the
// others. A suspect is stalled in any case after 1 s (200 thresholds), so
// that other goroutines keeping every CPU busy cannot make a blocked
// listener hold its workers for ever. A stalled worker exits once its
// handler returns if enough workers run without it. The number of worker
// goroutines, stalled included, is bounded by WithMaxWorkers.
func WithWorkers(n int) Option {
	return optionFunc(func(o *options) {
		if n >= 1 {
			o.workers = n
		}
	})
}

// WithMaxWorkers bounds the worker goroutines, stalled ones included (see
// WithWorkers). The default is 256, or the WithWorkers count if that is
// larger; n < 1 keeps the default. Once n workers exist and every one is
// stalled, deliveries wait until a handler returns: listeners that all
// block forever can still stop the pool, but only n of them at once. The
// pool's goroutines are these workers plus, at moments, the callbacks of its
// three timers (stall watchdog, retry backoffs, idle workers), each of
// which takes the pool's lock, does a few steps and returns.
func WithMaxWorkers(n int) Option {
	return optionFunc(func(o *options) {
		if n >= 1 {
			o.maxWorkers = n
		}
	})
}

// WithQueueSize bounds each listener's backlog: the deliveries accepted for
// it by Emit that wait to run, including those waiting out a retry backoff.
// The default is 4096; n < 1 keeps the default; QueueSize overrides it for
// one listener. A full backlog pushes back only on the emits that match that
// listener, as its Overflow policy says (WithOverflow; by default Emit waits
// and TryEmit fails with ErrQueueFull); emits to other listeners are neither
// delayed nor failed.
//
// An Emit made on a worker goroutine (from inside a handler of any
// EventManager, whatever context it passes) never waits: it may fill a
// waiting listener's backlog up to 2n, then fails with ErrQueueFull
// (TryEmit, which never waits anyway, fails at n).
//
// Not counted: deliveries a worker has taken in its batch (at most 64 per
// running batch) and invocations running. So a listener holds at most n (2n
// with the reserve) deliveries, plus 64 for each invocation it may run at
// once.
func WithQueueSize(n int) Option {
	return optionFunc(func(o *options) {
		if n >= 1 {
			o.queueSize = n
		}
	})
}

// Overflow is what an emit does when a listener it matches has a full
// backlog (see WithQueueSize).
type Overflow uint8

const (
	// OverflowWait makes Emit wait for room (until its context ends) and
	// TryEmit fail with ErrQueueFull; nothing is delivered until the event
	// is accepted for every listener. The default.
	OverflowWait Overflow = iota
	// OverflowFail makes every emit, Emit included, fail at once with
	// ErrQueueFull; nothing is delivered to any listener.
	OverflowFail
	// OverflowDropNewest drops the new event for this listener only (the
	// others get it): the emit succeeds, the drop is counted in
	// Stats.Dropped and reported to the error handler as a *ListenerError
	// matching ErrDropped.
	OverflowDropNewest
	// OverflowDropOldest drops, for this listener only, the oldest delivery
	// queued with the same key (OrderedBy) or at all, to make room for the
	// new one; if that key has nothing queued, the new one is dropped. A
	// backlog can be past its bound (a retry with no backoff, or the rest of
	// a batch that yielded, goes back to it whatever its size): the emit
	// then drops as many of the oldest as it takes to make room, and the
	// new one too if that key runs out first. Drops are counted and reported
	// as for OverflowDropNewest, one each.
	OverflowDropOldest
)

func (o Overflow) valid() bool { return o <= OverflowDropOldest }

// String names the policy.
func (o Overflow) String() string {
	switch o {
	case OverflowWait:
		return "wait"
	case OverflowFail:
		return "fail"
	case OverflowDropNewest:
		return "drop newest"
	case OverflowDropOldest:
		return "drop oldest"
	}
	return fmt.Sprintf("Overflow(%d)", uint8(o))
}

// WithOverflow sets what emits do when a listener's backlog is full, for
// every listener that does not say otherwise with OnOverflow. The default
// is OverflowWait; an unknown value keeps it.
func WithOverflow(p Overflow) Option {
	return optionFunc(func(o *options) {
		if p.valid() {
			o.overflow = p
		}
	})
}

// ErrorHandler is the type set of the functions WithErrorHandler takes:
// func(ctx context.Context, err *ListenerError), the one to write, or
// func(err error), the older form, which gets the same *ListenerError as an
// error and no context.
type ErrorHandler interface {
	func(context.Context, *ListenerError) | func(error)
}

// WithErrorHandler sets the function that receives every asynchronous
// delivery failure (a pool listener's error or panic after its last
// attempt, a delivery dropped by an overflow policy): a *ListenerError,
// whose Handle, Event and Data let it park the event in a dead-letter store
// and replay it to that listener alone with EmitTo, and the delivery's
// context. That context is the one the handler got (the emitter's values,
// the listener's name; see Emit), so a logger that reads trace IDs from the
// context puts them on the dead-letter line; a dropped delivery has the
// context it was emitted with.
//
//	eventbus.WithErrorHandler(func(ctx context.Context, lerr *eventbus.ListenerError) {
//		slog.WarnContext(ctx, "dead letter", "listener", lerr.Listener, "err", lerr.Err)
//		deadLetters.Park(lerr) // later: m.EmitTo(ctx, lerr.Handle, lerr.Event, lerr.Data)
//	})
//
// It is called from worker goroutines and emitting ones (drops), possibly
// concurrently, never with a lock of the EventManager held, and must not
// block for long; a panic in it is logged (see WithLogger) and goes no
// further. Failures returned by EmitSync do not reach it. The default logs
// each failure (see WithLogger). A nil f keeps the default.
func WithErrorHandler[F ErrorHandler](f F) Option {
	var h func(context.Context, *ListenerError)
	switch f := any(f).(type) {
	case func(context.Context, *ListenerError):
		h = f
	case func(error):
		if f != nil {
			h = func(_ context.Context, err *ListenerError) { f(err) }
		}
	}
	return optionFunc(func(o *options) {
		if h != nil {
			o.onError = h
		}
	})
}

// WithLogger sets where failures go when no error handler takes them
// (WithErrorHandler replaces the logging): one Error record per failure,
// with the event, the listener's name and pattern, the attempts, the error,
// and for a panic its stack, as attributes. Each record is logged with the
// delivery's context (slog's LogAttrs(ctx, ...)), so a handler that reads
// the context, such as otelbus.LogHandler, adds the trace_id and span_id of
// the span the emitter's context carried. The default, and a nil l, is
// slog.Default() as it is at the time of logging. The logger also gets the
// panics of an error handler.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) {
		if l != nil {
			o.logger = l
		}
	})
}

// Middleware wraps a Handler, for logging, tracing, metrics or checks. It is
// applied once, when a listener is registered.
type Middleware[T any] func(next Handler[T]) Handler[T]

// WithMiddleware adds middleware applied to every listener registered on the
// EventManager, outermost first, around any listener's own Use middleware.
// T must be the EventManager's data type, and no middleware nil, or
// RegisterListener (and Topic.Listen) fails with ErrInvalidOption.
func WithMiddleware[T any](mw ...Middleware[T]) Option {
	return optionFunc(func(o *options) {
		for _, m := range mw {
			o.middleware = append(o.middleware, m)
		}
	})
}

// A ListenerOption configures one listener; pass it to RegisterListener.
type ListenerOption interface {
	applyListener(*listenerConfig)
}

type listenerConfig struct {
	once        bool
	priority    int
	ordered     bool
	key         any // func(Event[T]) string
	concurrency int
	timeout     time.Duration
	retry       *retryPolicy
	middleware  []any // each a Middleware[T]
	name        string
	queueSize   int
	overflow    Overflow
	overflowSet bool
	err         error

	tied bool // CancelWithEmitter

	// self is the Listener to register, made early when the handler's
	// guard (see unlessUnregistered) needs it; guarded: the guard is in.
	self    *Listener
	guarded bool
}

// listener returns the Listener the configuration will register.
func (c *listenerConfig) listener() *Listener {
	if c.self == nil {
		c.self = new(Listener)
	}
	return c.self
}

type listenerOptionFunc func(*listenerConfig)

func (f listenerOptionFunc) applyListener(c *listenerConfig) { f(c) }

func (c *listenerConfig) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
	}
}

// listenerConfigOf applies opts; a failed option is in the result's err.
func listenerConfigOf(opts []ListenerOption) listenerConfig {
	var cfg listenerConfig
	for _, o := range opts {
		if o != nil {
			o.applyListener(&cfg)
		}
	}
	return cfg
}

// Name names the listener, for its errors (ListenerError.Listener and the
// message), the default log line, Listener.Name and Listener.Stats, and the
// handler and its middleware (ListenerName reads it from their context).
// Names need not be unique. Without Name a listener is named after its
// pattern and its registration number on the EventManager
// ("order.created#3"), which does not change. An empty name fails with
// ErrInvalidOption.
func Name(name string) ListenerOption {
	return listenerOptionFunc(func(c *listenerConfig) {
		if name == "" {
			c.fail("Name(\"\"): a listener name must not be empty")
			return
		}
		c.name = name
	})
}

// QueueSize bounds this listener's backlog to n deliveries (n ≥ 1), in
// place of the EventManager's WithQueueSize.
func QueueSize(n int) ListenerOption {
	return listenerOptionFunc(func(c *listenerConfig) {
		if n < 1 {
			c.fail("QueueSize(%d): must be at least 1", n)
			return
		}
		c.queueSize = n
	})
}

// OnOverflow sets what emits do when this listener's backlog is full, in
// place of the EventManager's WithOverflow.
func OnOverflow(p Overflow) ListenerOption {
	return listenerOptionFunc(func(c *listenerConfig) {
		if !p.valid() {
			c.fail("OnOverflow(%v): unknown policy", p)
			return
		}
		c.overflow, c.overflowSet = p, true
	})
}

// Once makes the listener run at most once: the first delivery to start
// runs it and takes it out of the registry; every other delivery, including
// concurrent ones, is skipped. With Retry, that one delivery is still retried
// until it succeeds or runs out of attempts, unless Unregister is called.
func Once() ListenerOption {
	return listenerOptionFunc(func(c *listenerConfig) { c.once = true })
}

// Priority orders listeners of the same event: higher runs first. Listeners
// of equal priority run in registration order. EmitSync follows it strictly.
// Emit queues an event's deliveries in priority order, but every listener
// runs on its own schedule, concurrently with the others, so under Emit
// priority says nothing about which handler starts or finishes first. The
// default is 0.
func Priority(n int) ListenerOption {
	return listenerOptionFunc(func(c *listenerConfig) { c.priority = n })
}

// Ordered makes Emit deliver to this listener one event at a time, in the
// order the events were accepted by Emit (for one emitting goroutine, the
// order of its calls). Its backlog waits in its own bounded queue, so a slow
// ordered listener holds one worker at most and other listeners keep
// running.
func Ordered() ListenerOption {
	return listenerOptionFunc(func(c *listenerConfig) { c.ordered = true })
}

// OrderedBy makes Emit deliver events with the same key to this listener one
// at a time and in the order they were accepted, while events with different
// keys run concurrently: at most n keys at once under Concurrency(n), else
// at most WithWorkers, stalled invocations included; ready keys take turns,
// and the listener takes one turn among the others however many keys it has
// ready. key is called by
// Emit, in the emitting goroutine, once per event; it must be fast and must
// not block. T must be the EventManager's data type, or RegisterListener
// fails with ErrInvalidOption.
func OrderedBy[T any](key func(Event[T]) string) ListenerOption {
	return listenerOptionFunc(func(c *listenerConfig) {
		if key == nil {
			c.fail("OrderedBy: nil key function")
			return
		}
		c.key = key
	})
}

// Concurrency limits how many invocations of this listener run at once
// through Emit to n (n ≥ 1). Deliveries beyond the limit wait in the
// listener's mailbox without holding a worker, and start in the order they
// were accepted; with n > 1 they may finish in any order. Concurrency(1)
// alone therefore behaves like Ordered. With OrderedBy, n bounds the number
// of keys in flight (WithWorkers by default). The limit counts stalled
// invocations too (see WithWorkers).
func Concurrency(n int) ListenerOption {
	return listenerOptionFunc(func(c *listenerConfig) {
		if n < 1 {
			c.fail("Concurrency(%d): must be at least 1", n)
			return
		}
		c.concurrency = n
	})
}

// Timeout gives each invocation of the listener a context that ends after
// d. An invocation that is still running when d has passed is reported as a
// failure whose error matches context.DeadlineExceeded, whatever the Handler
// returns; the Handler is not interrupted, so it should watch ctx.Done().
func Timeout(d time.Duration) ListenerOption {
	return listenerOptionFunc(func(c *listenerConfig) {
		if d <= 0 {
			c.fail("Timeout(%v): must be positive", d)
			return
		}
		c.timeout = d
	})
}

// Retry runs a failing invocation (an error, a panic, or, on the pool, a
// call of runtime.Goexit) again, up to retries more
// times (RetryForever: until it succeeds), waiting between attempts an
// exponential backoff that starts at initial, doubles each time up to max,
// and is randomised (jitter) to between half and all of that; with initial
// and max both 0 the retry is queued again at once, first in its listener's
// backlog. Backoffs are timers, not sleeping workers, and count against the
// listener's backlog (WithQueueSize). Only the last failure reaches the
// error handler, as a *ListenerError whose Attempts field counts the runs.
// With Ordered or OrderedBy the listener's next event (for that key) waits
// until the retried one has succeeded or given up; with Concurrency(n > 1)
// the listener's other events go on meanwhile. A retried delivery still
// counts against Flush and Close, unless Close gives up waiting: then no
// further attempt is made; so with RetryForever a delivery that never
// succeeds holds up a graceful Close until its context ends, or until
// Unregister (which skips its next attempt). Retry applies to Emit; EmitSync
// runs each listener once.
func Retry(retries int, initial, max time.Duration) ListenerOption {
	return listenerOptionFunc(func(c *listenerConfig) {
		if (retries < 1 && retries != RetryForever) || initial < 0 || max < initial || (initial == 0 && max != 0) {
			c.fail("Retry(%d, %v, %v): need retries ≥ 1 or RetryForever, and 0 < initial ≤ max or both 0", retries, initial, max)
			return
		}
		c.retry = &retryPolicy{retries: retries, initial: initial, max: max}
	})
}

// Use wraps this listener's Handler in middleware, outermost first, inside
// any middleware given to the EventManager with WithMiddleware. T must be the
// EventManager's data type, or RegisterListener fails with
// ErrInvalidOption.
func Use[T any](mw ...Middleware[T]) ListenerOption {
	return listenerOptionFunc(func(c *listenerConfig) {
		for _, m := range mw {
			if m == nil {
				c.fail("Use: nil middleware")
				return
			}
			c.middleware = append(c.middleware, m)
		}
	})
}

// handlerFor applies the configuration's middleware and timeout to h for an
// EventManager of data type T.
func handlerFor[T any](h Handler[T], c *listenerConfig, managerMW []any) (Handler[T], error) {
	chain := make([]Middleware[T], 0, len(managerMW)+len(c.middleware))
	for _, list := range [][]any{managerMW, c.middleware} {
		for _, m := range list {
			mw, ok := m.(Middleware[T])
			if !ok {
				return nil, fmt.Errorf("%w: middleware %T for a listener of %s", ErrInvalidOption, m, reflect.TypeFor[T]())
			}
			if mw == nil { // WithMiddleware's (Use refuses its own)
				return nil, fmt.Errorf("%w: WithMiddleware: nil middleware", ErrInvalidOption)
			}
			chain = append(chain, mw)
		}
	}
	if len(chain) > 0 && !c.guarded {
		h = unlessUnregistered(h, c.listener())
		c.guarded = true
	}
	if c.timeout > 0 {
		h = withTimeout(h, c.timeout)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		h = chain[i](h)
		if h == nil {
			return nil, fmt.Errorf("%w: middleware returned a nil handler", ErrInvalidOption)
		}
	}
	return h, nil
}

// unlessUnregistered keeps h, the listener's own handler, from starting once
// Unregister has returned, when middleware stands between the delivery's
// check (entry.call) and h: middleware entered before Unregister may call
// next after it. The delivery then counts as skipped (see ErrUnregistered).
// Listeners without middleware need no guard, and pay nothing.
func unlessUnregistered[T any](h Handler[T], l *Listener) Handler[T] {
	return func(ctx context.Context, e Event[T]) error {
		if l.removed.Load() {
			return errSkippedByGuard
		}
		return h(ctx, e)
	}
}

// errSkippedByGuard is what unlessUnregistered returns: it matches
// ErrUnregistered, for middleware, and tells the guard's skip from a
// handler's own error that matches ErrUnregistered too (EmitSyncTo's, to
// a listener that has gone), which is a failure like any other.
var errSkippedByGuard error = &guard.Skipped{Err: ErrUnregistered}

// withTimeout gives each call its own deadline; an overrun is an error that
// matches context.DeadlineExceeded even if the handler ignored it. The
// overrun is judged against the clock, not ctx.Err(): the context is marked
// done only once its timer has run, which under CPU load can be long after
// the deadline.
func withTimeout[T any](h Handler[T], d time.Duration) Handler[T] {
	return func(ctx context.Context, e Event[T]) error {
		deadline := time.Now().Add(d)
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		err := h(ctx, e)
		if !time.Now().Before(deadline) && !errors.Is(err, context.DeadlineExceeded) {
			if err == nil {
				return fmt.Errorf("eventbus: handler overran its %v timeout: %w", d, context.DeadlineExceeded)
			}
			return fmt.Errorf("eventbus: handler overran its %v timeout: %w (and returned: %w)", d, context.DeadlineExceeded, err)
		}
		return err
	}
}
