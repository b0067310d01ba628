package watermillbus

import "sync/atomic"

// Stats is a snapshot of a PubSub's counters. Counters only grow. Acks and
// nacks are counted by the subscription's listener once it sees them, so
// right after Ack returns the count may lag; after Close it is exact for
// every ack or nack made while the message's subscription was open. An Ack
// made after its subscription ended (its context cancelled, or Close)
// still returns true, as a watermill message's Ack does once, but is not
// counted: nobody was waiting for it.
// Counters are read one by one, so a snapshot taken while messages flow
// may be off by the messages in flight between two of them.
type Stats struct {
	// Published counts the messages accepted by Publish.
	Published uint64
	// Acked counts the deliveries acked by subscribers.
	Acked uint64
	// Nacked counts the deliveries nacked by subscribers; each was sent
	// again, unless its subscription ended first.
	Nacked uint64
	// Replayed counts the messages from topic logs acked by new
	// subscriptions (WithPersistence); they are counted in Acked too.
	Replayed uint64
	// Evicted counts the messages dropped from full topic logs
	// (WithPersistence).
	Evicted uint64
	// Subscriptions is the number of open subscriptions.
	Subscriptions int
}

type counters struct {
	published, acked, nacked, replayed, evicted atomic.Uint64
}

// Stats returns a snapshot of the PubSub's counters. It is safe for
// concurrent use, also after Close.
func (p *PubSub) Stats() Stats {
	p.mu.Lock()
	subs := len(p.subs)
	p.mu.Unlock()
	return Stats{
		Published:     p.stats.published.Load(),
		Acked:         p.stats.acked.Load(),
		Nacked:        p.stats.nacked.Load(),
		Replayed:      p.stats.replayed.Load(),
		Evicted:       p.stats.evicted.Load(),
		Subscriptions: subs,
	}
}
