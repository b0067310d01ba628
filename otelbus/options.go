package otelbus

import (
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// An Option configures an [Observer]; pass it to [New].
type Option interface {
	apply(*config) error
}

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

type config struct {
	tp        trace.TracerProvider
	mp        metric.MeterProvider
	events    func(string) string
	listeners func(string) string
}

func buildConfig(opts []Option) (config, error) {
	c := config{}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.apply(&c); err != nil {
			return config{}, err
		}
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.events == nil {
		c.events = Limit(_defaultLimit)
	}
	if c.listeners == nil {
		c.listeners = Limit(_defaultLimit)
	}
	return c, nil
}

// WithTracerProvider sets where spans go. The default is the global
// provider (otel.GetTracerProvider) at the time New is called.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) error {
		if tp == nil {
			return fmt.Errorf("%w: nil TracerProvider", ErrInvalidOption)
		}
		c.tp = tp
		return nil
	})
}

// WithMeterProvider sets where metrics go. The default is the global
// provider (otel.GetMeterProvider) at the time New is called.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) error {
		if mp == nil {
			return fmt.Errorf("%w: nil MeterProvider", ErrInvalidOption)
		}
		c.mp = mp
		return nil
	})
}

// WithEventNames sets how an event name becomes the value of the
// messaging.destination.name metric attribute and the destination in span
// names ("publish <value>", "process <value>"). Spans keep the full name in
// their messaging.destination.name attribute. f is called for every emit and
// delivery, concurrently: it must be safe for concurrent use, fast, and
// return few distinct values, since each is a metric series. The default,
// Limit(100), keeps the first 100 distinct names and maps the others to
// [Other]; [Patterns] maps names to the patterns they match.
func WithEventNames(f func(name string) string) Option {
	return optionFunc(func(c *config) error {
		if f == nil {
			return fmt.Errorf("%w: nil event name mapping", ErrInvalidOption)
		}
		c.events = f
		return nil
	})
}

// WithListenerNames sets how a listener's name becomes the value of the
// messaging.destination.subscription.name metric attribute. Spans keep the
// full name. The same rules as for WithEventNames apply; the default is
// Limit(100).
func WithListenerNames(f func(name string) string) Option {
	return optionFunc(func(c *config) error {
		if f == nil {
			return fmt.Errorf("%w: nil listener name mapping", ErrInvalidOption)
		}
		c.listeners = f
		return nil
	})
}
