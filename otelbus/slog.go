package otelbus

import (
	"context"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added by LogHandler.
const (
	LogTraceID = "trace_id"
	LogSpanID  = "span_id"
)

// LogHandler wraps next so that every record logged with a context that
// carries a valid span (slog.InfoContext(ctx, ...) inside a listener, whose
// ctx carries its "process" span) gets two more attributes: trace_id and
// span_id, in lower-case hex as in W3C traceparent. Records without a span
// pass through unchanged. After WithGroup, the two attributes go into the
// group, like any attribute added at Handle time. It is safe for concurrent
// use if next is. A nil next is a slog.TextHandler writing to os.Stderr.
func LogHandler(next slog.Handler) slog.Handler {
	if next == nil {
		next = slog.NewTextHandler(os.Stderr, nil)
	}
	return logHandler{next: next}
}

type logHandler struct{ next slog.Handler }

func (h logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone() // the caller's copy may share its attribute array
		r.AddAttrs(slog.String(LogTraceID, sc.TraceID().String()), slog.String(LogSpanID, sc.SpanID().String()))
	}
	return h.next.Handle(ctx, r)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{next: h.next.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler {
	return logHandler{next: h.next.WithGroup(name)}
}
