// Package registry maps event names to the entries (listeners, to the
// eventbus package) registered under patterns that match them, for lookups
// that take no lock and, for a known name, do not allocate.
//
// It knows nothing of what an entry or a route is. Its user tells it which
// entries are registered under each pattern (Registry.Update), and gives it
// a Routes that makes the route of a name from the entries that match it;
// lookups return those routes.
//
// Patterns and names are tokens separated by '.', where a pattern's token
// '*' (AnyToken) matches exactly one token and a final '>' (RestToken) one
// or more. The registry does not validate them: its caller does.
package registry

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Wildcard tokens in patterns; they follow NATS subject rules.
const (
	AnyToken  = "*" // matches exactly one token
	RestToken = ">" // last token only: matches one or more tokens
)

// RouteCacheSize bounds how many distinct event names have their wildcard
// matches cached; names past it are matched on every emit.
const RouteCacheSize = 8192

// Routes makes the routes a Registry publishes; the Registry's user
// implements it. Writers call it, and so do emitters that compute a route
// the cache does not hold, concurrently with writers: its methods must be
// safe for concurrent use.
type Routes[E, R any] interface {
	// Route returns the route of name, whose matching entries are list: a
	// non-empty slice that no one else holds, which Route may sort and keep.
	Route(name string, list []E) *R
	// Entries returns the entries of rt, a non-nil route made by Route.
	// The caller does not change the slice.
	Entries(rt *R) []E
}

// Registry maps event names to the routes of the entries that match them.
//
// Writers (Update, Rebuild) must be serialised by the caller: the eventbus
// holds EventManager.mu. Readers (every emit) take no lock: they Load the
// *Index through an atomic pointer and find a precomputed route for the
// name there (see Index). Init must be called before any other method, and
// a Registry must not be copied after.
type Registry[E, R any] struct {
	cur    atomic.Pointer[Index[E, R]] // stored by Init and by writers only
	routes Routes[E, R]                // set by Init, then only read
}

// Index is what emitters look names up in:
//
//   - literal patterns live in exact, a hashTrie of name → slot whose route
//     writers swap in place. A name gets its leaf with its first entry and
//     loses it with its last, so the trie holds only live names, and a change
//     costs the same whatever the number of names, live or gone.
//   - wildcard patterns live in wild, a token trie that writers change in
//     place (see wnode).
//   - when there is any wildcard pattern, emits look names up in cache
//     instead, whose slots hold the route merged from both (see routeCache).
//
// An Index is replaced only when exact is first made and when the first
// wildcard pattern comes or the last one goes; the tries it points to
// outlive it, changed in place.
type Index[E, R any] struct {
	exact *hashTrie[slot[R]] // nil until the first registration
	wild  *wnode[E]          // nil when no wildcard pattern is registered
	cache *routeCache[E, R]  // set exactly when wild is
	reg   *Registry[E, R]    // the Registry it belongs to, whose routes it makes
}

// slot is the value of a name in exact or in a routeCache.
type slot[R any] struct {
	route atomic.Pointer[R] // nil only in a cache: no entry matches
}

// Init readies g, which makes its routes with routes.
func (g *Registry[E, R]) Init(routes Routes[E, R]) {
	g.routes = routes
	g.cur.Store(&Index[E, R]{reg: g})
}

// Load returns the Index to look names up in. It takes no lock.
func (g *Registry[E, R]) Load() *Index[E, R] { return g.cur.Load() }

// Lookup returns the route for name, or nil when nothing matches; known
// reports whether the name was found at all (a name with entries, or a
// cached one). It does not validate name: a name that is in the registry
// was validated when it got there, and the caller validates the others
// before it calls Resolve.
func (r *Index[E, R]) Lookup(name string) (rt *R, known bool) {
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

// Resolve computes the route of a valid name that Lookup did not know, and
// caches it when there are wildcard patterns. It returns nil when nothing
// matches.
func (r *Index[E, R]) Resolve(name string) *R {
	if r.wild == nil {
		return nil
	}
	return r.cache.resolve(r, name)
}

// route makes the route of name from list, or returns nil for no entries.
func (r *Index[E, R]) route(name string, list []E) *R {
	if len(list) == 0 {
		return nil
	}
	return r.reg.routes.Route(name, list)
}

// merge computes the route of a valid name from exact and wild.
func (r *Index[E, R]) merge(name string) *R {
	var list []E
	if s := r.exact.find(name); s != nil {
		if rt := s.val.route.Load(); rt != nil {
			list = append(list, r.reg.routes.Entries(rt)...)
		}
	}
	return r.route(name, r.wild.match(name, list))
}

// routeCache holds the merged routes of the names emitted while there are
// wildcard patterns, at most RouteCacheSize of them. Emits read it without
// locking; those that miss compute the route and add it under mu, which
// also serialises them with writers. A change of a wildcard pattern clears
// it; a change of a literal pattern updates the one slot it affects (see
// refresh), and forgets it when no entry matches the name any more. When
// full, it evicts a slot picked at random.
type routeCache[E, R any] struct {
	names hashTrie[slot[R]]

	mu    sync.Mutex
	evict uint64 // picks the slot to evict
}

func newRouteCache[E, R any](seed uint64) *routeCache[E, R] {
	return &routeCache[E, R]{names: hashTrie[slot[R]]{seed: seed}}
}

func (c *routeCache[E, R]) resolve(r *Index[E, R], name string) *R {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.names.find(name); s != nil {
		return s.val.route.Load() // another emitter was first
	}
	rt := r.merge(name)
	if c.names.size >= RouteCacheSize {
		c.evict = c.evict*6364136223846793005 + 1442695040888963407
		if victim, ok := c.names.pick(c.evict >> 32); ok {
			c.names.delete(victim)
		}
	}
	// The name may be a slice of a larger string the emitter built: keep
	// only its bytes.
	c.names.insert(strings.Clone(name), func(s *slot[R]) { s.route.Store(rt) })
	return rt
}

// clear forgets every route, after a change of the wildcard patterns. An
// emit that looked a name up before clear returned may still use what it
// found: it ran concurrently with the change.
func (c *routeCache[E, R]) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names.clear()
}

// refresh recomputes the cached route of name, whose literal entries (or
// whose route, see Registry.Rebuild) have changed. Writers only.
func (c *routeCache[E, R]) refresh(r *Index[E, R], name string) {
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

// AppendCopy returns a new slice holding s and then v, as Update's change
// must.
func AppendCopy[E any](s []E, v E) []E {
	out := make([]E, len(s), len(s)+1)
	copy(out, s)
	return append(out, v)
}

// DeleteCopy returns a new slice holding s without v, or nil when nothing
// is left, as Update's change must.
func DeleteCopy[E comparable](s []E, v E) []E {
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

// literal reports whether a valid pattern has no wildcard token.
func literal(pattern string) bool {
	return !strings.ContainsAny(pattern, AnyToken+RestToken)
}

// Update changes the entries registered under pattern (a valid one) and
// publishes the result to readers: a lookup that starts after Update
// returns sees it. change gets the pattern's entries (in no particular
// order) and must return a new slice, not the one it got (see AppendCopy,
// DeleteCopy). Writers only.
func (g *Registry[E, R]) Update(pattern string, change func([]E) []E) {
	r := g.cur.Load()
	if r.exact == nil {
		r = &Index[E, R]{exact: newHashTrie[slot[R]](newSeed()), wild: r.wild, cache: r.cache, reg: g}
		g.cur.Store(r)
	}
	if !literal(pattern) {
		g.updateWild(r, pattern, change)
		return
	}
	name := pattern
	s := r.exact.find(name)
	var list []E
	if s != nil {
		list = g.routes.Entries(s.val.route.Load())
	}
	list = change(list) // a new slice: Routes.Route may sort it
	switch {
	case len(list) > 0 && s != nil:
		s.val.route.Store(r.route(name, list))
	case len(list) > 0:
		rt := r.route(name, list)
		r.exact.insert(name, func(v *slot[R]) { v.route.Store(rt) })
	case s != nil: // the name's last entry is gone
		s.val.route.Store(nil)
		r.exact.delete(name)
	default:
		return
	}
	if r.wild != nil {
		r.cache.refresh(r, name)
	}
}

// updateWild changes the entries of a wildcard pattern and clears the
// route cache; an Index is published only when the first wildcard pattern
// comes or the last one goes.
func (g *Registry[E, R]) updateWild(r *Index[E, R], pattern string, change func([]E) []E) {
	wild := r.wild
	if wild == nil {
		wild = &wnode[E]{}
	}
	wild.set(r.exact.seed, pattern, change)
	switch {
	case wild.empty():
		g.cur.Store(&Index[E, R]{exact: r.exact, reg: g})
	case r.wild == nil:
		g.cur.Store(&Index[E, R]{exact: r.exact, wild: wild, cache: newRouteCache[E, R](r.exact.seed), reg: g})
	default:
		r.cache.clear()
	}
}

// Rebuild makes the routes of a valid name again, with the same entries,
// after something Routes.Route puts in them has changed (the eventbus: the
// name's declared type). Writers only.
func (g *Registry[E, R]) Rebuild(name string) {
	r := g.cur.Load()
	if s := r.exact.find(name); s != nil {
		if rt := s.val.route.Load(); rt != nil {
			s.val.route.Store(r.route(name, slices.Clone(g.routes.Entries(rt))))
		}
	}
	if r.wild != nil {
		r.cache.refresh(r, name)
	}
}
