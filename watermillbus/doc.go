// Package watermillbus runs watermill (github.com/ThreeDotsLabs/watermill)
// on an eventbus.EventManager: a PubSub is both a message.Publisher and a
// message.Subscriber, for watermill's Router, middlewares and CQRS
// components, in one process.
//
// Every subscription is an eventbus listener with Ordered delivery: it
// receives every message published to its topic after it subscribed, one at
// a time and in publish order, and the next one only once the current one
// is acked. A nacked message is sent again (at once, or after WithNackDelay)
// until it is acked or the subscription ends. Publish never starts a
// goroutine: messages wait in the EventManager's bounded queue, and Publish
// waits for room when it is full.
//
// With WithPersistence, a PubSub also keeps the last messages of each topic
// and replays them, in order, to every new subscription before any live
// one, with no gap and no duplicate between the two, as gochannel's
// Persistent option does. Subscribe never waits, not even for a Publish
// that is waiting for room; no call holds a lock while it waits.
//
// Topics are arbitrary strings; see EventName for how they map to event
// names.
package watermillbus
