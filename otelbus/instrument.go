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
// any T.
type StatsSource interface {
	Stats() eventbus.Stats
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

// Registration reports an EventManager's gauges, and the backlogs of the
// listeners tracked with Track, each time the meter collects, until
// Unregister. Its methods are safe for concurrent use.
type Registration struct {
	o     *Observer
	src   StatsSource
	kvs   []attribute.KeyValue // the manager's name, if any
	attrs metric.MeasurementOption

	mu        sync.Mutex
	listeners map[*eventbus.Listener]struct{}
	reg       metric.Registration // nil once unregistered
}

// Instrument reports m's gauges each time the meter collects:
// eventbus.workers (Stats.Workers), eventbus.workers.stalled (Stalled),
// eventbus.deliveries.queued (Queued) and eventbus.deliveries.running
// (Running), and eventbus.listener.backlog for the listeners tracked with
// the Registration's Track. They are observable up-down counters: counts
// that add up across EventManagers. m is read (Stats) only during
// collection, by the meter's goroutine.
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
// kept. Tracking a listener twice is tracking it once. It fails with
// ErrNilListener (tracking none of ls) or, after Unregister,
// ErrUnregistered.
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

// Untrack stops reporting the listeners' backlogs. Listeners not tracked
// are ignored; a nil one fails with ErrNilListener (untracking none of ls).
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
	ls := make([]*eventbus.Listener, 0, len(r.listeners))
	for l := range r.listeners {
		ls = append(ls, l)
	}
	r.mu.Unlock()

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
