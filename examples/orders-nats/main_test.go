package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The example runs both services against an embedded server and gets an
// outcome for every order; it leaves no goroutine behind.
func TestRunBothServices(t *testing.T) {
	require.NoError(t, run("", "both", 6, 60*time.Second))
}

func TestRunRejectsUnknownRole(t *testing.T) {
	require.ErrorContains(t, run("", "nobody", 1, time.Second), "unknown -role")
}

// The chaos mode loses nothing and reports no failure when the stream
// leader's node is shut down mid-stream.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster through an election")
	}
	rep, err := runChaos(t.Context(), 3000, 2000)
	require.NoError(t, err)
	require.Zero(t, rep.Lost, "%+v", rep)
	require.Zero(t, rep.PublishErrors+rep.Unconfirmed, "%+v", rep)
	require.Equal(t, rep.Emitted, rep.Published, "%+v", rep)
	require.Equal(t, rep.Published, rep.Stored, "stored once: %+v", rep)
	require.Equal(t, rep.Emitted, rep.Delivered, "%+v", rep)
}
