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
