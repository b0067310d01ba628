package registry

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeRoute is a route as fakeRoutes makes it: the entries in priority
// order, the name it was made for, and the mark that name had then.
type fakeRoute struct {
	all  []*fakeEntry
	name string
	mark string
}

// fakeRoutes makes fakeRoutes, sorted as the eventbus sorts listeners, and
// counts how many it made. marks stands for the eventbus's declarations:
// something a route carries that can change without its entries changing.
type fakeRoutes struct {
	made  *atomic.Int64
	marks *sync.Map // name → mark
}

func newFakeRoutes() fakeRoutes {
	return fakeRoutes{made: new(atomic.Int64), marks: new(sync.Map)}
}

func (f fakeRoutes) Route(name string, list []*fakeEntry) *fakeRoute {
	f.made.Add(1)
	slices.SortFunc(list, byPriority)
	rt := &fakeRoute{all: list, name: name}
	if m, ok := f.marks.Load(name); ok {
		rt.mark = m.(string)
	}
	return rt
}

func (fakeRoutes) Entries(rt *fakeRoute) []*fakeEntry { return rt.all }

func byPriority(a, b *fakeEntry) int {
	if c := cmp.Compare(b.priority, a.priority); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// refMatch is a deliberately simple reference matcher over split tokens.
func refMatch(pattern, name string) bool {
	p, n := strings.Split(pattern, "."), strings.Split(name, ".")
	for i, tok := range p {
		if tok == RestToken {
			return len(n) > i
		}
		if i >= len(n) || (tok != AnyToken && tok != n[i]) {
			return false
		}
	}
	return len(p) == len(n)
}

// route looks name up as an emit does: Lookup, then Resolve.
func route(g *Registry[*fakeEntry, fakeRoute], name string) *fakeRoute {
	r := g.Load()
	if rt, ok := r.Lookup(name); ok {
		return rt
	}
	return r.Resolve(name)
}

// checkIndex walks g's Index and fails t unless it holds what the entries
// in live say, and nothing more: every literal pattern with entries has
// exactly its leaf in exact (whose counts are right, see nodes), the
// wildcard trie has no empty node below its root, the cache is there
// exactly when a wildcard pattern is and holds at most RouteCacheSize
// names.
func checkIndex(t *testing.T, g *Registry[*fakeEntry, fakeRoute], live []*fakeEntry) {
	t.Helper()
	r := g.Load()
	literals, wildcards := map[string]int{}, 0
	for _, e := range live {
		if literal(e.pattern) {
			literals[e.pattern]++
		} else {
			wildcards++
		}
	}
	if r.exact != nil {
		_, leaves := r.exact.nodes()
		require.Equal(t, len(literals), leaves, "leaves of exact")
		require.Equal(t, len(literals), r.exact.size, "size of exact")
		for name, n := range literals {
			s := r.exact.find(name)
			require.NotNil(t, s, "leaf of %q", name)
			require.Len(t, s.val.route.Load().all, n, "entries of %q", name)
		}
	} else {
		require.Empty(t, literals, "no exact trie, yet literal patterns")
	}
	require.Equal(t, wildcards > 0, r.wild != nil, "wild is there exactly when a wildcard pattern is")
	require.Equal(t, r.wild != nil, r.cache != nil, "cache is there exactly when wild is")
	if r.wild != nil {
		require.Equal(t, wildcards, r.wild.walk(t, true), "entries in the wildcard trie")
		require.LessOrEqual(t, r.cache.names.size, RouteCacheSize, "cached names")
		_, leaves := r.cache.names.nodes()
		require.Equal(t, r.cache.names.size, leaves, "leaves of the cache")
	}
}

// walk counts the entries under n, failing t at a node below the root that
// is empty (it should have been pruned).
func (n *wnode[E]) walk(t *testing.T, root bool) int {
	t.Helper()
	if !root {
		require.False(t, n.empty(), "an empty wildcard node is left in the trie")
	}
	count := 0
	if e := n.end.Load(); e != nil {
		require.NotEmpty(t, *e, "an empty end list is stored")
		count += len(*e)
	}
	if e := n.rest.Load(); e != nil {
		require.NotEmpty(t, *e, "an empty rest list is stored")
		count += len(*e)
	}
	if c := n.star.Load(); c != nil {
		count += c.walk(t, false)
	}
	if next := n.next.Load(); next != nil {
		require.Positive(t, next.size, "an empty child trie is kept")
		var visit func(tn *trieNode[*wnode[E]])
		visit = func(tn *trieNode[*wnode[E]]) {
			switch {
			case tn == nil:
			case tn.kids != nil:
				for i := range tn.kids.slot {
					visit(tn.kids.slot[i].Load())
				}
			default:
				for ; tn != nil; tn = tn.more.Load() {
					count += tn.val.walk(t, false)
				}
			}
		}
		for i := range next.root {
			visit(next.root[i].Load())
		}
	}
	return count
}

func TestRegistryAgreesWithAReference(t *testing.T) {
	// Random updates of literal and wildcard patterns and lookups over a
	// small universe of names, so that routes are cached, refreshed and
	// cleared in every order: every lookup must return exactly the entries
	// whose patterns match, in priority order, and the index must hold
	// nothing more than the live entries (at most 200, several per pattern).
	rng := rand.New(rand.NewPCG(3, 4))
	toks := []string{"a", "b", "c"}
	randName := func() string {
		parts := make([]string, 1+rng.IntN(3))
		for i := range parts {
			parts[i] = toks[rng.IntN(len(toks))]
		}
		return strings.Join(parts, ".")
	}
	randPattern := func() string {
		parts := strings.Split(randName(), ".")
		for i := range parts {
			if rng.IntN(4) == 0 {
				parts[i] = AnyToken
			}
		}
		if rng.IntN(4) == 0 {
			parts[len(parts)-1] = RestToken
		}
		return strings.Join(parts, ".")
	}
	var g Registry[*fakeEntry, fakeRoute]
	g.Init(newFakeRoutes())
	var live []*fakeEntry
	for step := range 20_000 {
		switch op := rng.IntN(10); {
		case len(live) == 0 || op < 3 && len(live) < 200:
			e := &fakeEntry{pattern: randPattern(), priority: rng.IntN(3), seq: step}
			g.Update(e.pattern, func(l []*fakeEntry) []*fakeEntry { return AppendCopy(l, e) })
			live = append(live, e)
		case op < 5:
			i := rng.IntN(len(live))
			e := live[i]
			g.Update(e.pattern, func(l []*fakeEntry) []*fakeEntry { return DeleteCopy(l, e) })
			live = slices.Delete(live, i, i+1)
		default:
			name := randName()
			var want []*fakeEntry
			for _, e := range live {
				if refMatch(e.pattern, name) {
					want = append(want, e)
				}
			}
			slices.SortFunc(want, byPriority)
			rt := route(&g, name)
			if len(want) == 0 {
				require.Nil(t, rt, "step %d: route of %q", step, name)
				continue
			}
			require.NotNil(t, rt, "step %d: route of %q", step, name)
			require.Equal(t, want, rt.all, "step %d: entries of %q", step, name)
			require.Equal(t, name, rt.name, "step %d: the route was made for its name", step)
		}
		if step%500 == 0 {
			checkIndex(t, &g, live)
		}
	}
	for _, e := range live {
		g.Update(e.pattern, func(l []*fakeEntry) []*fakeEntry { return DeleteCopy(l, e) })
	}
	checkIndex(t, &g, nil)
	inner, leaves := g.Load().exact.nodes()
	assert.Zero(t, inner+leaves, "an emptied registry keeps no node")
}

func TestRegistryRouteCacheIsBounded(t *testing.T) {
	// Names resolved while a wildcard pattern is registered are cached, at
	// most RouteCacheSize of them; evicted names resolve again, rightly.
	var g Registry[*fakeEntry, fakeRoute]
	g.Init(newFakeRoutes())
	wild := &fakeEntry{pattern: "n.*", seq: 1}
	g.Update(wild.pattern, func(l []*fakeEntry) []*fakeEntry { return AppendCopy(l, wild) })
	names := 2*RouteCacheSize + 100
	for round := range 2 {
		for i := range names {
			name := "n." + strconv.Itoa(i)
			rt := route(&g, name)
			require.NotNil(t, rt, "round %d: route of %q", round, name)
			require.Equal(t, []*fakeEntry{wild}, rt.all, "round %d: entries of %q", round, name)
		}
		assert.Equal(t, RouteCacheSize, g.Load().cache.names.size, "round %d: the cache is full, not more", round)
	}
	assert.Nil(t, route(&g, "m.1"), "a name no pattern matches")
	checkIndex(t, &g, []*fakeEntry{wild})
}

func TestRegistryCachesMissesAndForgetsThem(t *testing.T) {
	// Without wildcard patterns a name without entries is not cached (and
	// Resolve makes nothing); with one, its miss is cached as a nil route
	// until a literal entry for it comes, and forgotten when it goes.
	f := newFakeRoutes()
	var g Registry[*fakeEntry, fakeRoute]
	g.Init(f)
	rt, known := g.Load().Lookup("a.b")
	assert.Nil(t, rt)
	assert.False(t, known, "an empty registry knows no name")
	assert.Nil(t, g.Load().Resolve("a.b"))

	w := &fakeEntry{pattern: "x.>", seq: 1}
	g.Update(w.pattern, func(l []*fakeEntry) []*fakeEntry { return AppendCopy(l, w) })
	assert.Nil(t, g.Load().Resolve("a.b"), "nothing matches a.b")
	rt, known = g.Load().Lookup("a.b")
	assert.Nil(t, rt)
	assert.True(t, known, "the miss is cached")

	e := &fakeEntry{pattern: "a.b", seq: 2}
	g.Update(e.pattern, func(l []*fakeEntry) []*fakeEntry { return AppendCopy(l, e) })
	rt, known = g.Load().Lookup("a.b")
	require.True(t, known)
	require.NotNil(t, rt, "a literal entry refreshes the cached miss")
	assert.Equal(t, []*fakeEntry{e}, rt.all)

	g.Update(e.pattern, func(l []*fakeEntry) []*fakeEntry { return DeleteCopy(l, e) })
	rt, known = g.Load().Lookup("a.b")
	assert.Nil(t, rt)
	assert.False(t, known, "a name whose last entry went is forgotten by the cache")
	checkIndex(t, &g, []*fakeEntry{w})

	g.Update(w.pattern, func(l []*fakeEntry) []*fakeEntry { return DeleteCopy(l, w) })
	assert.Nil(t, g.Load().wild, "the last wildcard pattern gone, the index has no wild trie")
	checkIndex(t, &g, nil)
}

func TestRegistryRebuild(t *testing.T) {
	// Rebuild remakes the routes of a name, literal and cached, with the
	// same entries in the same order and what Route puts in them now.
	f := newFakeRoutes()
	var g Registry[*fakeEntry, fakeRoute]
	g.Init(f)
	a := &fakeEntry{pattern: "a.b", priority: 0, seq: 1}
	b := &fakeEntry{pattern: "a.b", priority: 2, seq: 2}
	for _, e := range []*fakeEntry{a, b} {
		g.Update(e.pattern, func(l []*fakeEntry) []*fakeEntry { return AppendCopy(l, e) })
	}
	f.marks.Store("a.b", "v1")
	before := route(&g, "a.b")
	assert.Empty(t, before.mark, "marked after the route was made")
	g.Rebuild("a.b")
	after := route(&g, "a.b")
	assert.Equal(t, "v1", after.mark, "a literal name's route is remade")
	assert.Equal(t, []*fakeEntry{b, a}, after.all, "with the same entries, in priority order")
	assert.Equal(t, []*fakeEntry{b, a}, before.all, "the old route is left as it was")

	w := &fakeEntry{pattern: "a.*", priority: 1, seq: 3}
	g.Update(w.pattern, func(l []*fakeEntry) []*fakeEntry { return AppendCopy(l, w) })
	assert.Equal(t, "v1", route(&g, "a.b").mark)
	assert.Empty(t, route(&g, "a.c").mark)
	f.marks.Store("a.b", "v2")
	f.marks.Store("a.c", "v2")
	g.Rebuild("a.b")
	g.Rebuild("a.c")
	assert.Equal(t, "v2", route(&g, "a.b").mark, "a cached merged route is remade")
	assert.Equal(t, []*fakeEntry{b, w, a}, route(&g, "a.b").all)
	assert.Equal(t, "v2", route(&g, "a.c").mark, "a cached wildcard-only route is remade")
	g.Rebuild("z.z") // a name the registry does not know: nothing to do
	checkIndex(t, &g, []*fakeEntry{a, b, w})
}

func TestRegistryReadersDuringUpdates(t *testing.T) {
	// Entries that stay are found by every lookup while one writer adds and
	// removes others, literal and wildcard, on the same and other names:
	// the index is swapped, the cache cleared and refreshed under the
	// readers.
	var g Registry[*fakeEntry, fakeRoute]
	g.Init(newFakeRoutes())
	stayLit := &fakeEntry{pattern: "s.a", priority: 1, seq: -2}
	stayWild := &fakeEntry{pattern: "s.*", seq: -1}
	for _, e := range []*fakeEntry{stayLit, stayWild} {
		g.Update(e.pattern, func(l []*fakeEntry) []*fakeEntry { return AppendCopy(l, e) })
	}
	rounds := 20_000
	if testing.Short() {
		rounds = 2_000
	}
	var done atomic.Bool
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for !done.Load() {
				rt := route(&g, "s.a")
				if !assert.NotNil(t, rt) || !assert.GreaterOrEqual(t, len(rt.all), 2) {
					return
				}
				if !assert.Contains(t, rt.all, stayLit) || !assert.Contains(t, rt.all, stayWild) {
					return
				}
			}
		}()
	}
	patterns := []string{"s.a", "s.>", "s.*", ">", "c.%d", "c.%d.>", "s.a.%d", "*.a"}
	for i := range rounds {
		e := &fakeEntry{pattern: strings.Replace(patterns[i%len(patterns)], "%d", strconv.Itoa(i), 1), seq: i}
		g.Update(e.pattern, func(l []*fakeEntry) []*fakeEntry { return AppendCopy(l, e) })
		route(&g, "c."+strconv.Itoa(i))
		g.Update(e.pattern, func(l []*fakeEntry) []*fakeEntry { return DeleteCopy(l, e) })
	}
	done.Store(true)
	readers.Wait()
	checkIndex(t, &g, []*fakeEntry{stayLit, stayWild})
	assert.Equal(t, []*fakeEntry{stayLit, stayWild}, route(&g, "s.a").all)
}

func TestCopyHelpers(t *testing.T) {
	a, b := &fakeEntry{seq: 1}, &fakeEntry{seq: 2}
	one := AppendCopy(nil, a)
	two := AppendCopy(one, b)
	assert.Equal(t, []*fakeEntry{a}, one, "AppendCopy leaves its input alone")
	assert.Equal(t, []*fakeEntry{a, b}, two)
	assert.Equal(t, []*fakeEntry{b}, DeleteCopy(two, a))
	assert.Equal(t, []*fakeEntry{a, b}, two, "DeleteCopy leaves its input alone")
	assert.Nil(t, DeleteCopy(one, a), "nothing left is nil")
	assert.Equal(t, []*fakeEntry{a}, DeleteCopy(one, b), "deleting an absent entry")
	assert.NotSame(t, &one[0], &DeleteCopy(one, b)[0], "a new slice even when nothing is deleted")
}
