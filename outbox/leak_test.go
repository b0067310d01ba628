package outbox_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild() // a child of the crash test: never returns
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) { stopPostgres(); os.Exit(code) }))
}
