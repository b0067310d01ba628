package watermillbus_test

import (
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
	tests.TestPubSub(t, features, constructor(), nil)
}

// TestConformanceStress runs the suite's stress variant: STRESS_TEST_COUNT
// copies of the suite at once (10 by default), about 10 s under -race on
// two cores. -short skips it.
func TestConformanceStress(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the stress variant takes about 10 s under -race")
	}
	tests.TestPubSubStressTest(t, features, constructor(), nil)
}

// TestConformanceOneWorker runs the suite on EventManagers with a single
// worker: subscriptions that wait for an ack (TestContinueAfterErrors
// leaves three of them waiting forever) stall it, and the EventManager
// starts others in its place.
func TestConformanceOneWorker(t *testing.T) {
	tests.TestPubSub(t, features, constructor(eventbus.WithWorkers(1)), nil)
}
