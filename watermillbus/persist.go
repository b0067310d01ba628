package watermillbus

import (
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// topicLog keeps the last messages published to one topic (WithPersistence):
// a ring that grows up to the limit.
type topicLog struct {
	mu   sync.Mutex // held across a publish's emit and append, and a subscription's snapshot and registration
	msgs []*message.Message
	head int // index of the oldest message once the ring is full
}

// add appends m, dropping the oldest message when limit are kept already;
// it reports whether it dropped one. Call with mu held.
func (l *topicLog) add(m *message.Message, limit int) (evicted bool) {
	if len(l.msgs) < limit {
		l.msgs = append(l.msgs, m)
		return false
	}
	l.msgs[l.head] = m
	l.head = (l.head + 1) % len(l.msgs)
	return true
}

// snapshot returns the kept messages, oldest first, or nil if there are
// none. Call with mu held.
func (l *topicLog) snapshot() []*message.Message {
	if len(l.msgs) == 0 {
		return nil
	}
	out := make([]*message.Message, 0, len(l.msgs))
	out = append(out, l.msgs[l.head:]...)
	return append(out, l.msgs[:l.head]...)
}
