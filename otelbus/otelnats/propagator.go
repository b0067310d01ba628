// Package otelnats carries OpenTelemetry trace context across NATS for
// natsbus bridges: its [Propagator] writes the W3C traceparent and
// tracestate headers on every message a bridge publishes and restores them
// on the receiving bridge, so that the receiving side's spans (the
// "publish" of the inbound event, then every "process") join the sender's
// trace. Pass it to natsbus.WithPropagator on both sides:
//
//	prop := natsbus.WithPropagator(otelnats.Propagator())
//	bridge, err := natsbus.New(ctx, m, nc, natsbus.Outbound("order.>"), prop)
//
// It is a package of its own so that otelbus itself does not import NATS,
// and it needs only nats.go's Header type, not natsbus.
package otelnats

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// HeaderPropagator implements natsbus.Propagator with an OpenTelemetry
// TextMapPropagator. It is safe for concurrent use.
type HeaderPropagator struct {
	p propagation.TextMapPropagator
}

// An Option configures a HeaderPropagator.
type Option func(*HeaderPropagator)

// WithTextMapPropagator sets the propagator that reads and writes the
// headers. The default is propagation.TraceContext{} (W3C traceparent and
// tracestate); pass a propagation.NewCompositeTextMapPropagator with
// propagation.Baggage{} to carry baggage too, or otel.GetTextMapPropagator()
// to follow the process's global setting. A nil p keeps the default.
func WithTextMapPropagator(p propagation.TextMapPropagator) Option {
	return func(h *HeaderPropagator) {
		if p != nil {
			h.p = p
		}
	}
}

// Propagator returns a HeaderPropagator; see the package documentation.
func Propagator(opts ...Option) *HeaderPropagator {
	h := &HeaderPropagator{p: propagation.TraceContext{}}
	for _, o := range opts {
		if o != nil {
			o(h)
		}
	}
	return h
}

// Inject writes the trace context of ctx (the span of the outbound
// listener's delivery, when an otelbus.Observer observes the EventManager)
// into h. Without a valid span in ctx it writes nothing.
func (p *HeaderPropagator) Inject(ctx context.Context, h nats.Header) {
	p.p.Inject(ctx, carrier(h))
}

// Extract returns ctx with the remote span context read from h, which the
// inbound emit's span takes as its parent. Headers without (or with an
// invalid) traceparent leave ctx as it is.
func (p *HeaderPropagator) Extract(ctx context.Context, h nats.Header) context.Context {
	return p.p.Extract(ctx, carrier(h))
}

// carrier adapts nats.Header, whose keys are case-sensitive, to
// propagation.TextMapCarrier. Set writes the key as given (W3C names are
// lower case); Get also finds a key written in another case, as an HTTP
// gateway might forward it ("Traceparent").
type carrier nats.Header

func (c carrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

func (c carrier) Set(key, value string) { c[key] = []string{value} }

func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
