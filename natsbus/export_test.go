package natsbus

import (
	"time"

	"github.com/nats-io/nats.go"
)

// Test hooks into the JetStream publisher of a bridge with outbound
// patterns in JetStream mode.

// SkewClock moves the publisher's clock by d: ack deadlines fall due (or
// not) without the test waiting for them.
func SkewClock[T any](b *Bridge[T], d time.Duration) { b.pub.skew.Add(int64(d)) }

// FreezeClock stops the publisher's clock at the current time: from then
// on it moves only by SkewClock, however long the test takes.
func FreezeClock[T any](b *Bridge[T]) { b.pub.frozen.Store(time.Now().UnixNano()) }

// AwaitingAnswers returns how many publishes have a send out that no
// answer (ack or refusal) has come back for yet.
func AwaitingAnswers[T any](b *Bridge[T]) int {
	b.pub.mu.Lock()
	defer b.pub.mu.Unlock()
	n := 0
	for _, pp := range b.pub.pending {
		if pp.awaiting && !pp.settling {
			n++
		}
	}
	return n
}

// PublisherChecks counts the publisher's periodic checks so far.
func PublisherChecks[T any](b *Bridge[T]) uint64 { return b.pub.checks.Load() }

// SetAfterTake makes the publisher call f after it claimed an ack and
// before it counts the outcome.
func SetAfterTake[T any](b *Bridge[T], f func()) { b.pub.afterTake.Store(&f) }

// FlushWaiters returns how many Flush calls wait for the publisher.
func FlushWaiters[T any](b *Bridge[T]) int {
	b.pub.mu.Lock()
	defer b.pub.mu.Unlock()
	return len(b.pub.waiters)
}

// SetAckHook makes the publisher pass every ack through f first; f may
// return another message, or nil to drop it.
func SetAckHook[T any](b *Bridge[T], f func(*nats.Msg) *nats.Msg) { b.pub.ackHook.Store(&f) }

// SetAfterInboundStopped makes Close or Drain call f once the inbound side
// has stopped (subscriptions drained or unsubscribed, callbacks returned),
// before the outbound side. Set it before calling Close or Drain.
func SetAfterInboundStopped[T any](b *Bridge[T], f func()) { b.afterInbound = f }

// ConsumerInbox returns the reply prefix of the bridge's JetStream
// consumer's pulls (each pull's reply subject is this plus a token).
func ConsumerInbox[T any](b *Bridge[T]) string { return b.consumer.inbox }

// InjectConsumerMsg hands m to the bridge's JetStream consumer as if its
// subscription had received it.
func InjectConsumerMsg[T any](b *Bridge[T], m *nats.Msg) { b.consumer.onMsg(m) }
