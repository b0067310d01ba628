package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(dbEnv) != "" {
		main() // a run of the service, started by supervise: this test binary again
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// The service dies in the middle of its orders and is restarted; supervise
// returns 0 only if every committed order was billed and no declined one.
func TestKilledAndRestartedServiceBillsEveryCommittedOrder(t *testing.T) {
	if code := supervise(); code != 0 {
		t.Fatalf("supervise: exit status %d", code)
	}
}
