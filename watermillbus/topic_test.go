package watermillbus_test

import (
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/watermillbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEventName(t *testing.T) {
	cases := []struct{ topic, name string }{
		{"orders", "orders"},
		{"orders.placed", "orders.placed"},
		{"topic-0b5e1a3c_9", "topic-0b5e1a3c_9"},
		{"café.crème", "café.crème"},
		{"", "%"},
		{".", "%.%"},
		{"a..b", "a.%.b"},
		{".a", "%.a"},
		{"a.", "a.%"},
		{"a b", "a%20b"},
		{"x.*.>", "x.%2A.%3E"},
		{"100%", "100%25"},
		{"%", "%25"},
		{"tab\there", "tab%09here"},
		{"nbsp\u00a0", "nbsp%C2%A0"},
		{"bad\xffutf8", "bad%FFutf8"},
	}
	for _, c := range cases {
		name := watermillbus.EventName(c.topic)
		assert.Equal(t, c.name, name, "EventName(%q)", c.topic)
		assert.NoError(t, eventbus.ValidateName(name), "EventName(%q) is a valid event name", c.topic)
		topic, err := watermillbus.Topic(name)
		if assert.NoError(t, err, "Topic(%q)", name) {
			assert.Equal(t, c.topic, topic, "Topic(EventName(%q))", c.topic)
		}
	}
}

func TestTopicRejectsNamesEventNameDoesNotMake(t *testing.T) {
	for _, name := range []string{"a%2", "a%zz", "a%2a", "%41", "a.%%", "a b", "%%"} {
		_, err := watermillbus.Topic(name)
		assert.ErrorIs(t, err, watermillbus.ErrInvalidEventName, "Topic(%q)", name)
	}
}

// FuzzEventName checks that every topic maps to a valid event name that
// maps back to it, which also makes the mapping free of collisions.
func FuzzEventName(f *testing.F) {
	for _, s := range []string{"", ".", "a..b", "x.*.>", "100%", "%.%", "a b", "\xff", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		name := watermillbus.EventName(topic)
		require.NoError(t, eventbus.ValidateName(name), "EventName(%q) = %q", topic, name)
		back, err := watermillbus.Topic(name)
		require.NoError(t, err, "Topic(%q)", name)
		require.Equal(t, topic, back, "round trip through %q", name)
	})
}
