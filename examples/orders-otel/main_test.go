package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The example prints the first order's trace through every listener, its
// log lines with trace IDs, and metrics that match Stats.
func TestRunPrintsTheTrace(t *testing.T) {
	var out strings.Builder
	require.NoError(t, run(&out, 3))
	s := out.String()
	for _, want := range []string{
		"POST /orders",
		"└─ publish order.created",
		"process order.created → billing",
		"process order.created → inventory",
		"process order.created → notifier",
		"ERROR: mail server busy",
		"process order.created → notifier (attempt 2)",
		"publish order.paid",
		"process order.paid → shipping",
		"process order.shipped → audit",
		"trace_id=",
		"messaging.client.sent.messages = 9   (Stats.Emitted 9)",
		"eventbus.retries = 1   (Stats.Retried 1)",
	} {
		assert.Contains(t, s, want)
	}
	assert.Equal(t, 7, strings.Count(s, "span_id="), "one log line per listener call of order #1001:\n%s", s)
}
