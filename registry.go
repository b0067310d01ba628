package eventbus

import (
	"cmp"
	"slices"

	"github.com/eventbus-go/eventbus/internal/registry"
	"github.com/eventbus-go/eventbus/internal/sched"
)

// The registry maps event names to the listeners that match them; it lives
// in internal/registry (hash trie, wildcard trie, route cache), which holds
// *entry[T] values and routes without knowing what they are. This file
// decides what a route is (route, made by routes).
//
// Writers (RegisterListener, Unregister, NewTopic) hold EventManager.mu.
// Readers (every emit) take no lock: they load the registry's Index and find
// a precomputed *route for the name there.

// route is everything an emit needs to know about one event name's
// listeners. It is immutable.
type route[T any] struct {
	all   []*entry[T]                       // priority order: EmitSync calls them in it, Emit queues in it
	pool  []*sched.Inbox[Event[T], nameCtx] // their inboxes, in the same order, for the scheduler
	topic *topicDecl                        // the name's declared type (NewTopic), or nil
	keyed bool                              // some listener is OrderedBy: Emit computes keys
}

// routes makes the routes of an EventManager's registry (it is the
// registry's registry.Routes). Emitters call it concurrently with writers:
// it only reads topics, which it loads atomically.
type routes[T any] struct {
	// topics are the names declared by NewTopic, the EventManager's: a
	// route of a declared name points to its declaration.
	topics *topics
}

// Route sorts list, the listeners of name, by priority (then registration
// order), and points the route to name's declaration.
func (rs routes[T]) Route(name string, list []*entry[T]) *route[T] {
	rt := newRoute(list)
	if rt != nil {
		rt.topic = rs.topics.find(name)
	}
	return rt
}

// Entries returns the listeners of rt.
func (routes[T]) Entries(rt *route[T]) []*entry[T] { return rt.all }

// newRoute sorts listeners by priority (then registration order). It
// returns nil for no listeners.
func newRoute[T any](list []*entry[T]) *route[T] {
	if len(list) == 0 {
		return nil
	}
	slices.SortFunc(list, func(a, b *entry[T]) int {
		if c := cmp.Compare(b.priority, a.priority); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	keyed := slices.ContainsFunc(list, func(e *entry[T]) bool { return e.keyFn != nil })
	pool := make([]*sched.Inbox[Event[T], nameCtx], len(list))
	for i, e := range list {
		pool[i] = e.in
	}
	return &route[T]{all: list, pool: pool, keyed: keyed}
}

// remove takes e out of the registry; its Listener is already marked
// removed, so queued deliveries to it will be skipped.
func (m *EventManager[T]) remove(e *entry[T]) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reg.Update(e.pattern, func(list []*entry[T]) []*entry[T] { return registry.DeleteCopy(list, e) })
	m.live.remove(e)
	m.soleLeave(e.l)
	m.listeners.Add(-1)
}
