package watermillbus_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/watermillbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWithoutPersistenceEarlierMessagesAreNotReplayed(t *testing.T) {
	ps := newPubSub(t)
	publish(t, ps, "t", "early")
	ch := subscribe(t, ps, "t")
	publish(t, ps, "t", "live")
	assert.Equal(t, []string{"live"}, receiveAcked(t, ch, 1), "only what was published after Subscribe")
}

func TestPersistenceReplaysInOrderBeforeLiveMessages(t *testing.T) {
	ps := newPubSub(t, watermillbus.WithPersistence(100))
	first := subscribe(t, ps, "t")
	publish(t, ps, "t", "1", "2", "3")
	second := subscribe(t, ps, "t")
	publish(t, ps, "t", "4", "5")

	want := []string{"1", "2", "3", "4", "5"}
	assert.Equal(t, want, receiveAcked(t, second, len(want)), "log first, then live, no duplicate")
	assert.Equal(t, want, receiveAcked(t, first, len(want)), "live subscription")
	assert.Equal(t, uint64(3), ps.Stats().Replayed, "replayed")
}

// A replayed message is gated by acks like a live one.
func TestReplayedMessagesWaitForAck(t *testing.T) {
	ps := newPubSub(t, watermillbus.WithPersistence(10))
	publish(t, ps, "t", "1", "2")
	ch := subscribe(t, ps, "t")
	m := receive(t, ch)
	require.Equal(t, "1", m.UUID)
	require.True(t, m.Nack())
	assert.Equal(t, []string{"1", "2"}, receiveAcked(t, ch, 2), "the nacked one again, then the next")
}

// The replay starts with an event for the new subscription alone: it does
// not need room in the backlogs of the topic's other subscriptions.
func TestReplayDoesNotWaitForOtherSubscriptions(t *testing.T) {
	ps := newPubSub(t, watermillbus.WithPersistence(10), watermillbus.WithBusOptions(eventbus.WithQueueSize(1)))
	full := subscribe(t, ps, "t")
	publish(t, ps, "t", "1", "2") // "1" waits to be read, "2" fills the backlog

	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	late, err := ps.Subscribe(ctx, "t")
	require.NoError(t, err, "Subscribe while another subscription's backlog is full")
	assert.Equal(t, []string{"1", "2"}, receiveAcked(t, late, 2), "replayed")
	assert.Equal(t, []string{"1", "2"}, receiveAcked(t, full, 2), "the other subscription")
	publish(t, ps, "t", "3")
	assert.Equal(t, []string{"3"}, receiveAcked(t, full, 1), "and nothing else")
}

// Under WithNackDelay, a replay nacked half-way resumes at the nacked
// message, before any live one.
func TestReplayResumesAfterNackDelay(t *testing.T) {
	ps := newPubSub(t, watermillbus.WithPersistence(10), watermillbus.WithNackDelay(time.Millisecond))
	publish(t, ps, "t", "1", "2", "3")
	ch := subscribe(t, ps, "t")
	publish(t, ps, "t", "4")
	assert.Equal(t, []string{"1"}, receiveAcked(t, ch, 1))
	for range 3 {
		m := receive(t, ch)
		require.Equal(t, "2", m.UUID, "the nacked message again")
		require.True(t, m.Nack())
	}
	assert.Equal(t, []string{"2", "3", "4"}, receiveAcked(t, ch, 3), "the rest of the replay, then live")
	require.NoError(t, ps.Close())
	s := ps.Stats()
	assert.Equal(t, uint64(3), s.Replayed, "replayed")
	assert.Equal(t, uint64(3), s.Nacked, "nacked")
}

func TestPersistenceIsBounded(t *testing.T) {
	const limit, sent = 5, 12
	ps := newPubSub(t, watermillbus.WithPersistence(limit))
	live := subscribe(t, ps, "t")
	payloads := make([]string, sent)
	for i := range payloads {
		payloads[i] = strconv.Itoa(i)
	}
	publish(t, ps, "t", payloads...)
	assert.Equal(t, payloads, receiveAcked(t, live, sent), "a live subscription gets everything")

	late := subscribe(t, ps, "t")
	assert.Equal(t, payloads[sent-limit:], receiveAcked(t, late, limit), "a new one gets the last %d", limit)
	assert.Equal(t, uint64(sent-limit), ps.Stats().Evicted, "evicted")
	publish(t, ps, "t", "live")
	assert.Equal(t, []string{"live"}, receiveAcked(t, late, 1), "then live messages")
}

// A replay is sent even when no live message ever comes, and other
// subscriptions of the topic are not disturbed by it.
func TestReplayWithoutLiveMessages(t *testing.T) {
	ps := newPubSub(t, watermillbus.WithPersistence(10))
	first := subscribe(t, ps, "t")
	publish(t, ps, "t", "1")
	assert.Equal(t, []string{"1"}, receiveAcked(t, first, 1))
	second := subscribe(t, ps, "t")
	assert.Equal(t, []string{"1"}, receiveAcked(t, second, 1), "replayed")
	publish(t, ps, "t", "2")
	assert.Equal(t, []string{"2"}, receiveAcked(t, first, 1), "the first subscription got nothing else")
}

func TestPersistentContextPreserved(t *testing.T) {
	type key struct{}
	ps := newPubSub(t, watermillbus.WithPersistence(10), watermillbus.WithPreserveContext())
	ctx := context.WithValue(context.Background(), key{}, "v")
	require.NoError(t, ps.Publish("t", message.NewMessageWithContext(ctx, "m", nil)))
	m := receive(t, subscribe(t, ps, "t"))
	assert.Equal(t, "v", m.Context().Value(key{}), "replayed message keeps the publisher's context")
	m.Ack()
}
