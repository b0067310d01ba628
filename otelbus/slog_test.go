package otelbus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/otelbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLogHandlerAddsTraceAndSpanIDs(t *testing.T) {
	f := newFixture(t)
	m := newManager[int](t, f)
	var buf bytes.Buffer
	log := slog.New(otelbus.LogHandler(slog.NewJSONHandler(&buf, nil))).With("svc", "orders")
	_, err := m.RegisterListener("a", func(ctx context.Context, e eventbus.Event[int]) error {
		log.InfoContext(ctx, "handling", "n", e.Data)
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(ctxTimeout(t), "a", 7))
	log.Info("outside any span")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	var in, out map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &in))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &out))
	span := one(t, f.spans(), "process a")
	assert.Equal(t, span.SpanContext.TraceID().String(), in[otelbus.LogTraceID])
	assert.Equal(t, span.SpanContext.SpanID().String(), in[otelbus.LogSpanID])
	assert.Equal(t, "orders", in["svc"], "WithAttrs still applies")
	assert.NotContains(t, out, otelbus.LogTraceID, "no span, no IDs")
}

// lockedBuffer is a bytes.Buffer for several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// eventbus.WithLogger with LogHandler: the line the EventManager logs for a
// pool listener's final failure (a dead letter) carries the trace_id and
// span_id of the emit's span, which the delivery's context holds.
func TestDeadLetterLogLineHasTraceIDs(t *testing.T) {
	f := newFixture(t)
	var buf lockedBuffer
	ctx := ctxTimeout(t)
	m := eventbus.New[int](eventbus.WithObserver(f.obs), eventbus.WithWorkers(2),
		eventbus.WithLogger(slog.New(otelbus.LogHandler(slog.NewJSONHandler(&buf, nil)))))
	defer m.Close(ctx) //nolint:errcheck // closed below; this is for a failed require
	_, err := m.RegisterListener("order.placed", func(context.Context, eventbus.Event[int]) error {
		return errors.New("out of stock")
	}, eventbus.Name("inventory"), eventbus.Retry(1, 0, 0))
	require.NoError(t, err)

	rctx, req := f.tp.Tracer("test").Start(ctx, "POST /orders")
	require.NoError(t, m.Emit(rctx, "order.placed", 42))
	req.End()
	require.NoError(t, m.Close(ctx), "the failure is logged before Close returns")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 1, "one line for the dead letter, none for the retried attempt:\n%s", buf.String())
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
	publish := one(t, f.spans(), "publish order.placed")
	assert.Equal(t, "ERROR", rec["level"])
	assert.Contains(t, rec["err"], "out of stock", "the line:\n%s", lines[0])
	assert.Equal(t, req.SpanContext().TraceID().String(), rec[otelbus.LogTraceID], "the request's trace")
	assert.Equal(t, publish.SpanContext.SpanID().String(), rec[otelbus.LogSpanID], "the emit's span")
	assert.Len(t, f.spans()["process order.placed"], 2, "precondition: two attempts")
}
