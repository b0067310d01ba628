package watermillbus

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Persistence (WithPersistence).
//
// Each topic has a log of its last messages. A Publish takes a sequence
// number and a place in the log (topicLog.take), emits without any lock
// held, however long it waits for room, and then settles its entry
// (topicLog.settle): published, or failed and taken out of the log. A
// Subscribe snapshots the log and registers its listener in one critical
// section (PubSub.register), and remembers from, the sequence number of the
// next message: every message numbered from on is emitted after the
// listener was registered, so it comes live; every message numbered below
// is either in the snapshot or was already dropped from the log, so the
// listener ignores its live copy. The replay is thus exactly the messages
// below from that the log held, the live stream exactly those from from
// on: no gap, no duplicate at the seam.
//
// A snapshot may hold entries still pending: their Publish is still
// waiting for room, or has not settled yet. The replay must not wait for
// them in the handler (that Publish may be waiting for room in this very
// subscription's backlog), so it stops there (subscription.stuck), returns,
// and keeps the live messages that arrive meanwhile aside
// (subscription.held); once the entry settles, its Publish sends the
// subscription an event that runs the handler again (subscription.settled,
// subscription.poke). See subscription.handle.
//
// Lock order: topicLog.mu, then the EventManager's own locks (through
// RegisterListener in register). No lock of the PubSub is held across a
// wait: not across Emit, not across a handler's send or ack wait, not
// across poke (which never waits).

// Entry states.
const (
	pending   int32 = iota // its Publish has not settled yet
	published              // accepted by the EventManager: delivered live to the subscriptions of its emit
	failed                 // its Publish failed: delivered to nobody, out of the log
)

// logEntry is one message in a topic's log.
type logEntry struct {
	seq   uint64
	msg   *message.Message
	state atomic.Int32 // pending, then published or failed; stored under topicLog.mu, loaded by handlers without it

	// Under topicLog.mu:
	evicted bool            // dropped from the log while pending: counted in Stats.Evicted if published
	waiters []*subscription // subscriptions whose snapshot holds it while pending, to poke once it settles
}

// topicLog keeps the last messages published to one topic, oldest first.
type topicLog struct {
	mu   sync.Mutex  // guards next, kept and the entries' evicted and waiters; held only for bookkeeping, never across a wait
	next uint64      // the sequence number of the next message taken
	kept []*logEntry // pending and published entries, by seq; at most limit
}

// take gives m the next sequence number and a place in the log, dropping
// the oldest entry if limit are kept already. It returns the entry and
// whether it dropped a published message (one for Stats.Evicted).
func (l *topicLog) take(m *message.Message, limit int) (e *logEntry, evicted bool) {
	e = &logEntry{msg: m}
	l.mu.Lock()
	defer l.mu.Unlock()
	e.seq = l.next
	l.next++
	if len(l.kept) >= limit {
		old := l.kept[0]
		l.kept[0] = nil
		l.kept = l.kept[1:]
		if old.state.Load() == published {
			evicted = true
		} else {
			old.evicted = true // counted by settle if it gets published
		}
	}
	l.kept = append(l.kept, e)
	return e, evicted
}

// settle records the outcome of e's emit: a failed entry leaves the log.
// It returns the subscriptions to poke, and whether e counts as evicted
// (dropped from the log while it waited, then published).
func (l *topicLog) settle(e *logEntry, ok bool) (waiters []*subscription, evicted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok {
		e.state.Store(published)
		evicted = e.evicted
	} else {
		e.state.Store(failed)
		if i, found := slices.BinarySearchFunc(l.kept, e.seq, func(x *logEntry, seq uint64) int {
			return cmp.Compare(x.seq, seq)
		}); found {
			l.kept = slices.Delete(l.kept, i, i+1)
		}
	}
	waiters, e.waiters = e.waiters, nil
	return waiters, evicted
}

// snapshot returns the kept entries, oldest first (nil if there are none),
// and the sequence number of the next message; s is recorded as a waiter
// of the pending ones. Call with mu held.
func (l *topicLog) snapshot(s *subscription) (entries []*logEntry, next uint64) {
	if len(l.kept) > 0 {
		entries = slices.Clone(l.kept)
		for _, e := range entries {
			if e.state.Load() == pending {
				e.waiters = append(e.waiters, s)
			}
		}
	}
	return entries, l.next
}
