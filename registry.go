package eventbus

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// The registry maps event names to the listeners that match them.
//
// Writers (RegisterListener, Unregister) hold EventManager.mu. Readers (every
// emit) take no lock: they load the *registry through an atomic pointer and
// find a precomputed *route for the name:
//
//   - literal patterns live in exact, a hashTrie of name → slot whose route
//     writers swap in place. A name gets its leaf with its first listener and
//     loses it with its last, so the trie holds only live names, and a change
//     costs the same whatever the number of names, live or gone.
//   - wildcard patterns live in wild, a token trie that writers change in
//     place (see wnode).
//   - when there is any wildcard pattern, emits look names up in cache
//     instead, whose slots hold the route merged from both (see routeCache).
//
// A registry value is replaced only when exact is first made and when the
// first wildcard pattern comes or the last one goes; the tries it points to
// outlive it, changed in place.
type registry[T any] struct {
	exact *hashTrie[slot[T]] // nil until the first registration
	wild  *wnode[T]          // nil when no wildcard pattern is registered
	cache *routeCache[T]     // set exactly when wild is
	// topics are the names declared by NewTopic, the EventManager's: a
	// route of a declared name points to its declaration (see withTopic).
	topics *topics
}

// slot is the value of a name in exact or in a routeCache.
type slot[T any] struct {
	route atomic.Pointer[route[T]] // nil only in a cache: no listener matches
}

// route is everything an emit needs to know about one event name's
// listeners. It is immutable.
type route[T any] struct {
	all   []*entry[T] // priority order: EmitSync calls them in it, Emit queues in it
	topic *topicDecl  // the name's declared type (NewTopic), or nil
	keyed bool        // some listener is OrderedBy: Emit computes keys
}

// lookup returns the route for name, or nil when nothing matches. It does not
// validate name: a name that is in the registry was validated when it got
// there, and the caller validates the others.
func (r *registry[T]) lookup(name string) (rt *route[T], known bool) {
	if r.wild == nil {
		if s := r.exact.find(name); s != nil {
			return s.val.route.Load(), true
		}
		return nil, false
	}
	if s := r.cache.names.find(name); s != nil {
		return s.val.route.Load(), true
	}
	return nil, false
}

// resolve computes the route of a valid name that lookup did not know, and
// caches it when there are wildcard patterns.
func (r *registry[T]) resolve(name string) *route[T] {
	if r.wild == nil {
		return nil
	}
	return r.cache.resolve(r, name)
}

// merge computes the route of a valid name from exact and wild.
func (r *registry[T]) merge(name string) *route[T] {
	var list []*entry[T]
	if s := r.exact.find(name); s != nil {
		if rt := s.val.route.Load(); rt != nil {
			list = append(list, rt.all...)
		}
	}
	return r.withTopic(name, newRoute(r.wild.match(name, list)))
}

// routeCache holds the merged routes of the names emitted while there are
// wildcard patterns, at most _routeCacheSize of them. Emits read it without
// locking; those that miss compute the route and add it under mu, which
// also serialises them with writers. A change of a wildcard pattern clears
// it; a change of a literal pattern updates the one slot it affects (see
// refresh), and forgets it when no listener matches the name any more. When
// full, it evicts a slot picked at random.
type routeCache[T any] struct {
	names hashTrie[slot[T]]

	mu    sync.Mutex
	evict uint64 // picks the slot to evict
}

func newRouteCache[T any](seed uint64) *routeCache[T] {
	return &routeCache[T]{names: hashTrie[slot[T]]{seed: seed}}
}

func (c *routeCache[T]) resolve(r *registry[T], name string) *route[T] {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.names.find(name); s != nil {
		return s.val.route.Load() // another emitter was first
	}
	rt := r.merge(name)
	if c.names.size >= _routeCacheSize {
		c.evict = c.evict*6364136223846793005 + 1442695040888963407
		if victim, ok := c.names.pick(c.evict >> 32); ok {
			c.names.delete(victim)
		}
	}
	// The name may be a slice of a larger string the emitter built: keep
	// only its bytes.
	c.names.insert(strings.Clone(name), func(s *slot[T]) { s.route.Store(rt) })
	return rt
}

// clear forgets every route, after a change of the wildcard patterns. An
// emit that looked a name up before clear returned may still use what it
// found: it ran concurrently with the change.
func (c *routeCache[T]) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names.clear()
}

// refresh recomputes the cached route of name, whose literal listeners have
// changed. m.mu must be held.
func (c *routeCache[T]) refresh(r *registry[T], name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.names.find(name)
	if s == nil {
		return
	}
	rt := r.merge(name)
	s.val.route.Store(rt)
	if rt == nil {
		c.names.delete(name) // the name is gone: give its memory back
	}
}

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
	keyed := slices.ContainsFunc(list, func(e *entry[T]) bool { return e.in.keyFn != nil })
	return &route[T]{all: list, keyed: keyed}
}

func appendCopy[E any](s []E, v E) []E {
	out := make([]E, len(s), len(s)+1)
	copy(out, s)
	return append(out, v)
}

func deleteCopy[E comparable](s []E, v E) []E {
	if len(s) == 1 && s[0] == v {
		return nil
	}
	out := make([]E, 0, len(s))
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// remove takes e out of the registry; its Listener is already marked
// removed, so queued deliveries to it will be skipped.
func (m *EventManager[T]) remove(e *entry[T]) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.update(e, func(list []*entry[T]) []*entry[T] { return deleteCopy(list, e) })
	m.live.remove(e)
	m.listeners.Add(-1)
}

// update changes the listeners registered under e.pattern and publishes the
// result to readers. change gets the pattern's listeners (in no particular
// order) and must return a new slice, not the one it got. m.mu must be held.
func (m *EventManager[T]) update(e *entry[T], change func([]*entry[T]) []*entry[T]) {
	r := m.reg.Load()
	if r.exact == nil {
		r = &registry[T]{exact: newHashTrie[slot[T]](newSeed()), wild: r.wild, cache: r.cache, topics: r.topics}
		m.reg.Store(r)
	}
	if !isLiteral(e.pattern) {
		m.updateWild(r, e, change)
		return
	}
	name := e.pattern
	s := r.exact.find(name)
	var list []*entry[T]
	if s != nil {
		list = s.val.route.Load().all
	}
	list = change(list) // a new slice: newRoute may sort it
	switch {
	case len(list) > 0 && s != nil:
		s.val.route.Store(r.withTopic(name, newRoute(list)))
	case len(list) > 0:
		rt := r.withTopic(name, newRoute(list))
		r.exact.insert(name, func(v *slot[T]) { v.route.Store(rt) })
	case s != nil: // the name's last listener is gone
		s.val.route.Store(nil)
		r.exact.delete(name)
	default:
		return
	}
	if r.wild != nil {
		r.cache.refresh(r, name)
	}
}

// updateWild changes the listeners of a wildcard pattern and clears the
// route cache; a registry is published only when the first wildcard pattern
// comes or the last one goes.
func (m *EventManager[T]) updateWild(r *registry[T], e *entry[T], change func([]*entry[T]) []*entry[T]) {
	wild := r.wild
	if wild == nil {
		wild = &wnode[T]{}
	}
	wild.set(r.exact.seed, e.pattern, change)
	switch {
	case wild.empty():
		m.reg.Store(&registry[T]{exact: r.exact, topics: r.topics})
	case r.wild == nil:
		m.reg.Store(&registry[T]{exact: r.exact, wild: wild, cache: newRouteCache[T](r.exact.seed), topics: r.topics})
	default:
		r.cache.clear()
	}
}
