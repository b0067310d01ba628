package benchmarks

import (
	"testing"

	"go.uber.org/goleak"
)

// No goroutine may outlive the tests or benchmarks, and no exception is
// needed for any peer: each adapter's Close stops what its library started.
// cskr/pubsub's goroutine returns on Shutdown, watermill's per-subscription
// and per-message goroutines return once Close has closed the
// subscriptions and every message is acked, asaskevich/EventBus's
// per-publish goroutines are awaited by WaitAsync, and the baselines and
// eventbus wait for their workers in Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
