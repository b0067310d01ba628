// Command orders-otel is the orders flow instrumented with OpenTelemetry
// through otelbus: an HTTP-like request creates an order, billing charges it
// and emits order.paid, shipping ships it and emits order.shipped, inventory
// reserves stock, a flaky notifier fails its first attempt for the first
// order and is retried, fails every attempt for the third (a dead letter),
// and an audit listener sees every order event. It prints one order's trace
// as a tree (from the SDK's in-memory exporter), the log lines the
// listeners wrote (with trace_id and span_id from otelbus.LogHandler), the
// dead letter's log line (in the trace of its order), and the metrics next
// to the EventManager's Stats. It needs no collector and exits by itself.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/otelbus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Order is the payload of every order event.
type Order struct {
	ID    int
	Item  string
	Total float64
}

func main() {
	if err := run(os.Stdout, 3); err != nil {
		fmt.Fprintln(os.Stderr, "orders-otel:", err)
		os.Exit(1)
	}
}

// run takes n orders through the flow and prints the first one's trace.
func run(w io.Writer, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// OpenTelemetry: spans to memory, metrics read on demand. A service
	// would use an OTLP exporter and a periodic reader instead.
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background()) //nolint:errcheck // in-memory
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background()) //nolint:errcheck // in-memory

	obs, err := otelbus.New(otelbus.WithTracerProvider(tp), otelbus.WithMeterProvider(mp))
	if err != nil {
		return err
	}
	var logs strings.Builder
	log := slog.New(otelbus.LogHandler(slog.NewTextHandler(&logs, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // shorter lines
			}
			return a
		},
	})))
	// The error handler gets every final failure with the delivery's
	// context, so its log line carries the trace of the order's request.
	m := eventbus.New[Order](eventbus.WithObserver(obs), eventbus.WithErrorHandler(func(ctx context.Context, lerr *eventbus.ListenerError) {
		log.WarnContext(ctx, "dead letter", "event", lerr.Event, "listener", lerr.Listener,
			"order", lerr.Data.(Order).ID, "attempts", lerr.Attempts, "err", lerr.Err)
	}))
	// The gauges, and the backlog of every listener of m.
	reg, err := obs.Instrument(m, otelbus.ManagerName("orders"))
	if err != nil {
		return err
	}
	defer reg.Unregister() //nolint:errcheck // in-memory meter

	var notifyCalls atomic.Int64
	listeners := []struct {
		pattern string
		name    string
		h       eventbus.Handler[Order]
		opts    []eventbus.ListenerOption
	}{
		{"order.created", "billing", func(ctx context.Context, e eventbus.Event[Order]) error {
			log.InfoContext(ctx, "charged", "order", e.Data.ID, "total", e.Data.Total)
			return m.Emit(ctx, "order.paid", e.Data) // the follow-up joins the trace
		}, nil},
		{"order.created", "inventory", func(ctx context.Context, e eventbus.Event[Order]) error {
			log.InfoContext(ctx, "reserved", "order", e.Data.ID, "item", e.Data.Item)
			return nil
		}, nil},
		{"order.created", "notifier", func(ctx context.Context, e eventbus.Event[Order]) error {
			switch {
			case e.Data.ID == 1001 && notifyCalls.Add(1) == 1:
				return errors.New("mail server busy") // the first attempt fails; Retry runs it again
			case e.Data.ID == 1003:
				return errors.New("address bounced") // every attempt fails: a dead letter
			}
			log.InfoContext(ctx, "mailed confirmation", "order", e.Data.ID)
			return nil
		}, []eventbus.ListenerOption{eventbus.Retry(2, 5*time.Millisecond, 20*time.Millisecond)}},
		{"order.paid", "shipping", func(ctx context.Context, e eventbus.Event[Order]) error {
			log.InfoContext(ctx, "shipped", "order", e.Data.ID)
			return m.Emit(ctx, "order.shipped", e.Data)
		}, nil},
		{"order.>", "audit", func(ctx context.Context, e eventbus.Event[Order]) error {
			log.InfoContext(ctx, "audit", "event", e.Name, "order", e.Data.ID)
			return nil
		}, nil},
	}
	for _, l := range listeners {
		if _, err := m.RegisterListener(l.pattern, l.h, append(l.opts, eventbus.Name(l.name))...); err != nil {
			return err
		}
	}

	// The "HTTP request": its span is the root of the order's trace.
	traces := make([]trace.TraceID, n) // by order
	for i := range n {
		order := Order{ID: 1001 + i, Item: "Coffee", Total: 4.5}
		rctx, req := tp.Tracer("orders-otel/http").Start(ctx, "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
		traces[i] = req.SpanContext().TraceID()
		err := m.Emit(rctx, "order.created", order)
		req.End()
		if err != nil {
			return err
		}
	}
	// Close delivers everything, the follow-up events and the retries
	// included.
	if err := m.Close(ctx); err != nil {
		return err
	}
	first := traces[0]

	fmt.Fprintf(w, "Trace %s of order #1001 (%d spans in all for %d orders):\n\n", first, len(spans.GetSpans()), n)
	printTree(w, spans.GetSpans(), first)

	fmt.Fprintf(w, "\nLog lines of order #1001, joined to its spans by trace_id:\n\n")
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(line, first.String()) {
			fmt.Fprintln(w, "  "+line)
		}
	}

	fmt.Fprintf(w, "\nDead letters, logged by the error handler in the trace of their order's request:\n\n")
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.Contains(line, `msg="dead letter"`) {
			continue
		}
		order := "another order"
		for i, id := range traces {
			if strings.Contains(line, "trace_id="+id.String()) {
				order = fmt.Sprintf("order #%d", 1001+i)
			}
		}
		fmt.Fprintf(w, "  %s\n    (trace_id of %s)\n", line, order)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nMetrics, next to Stats():\n\n")
	printMetrics(w, rm, m.Stats())
	return nil
}

// printTree prints the spans of trace id as a tree, children in start order.
func printTree(w io.Writer, all tracetest.SpanStubs, id trace.TraceID) {
	children := map[trace.SpanID][]tracetest.SpanStub{}
	var roots []tracetest.SpanStub
	for _, s := range all {
		if s.SpanContext.TraceID() != id {
			continue
		}
		if s.Parent.IsValid() {
			children[s.Parent.SpanID()] = append(children[s.Parent.SpanID()], s)
		} else {
			roots = append(roots, s)
		}
	}
	var walk func(s tracetest.SpanStub, prefix, branch string)
	walk = func(s tracetest.SpanStub, prefix, branch string) {
		label := s.Name
		if v, ok := value(s.Attributes, semconv.MessagingDestinationSubscriptionNameKey); ok {
			label += " → " + v.AsString()
		}
		if v, ok := value(s.Attributes, otelbus.AttemptKey); ok && v.AsInt64() > 1 {
			label += fmt.Sprintf(" (attempt %d)", v.AsInt64())
		}
		status := ""
		if s.Status.Code == codes.Error {
			status = "  ERROR: " + s.Status.Description
		}
		fmt.Fprintf(w, "%s%-*s %-8s %8s%s\n", prefix+branch, 58-len([]rune(prefix+branch)), label,
			strings.ToLower(s.SpanKind.String()), s.EndTime.Sub(s.StartTime).Round(time.Microsecond), status)
		kids := children[s.SpanContext.SpanID()]
		sort.Slice(kids, func(i, j int) bool { return kids[i].StartTime.Before(kids[j].StartTime) })
		next := prefix
		switch branch {
		case "├─ ":
			next += "│  "
		case "└─ ":
			next += "   "
		}
		for i, k := range kids {
			b := "├─ "
			if i == len(kids)-1 {
				b = "└─ "
			}
			walk(k, next, b)
		}
	}
	for _, r := range roots {
		walk(r, "  ", "")
	}
}

func value(kvs []attribute.KeyValue, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// printMetrics prints the delivery counters by listener, outcome and
// finality, the emits, the histograms' counts and the backlogs, with the
// Stats they match.
func printMetrics(w io.Writer, rm metricdata.ResourceMetrics, s eventbus.Stats) {
	type row struct{ listener, outcome, final string }
	deliveries := map[row]int64{}
	backlog := map[string]int64{}
	var sent, retries, finalFailures, retriedFailures int64
	var handled, waited uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case otelbus.MetricDeliveries:
				for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
					l, _ := p.Attributes.Value(semconv.MessagingDestinationSubscriptionNameKey)
					o, _ := p.Attributes.Value(otelbus.OutcomeKey)
					r := row{listener: l.AsString(), outcome: o.AsString()}
					if f, ok := p.Attributes.Value(otelbus.FinalKey); ok { // failed and panicked attempts only
						r.final = strconv.FormatBool(f.AsBool())
						if f.AsBool() {
							finalFailures += p.Value
						} else {
							retriedFailures += p.Value
						}
					}
					deliveries[r] += p.Value
				}
			case otelbus.MetricSent:
				for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
					sent += p.Value
				}
			case otelbus.MetricRetries:
				for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
					retries += p.Value
				}
			case otelbus.MetricDuration:
				for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					handled += p.Count
				}
			case otelbus.MetricWait:
				for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					waited += p.Count
				}
			case otelbus.MetricBacklog:
				for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
					l, _ := p.Attributes.Value(semconv.MessagingDestinationSubscriptionNameKey)
					backlog[l.AsString()] += p.Value
				}
			}
		}
	}
	rows := make([]row, 0, len(deliveries))
	for r := range deliveries {
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.listener != b.listener {
			return a.listener < b.listener
		}
		if a.outcome != b.outcome {
			return a.outcome < b.outcome
		}
		return a.final < b.final
	})
	for _, r := range rows {
		final := ""
		if r.final != "" {
			final = ", final=" + r.final
		}
		fmt.Fprintf(w, "  %s{listener=%s, outcome=%s%s} = %d\n", otelbus.MetricDeliveries, r.listener, r.outcome, final, deliveries[r])
	}
	fmt.Fprintf(w, "  failed attempts: %d final (dead letters; Stats.Failed %d + Panicked %d), %d retried (Stats.Retried %d)\n",
		finalFailures, s.Failed, s.Panicked, retriedFailures, s.Retried)
	fmt.Fprintf(w, "  %s = %d   (Stats.Emitted %d)\n", otelbus.MetricSent, sent, s.Emitted)
	fmt.Fprintf(w, "  %s = %d   (Stats.Retried %d)\n", otelbus.MetricRetries, retries, s.Retried)
	fmt.Fprintf(w, "  %s: %d attempts   (Delivered %d + Failed %d + Panicked %d + Retried %d)\n",
		otelbus.MetricDuration, handled, s.Delivered, s.Failed, s.Panicked, s.Retried)
	fmt.Fprintf(w, "  %s: %d first attempts waited in a backlog\n", otelbus.MetricWait, waited)
	names := make([]string, 0, len(backlog))
	for l := range backlog {
		names = append(names, l)
	}
	sort.Strings(names)
	var parts []string
	for _, l := range names {
		parts = append(parts, fmt.Sprintf("%s=%d", l, backlog[l]))
	}
	fmt.Fprintf(w, "  %s, every listener, no Track (all drained by Close): %s\n", otelbus.MetricBacklog, strings.Join(parts, " "))
}
