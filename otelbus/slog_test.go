package otelbus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
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
