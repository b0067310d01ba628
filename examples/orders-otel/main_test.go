package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The example prints the first order's trace through every listener, its
// log lines with trace IDs, the third order's dead letter in that order's
// trace, and metrics that match Stats.
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
		`msg="dead letter" event=order.created listener=notifier order=1003 attempts=3 err="address bounced" trace_id=`,
		"(trace_id of order #1003)",
		"eventbus.deliveries{listener=notifier, outcome=failed, final=false} = 3",
		"eventbus.deliveries{listener=notifier, outcome=failed, final=true} = 1",
		"failed attempts: 1 final (dead letters; Stats.Failed 1 + Panicked 0), 3 retried (Stats.Retried 3)",
		"eventbus.retries = 3   (Stats.Retried 3)",
		"eventbus.listener.backlog, every listener, no Track (all drained by Close): audit=0 billing=0 inventory=0 notifier=0 shipping=0",
	} {
		assert.Contains(t, s, want)
	}
	assert.Equal(t, 7+1, strings.Count(s, "span_id="), "one log line per listener call of order #1001, and the dead letter:\n%s", s)
}
