package watermillbus_test

import (
	"os"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/watermillbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// features are what watermill's conformance suite checks. Persistent means
// shared between instances, which no in-process Pub/Sub is; the suite's
// tests that publish before subscribing need WithPersistence instead, as
// they need gochannel's Persistent.
var features = tests.Features{
	GuaranteedOrder:       true,
	ContextPreserved:      true,
	ExactlyOnceDelivery:   true,
	Persistent:            false,
	RequireSingleInstance: true,
}

// conformancePersistence is enough for the suite's largest topic (10,000
// messages in TestPublisherClose).
const conformancePersistence = 20_000

// constructor returns the suite's constructor for PubSubs made with the
// given EventManager options, closed (and checked) when the test ends.
func constructor(busOpts ...eventbus.Option) tests.PubSubConstructor {
	return func(t *testing.T) (message.Publisher, message.Subscriber) {
		ps, err := watermillbus.New(
			watermillbus.WithPreserveContext(),
			watermillbus.WithPersistence(conformancePersistence),
			watermillbus.WithBusOptions(busOpts...),
		)
		require.NoError(t, err, "New")
		t.Cleanup(func() { assert.NoError(t, ps.Close(), "Close at cleanup") })
		return ps, ps
	}
}

// TestConformance runs watermill's universal Pub/Sub suite with the
// EventManager's default worker count.
func TestConformance(t *testing.T) {
	tests.TestPubSub(t, features, constructor(eventbus.WithWorkers(64)), nil)
}

// TestConformanceStress runs the suite's stress variant (STRESS_TEST_COUNT
// copies of the suite at once, 10 by default). It is long under -race, so
// it runs only when WATERMILLBUS_STRESS is set.
func TestConformanceStress(t *testing.T) {
	if os.Getenv("WATERMILLBUS_STRESS") == "" {
		t.Skip("set WATERMILLBUS_STRESS=1 to run the stress variant")
	}
	tests.TestPubSubStressTest(t, features, constructor(eventbus.WithWorkers(64)), nil)
}
