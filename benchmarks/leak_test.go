package benchmarks

import (
	"testing"

	"go.uber.org/goleak"
)

// Every adapter's Close stops the goroutines its library started, so no
// goroutine may outlive the tests or benchmarks.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
