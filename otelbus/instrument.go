package otelbus

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	"github.com/eventbus-go/eventbus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// StatsSource is what Instrument reads: an *eventbus.EventManager[T] of
// any T. If it is also a [ListenerSource], as an EventManager is, the
// backlog of each of its listeners is reported.
type StatsSource interface {
	Stats() eventbus.Stats
}

// ListenerSource lists listeners whose backlogs Instrument reports: an
// *eventbus.EventManager[T] of any T (EventManager.Listeners). Listeners
// must return a snapshot of the listeners registered now and be safe to call
// from the meter's goroutine.
type ListenerSource interface {
	Listeners() []*eventbus.Listener
}

// An InstrumentOption configures [Observer.Instrument].
type InstrumentOption interface {
	applyInstrument(*instrumentConfig) error
}

type instrumentOptionFunc func(*instrumentConfig) error

func (f instrumentOptionFunc) applyInstrument(c *instrumentConfig) error { return f(c) }

type instrumentConfig struct {
	name string
}

// ManagerName sets the eventbus.manager.name attribute of the
// EventManager's gauges. Without it they have no such attribute, which is
// fine for one instrumented EventManager; several need distinct names, or
// their gauges are reported under the same attributes. An empty name fails
// with ErrInvalidOption.
func ManagerName(name string) InstrumentOption {
	return instrumentOptionFunc(func(c *instrumentConfig) error {
		if name == "" {
			return fmt.Errorf("%w: empty manager name", ErrInvalidOption)
		}
		c.name = name
		return nil
	})
}

// Registration reports an EventManager's gauges, and the backlogs of its
// listeners, each time the meter collects, until Unregister. Its methods
// are safe for concurrent use.
type Registration struct {
	o     *Observer
	src   StatsSource
	ls    ListenerSource       // src, if it lists its listeners; else nil
	kvs   []attribute.KeyValue // the manager's name, if any
	attrs metric.MeasurementOption

	mu        sync.Mutex                      // guards listeners and reg
	listeners map[*eventbus.Listener]struct{} // tracked with Track
	reg       metric.Registration             // nil once unregistered
}

// Instrument reports m's gauges each time the meter collects:
// eventbus.workers (Stats.Workers), eventbus.workers.stalled (Stalled),
// eventbus.deliveries.queued (Queued) and eventbus.deliveries.running
// (Running), and eventbus.listener.backlog (Listener.Stats().Pending) for
// every listener registered on m at the time of collection
// (EventManager.Listeners, see [ListenerSource]), under its mapped name (see
// WithListenerNames: listeners that map to the same name are summed, so the
// gauge has at most as many series as the mapping has values). A listener
// leaves the gauge once unregistered. They are observable up-down counters:
// counts that add up across EventManagers. m is read (Stats, Listeners and
// each listener's Stats) only during collection, by the meter's goroutine.
//
// Instrument fails with ErrNilManager for a nil m, ErrInvalidOption for a
// bad option, or the meter's error. m need not have been created with this
// Observer, though the counters and spans come only from the Observer
// passed to eventbus.WithObserver. Call Unregister before dropping m.
func (o *Observer) Instrument(m StatsSource, opts ...InstrumentOption) (*Registration, error) {
	if m == nil {
		return nil, fmt.Errorf("instrument: %w", ErrNilManager)
	}
	if v := reflect.ValueOf(m); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil, fmt.Errorf("instrument: %w", ErrNilManager)
	}
	var cfg instrumentConfig
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt.applyInstrument(&cfg); err != nil {
			return nil, fmt.Errorf("instrument: %w", err)
		}
	}
	r := &Registration{o: o, src: m, listeners: map[*eventbus.Listener]struct{}{}}
	r.ls, _ = m.(ListenerSource)
	if cfg.name != "" {
		r.kvs = []attribute.KeyValue{ManagerKey.String(cfg.name)}
	}
	r.attrs = metric.WithAttributeSet(attribute.NewSet(r.kvs...))
	in := &o.in
	reg, err := o.cfg.mp.Meter(ScopeName).RegisterCallback(r.observe, in.backlog, in.workers, in.stalled, in.queued, in.running)
	if err != nil {
		return nil, fmt.Errorf("instrument: %w", err)
	}
	r.reg = reg
	return r, nil
}

// Track adds the listeners' backlogs (Listener.Stats().Pending) to the
// eventbus.listener.backlog gauge, under the listener's mapped name (see
// WithListenerNames; listeners that map to the same name are summed). A
// listener stays tracked until Untrack or Unregister, even once it is
// unregistered from its EventManager: untrack it then, or its memory is
// kept. Tracking a listener twice, or one that the instrumented
// EventManager lists anyway, is counting it once. It fails with
// ErrNilListener (tracking none of ls) or, after Unregister,
// ErrUnregistered.
//
// Deprecated: Instrument reports the backlog of every listener of an
// EventManager without Track; remove the calls. Track is still needed only
// for a StatsSource that is not a ListenerSource, or for a listener of
// another EventManager (whose backlog is then reported under this one's
// manager name).
func (r *Registration) Track(ls ...*eventbus.Listener) error {
	for _, l := range ls {
		if l == nil {
			return fmt.Errorf("track: %w", ErrNilListener)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reg == nil {
		return fmt.Errorf("track: %w", ErrUnregistered)
	}
	for _, l := range ls {
		r.listeners[l] = struct{}{}
	}
	return nil
}

// Untrack stops reporting the listeners' backlogs as tracked ones (a
// listener the EventManager lists is still reported). Listeners not tracked
// are ignored; a nil one fails with ErrNilListener (untracking none of ls).
//
// Deprecated: needed only with Track.
func (r *Registration) Untrack(ls ...*eventbus.Listener) error {
	for _, l := range ls {
		if l == nil {
			return fmt.Errorf("untrack: %w", ErrNilListener)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range ls {
		delete(r.listeners, l)
	}
	return nil
}

// Unregister stops reporting the EventManager's gauges and untracks every
// listener. A collection already running may still report them once. It is
// idempotent; it returns the meter's error, if any, the first time.
func (r *Registration) Unregister() error {
	r.mu.Lock()
	reg := r.reg
	r.reg = nil
	clear(r.listeners)
	r.mu.Unlock()
	if reg == nil {
		return nil
	}
	return reg.Unregister()
}

// observe is the meter's callback.
func (r *Registration) observe(_ context.Context, ob metric.Observer) error {
	r.mu.Lock()
	if r.reg == nil {
		r.mu.Unlock()
		return nil
	}
	tracked := make([]*eventbus.Listener, 0, len(r.listeners))
	for l := range r.listeners {
		tracked = append(tracked, l)
	}
	r.mu.Unlock()
	var ls []*eventbus.Listener
	if r.ls != nil {
		ls = r.ls.Listeners() // a new slice, ours to append to
	}
	if len(tracked) > 0 { // a listener both listed and tracked counts once
		seen := make(map[*eventbus.Listener]struct{}, len(ls))
		for _, l := range ls {
			seen[l] = struct{}{}
		}
		for _, l := range tracked {
			if _, ok := seen[l]; !ok {
				ls = append(ls, l)
			}
		}
	}

	in := &r.o.in
	s := r.src.Stats()
	ob.ObserveInt64(in.workers, int64(s.Workers), r.attrs)
	ob.ObserveInt64(in.stalled, int64(s.Stalled), r.attrs)
	ob.ObserveInt64(in.queued, int64(s.Queued), r.attrs)
	ob.ObserveInt64(in.running, int64(s.Running), r.attrs)

	backlog := make(map[string]int64, len(ls))
	for _, l := range ls {
		backlog[r.o.cfg.listeners(listenerName(l))] += int64(l.Stats().Pending)
	}
	for name, n := range backlog {
		kvs := append(r.kvs[:len(r.kvs):len(r.kvs)], systemKV, semconv.MessagingDestinationSubscriptionName(name))
		ob.ObserveInt64(in.backlog, n, metric.WithAttributes(kvs...))
	}
	return nil
}
