package eventbus

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// The registry maps event names to the listeners that match them.
//
// Writers (RegisterListener, Unregister) hold EventManager.mu. Readers (every
// emit) take no lock: they load an immutable *registry through an atomic
// pointer and find a precomputed *route for the name:
//
//   - literal patterns live in exact, a map of name → slot. The map is copied
//     only when a new name appears; changing a name's listeners swaps the
//     route inside its slot.
//   - wildcard patterns live in a persistent token trie (a writer copies only
//     the path it changes). When there is any, the merged route of every name
//     emitted is cached per registry value (see routeCache), so a change
//     invalidates the cache by publishing a new registry.
type registry[T any] struct {
	exact map[string]*slot[T]
	wild  *node[T]      // nil when no wildcard pattern is registered
	cache routeCache[T] // used only when wild != nil
}

type slot[T any] struct {
	route atomic.Pointer[route[T]] // nil when the name has no listener
}

// route is everything an emit needs to know about one event name's
// listeners. It is immutable.
type route[T any] struct {
	all   []*entry[T] // priority order: EmitSync calls these
	plain []*entry[T] // priority order: one shared-queue delivery runs these
	boxed []*entry[T] // each gets its own mailbox delivery
}

// lookup returns the route for name, or nil when nothing matches. It does not
// validate name: a name that is in the registry was validated when it got
// there, and the caller validates the others.
func (r *registry[T]) lookup(name string) (rt *route[T], known bool) {
	if r.wild == nil {
		if s := r.exact[name]; s != nil {
			return s.route.Load(), true
		}
		return nil, false
	}
	return r.cache.load(name)
}

// resolve computes the route of a valid name that lookup did not know, and
// caches it while the cache has room.
func (r *registry[T]) resolve(name string) *route[T] {
	if r.wild == nil {
		return nil
	}
	var list []*entry[T]
	if s := r.exact[name]; s != nil {
		if rt := s.route.Load(); rt != nil {
			list = append(list, rt.all...)
		}
	}
	list = r.wild.match(name, list)
	return r.cache.store(name, newRoute(list))
}

// routeCache maps names to their merged routes. Emits read an immutable
// map through an atomic pointer (hot), as fast as the exact-name map; names
// resolved since it was built wait in a locked map (cold) and are promoted
// together into a new hot map once the cold side has seen as many lookups
// as an eighth of the hot map's size, so a promotion's copy is paid for by
// the lookups before it. It holds at most _routeCacheSize names.
type routeCache[T any] struct {
	hot atomic.Pointer[map[string]*route[T]]

	mu       sync.Mutex
	cold     map[string]*route[T]
	coldHits int
	size     int
}

func (c *routeCache[T]) load(name string) (*route[T], bool) {
	if hot := c.hot.Load(); hot != nil {
		if rt, ok := (*hot)[name]; ok {
			return rt, true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rt, ok := c.cold[name]
	if ok {
		c.hit()
	}
	return rt, ok
}

// store caches rt as name's route unless the cache is full or another
// emitter stored one first, and returns the cached route.
func (c *routeCache[T]) store(name string, rt *route[T]) *route[T] {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.cold[name]; ok {
		return old
	}
	if hot := c.hot.Load(); hot != nil {
		if old, ok := (*hot)[name]; ok {
			return old
		}
	}
	if c.size >= _routeCacheSize {
		return rt
	}
	if c.cold == nil {
		c.cold = map[string]*route[T]{}
	}
	c.cold[name] = rt
	c.size++
	c.hit()
	return rt
}

// hit counts a lookup that went to the cold map, promoting it when due.
// c.mu must be held.
func (c *routeCache[T]) hit() {
	c.coldHits++
	var hot map[string]*route[T]
	if p := c.hot.Load(); p != nil {
		hot = *p
	}
	if c.coldHits < 16+len(hot)/8 {
		return
	}
	next := make(map[string]*route[T], len(hot)+len(c.cold))
	maps.Copy(next, hot)
	maps.Copy(next, c.cold)
	c.hot.Store(&next)
	clear(c.cold)
	c.coldHits = 0
}

// newRoute sorts listeners by priority (then registration order) and splits
// them by how Emit delivers to them. It returns nil for no listeners.
func newRoute[T any](list []*entry[T]) *route[T] {
	if len(list) == 0 {
		return nil
	}
	slices.SortFunc(list, func(a, b *entry[T]) int {
		if a.priority != b.priority {
			return b.priority - a.priority
		}
		return int(a.seq - b.seq)
	})
	rt := &route[T]{all: list, plain: list}
	if !slices.ContainsFunc(list, (*entry[T]).boxed) {
		return rt // the common case: no listener has a delivery mode
	}
	rt.plain = nil
	for _, e := range list {
		if e.boxed() {
			rt.boxed = append(rt.boxed, e)
		} else {
			rt.plain = append(rt.plain, e)
		}
	}
	return rt
}

// node is a persistent trie over pattern tokens. A node is never changed
// once published; writers copy the nodes on the path they change.
type node[T any] struct {
	next map[string]*node[T] // literal tokens
	star *node[T]            // '*'
	end  []*entry[T]         // patterns that end at this node
	rest []*entry[T]         // patterns that end with '>' after this node
}

func (n *node[T]) empty() bool {
	return n == nil || (len(n.next) == 0 && n.star == nil && len(n.end) == 0 && len(n.rest) == 0)
}

func (n *node[T]) clone() *node[T] {
	c := &node[T]{star: n.star, end: n.end, rest: n.rest}
	if len(n.next) > 0 {
		c.next = make(map[string]*node[T], len(n.next))
		for k, v := range n.next {
			c.next[k] = v
		}
	}
	return c
}

// with returns a copy of n (nil is an empty node) in which fn has changed the
// node at the token path toks; empty nodes are pruned, and the result is nil
// when the whole trie is empty.
func (n *node[T]) with(toks []string, fn func(*node[T])) *node[T] {
	var c *node[T]
	if n == nil {
		c = &node[T]{}
	} else {
		c = n.clone()
	}
	switch {
	case len(toks) == 0:
		fn(c)
	case toks[0] == anyToken:
		c.star = c.star.with(toks[1:], fn)
	default:
		child := c.next[toks[0]].with(toks[1:], fn)
		if c.next == nil {
			c.next = map[string]*node[T]{}
		}
		if child == nil {
			delete(c.next, toks[0])
		} else {
			c.next[toks[0]] = child
		}
	}
	if c.empty() {
		return nil
	}
	return c
}

// add returns a trie that also holds e under its (wildcard) pattern.
func (n *node[T]) add(e *entry[T]) *node[T] {
	toks, rest := splitPattern(e.pattern)
	return n.with(toks, func(c *node[T]) {
		if rest {
			c.rest = appendCopy(c.rest, e)
		} else {
			c.end = appendCopy(c.end, e)
		}
	})
}

// remove returns a trie without e.
func (n *node[T]) remove(e *entry[T]) *node[T] {
	toks, rest := splitPattern(e.pattern)
	return n.with(toks, func(c *node[T]) {
		if rest {
			c.rest = deleteCopy(c.rest, e)
		} else {
			c.end = deleteCopy(c.end, e)
		}
	})
}

// match appends the listeners whose patterns match name (a valid, non-empty
// name relative to n) to out.
func (n *node[T]) match(name string, out []*entry[T]) []*entry[T] {
	out = append(out, n.rest...) // '>' matches the one or more tokens left
	tok, rest, more := strings.Cut(name, ".")
	if c := n.next[tok]; c != nil {
		out = c.matchAfter(rest, more, out)
	}
	if n.star != nil {
		out = n.star.matchAfter(rest, more, out)
	}
	return out
}

func (n *node[T]) matchAfter(rest string, more bool, out []*entry[T]) []*entry[T] {
	if !more {
		return append(out, n.end...)
	}
	return n.match(rest, out)
}

// splitPattern splits a valid pattern into tokens, dropping a final '>' and
// reporting it.
func splitPattern(p string) (toks []string, rest bool) {
	toks = strings.Split(p, ".")
	if toks[len(toks)-1] == restToken {
		return toks[:len(toks)-1], true
	}
	return toks, false
}

func appendCopy[E any](s []E, v E) []E {
	out := make([]E, len(s), len(s)+1)
	copy(out, s)
	return append(out, v)
}

func deleteCopy[E comparable](s []E, v E) []E {
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
	m.listeners.Add(-1)
}

// update changes the listeners registered under e.pattern and publishes the
// result to readers. m.mu must be held.
func (m *EventManager[T]) update(e *entry[T], change func([]*entry[T]) []*entry[T]) {
	list := change(m.byPattern[e.pattern])
	if len(list) == 0 {
		delete(m.byPattern, e.pattern)
	} else {
		m.byPattern[e.pattern] = list
	}
	old := m.reg.Load()
	if !isLiteral(e.pattern) {
		next := &registry[T]{exact: old.exact}
		if containsEntry(list, e) {
			next.wild = old.wild.add(e)
		} else {
			next.wild = old.wild.remove(e)
		}
		m.reg.Store(next)
		return
	}
	exact := old.exact
	s := exact[e.pattern]
	if s == nil {
		// A new name: readers need a new map. Names whose listeners are all
		// gone keep their (empty) slot, so that registering and unregistering
		// one listener over and over does not copy the map each time.
		exact = maps.Clone(exact)
		if exact == nil {
			exact = map[string]*slot[T]{}
		}
		s = &slot[T]{}
		exact[e.pattern] = s
	}
	s.route.Store(newRoute(append([]*entry[T](nil), list...)))
	if old.wild != nil || s != old.exact[e.pattern] {
		m.reg.Store(&registry[T]{exact: exact, wild: old.wild})
	}
}

func containsEntry[T any](list []*entry[T], e *entry[T]) bool {
	for _, x := range list {
		if x == e {
			return true
		}
	}
	return false
}
