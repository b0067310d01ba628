package eventbus_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestListenerCount(t *testing.T) {
	m := newManager[int](t)
	assert.Zero(t, m.ListenerCount("order.created"), "empty registry")
	assert.False(t, m.HasListeners("order.created"), "empty registry")

	exact := register(t, m, "order.created")
	register(t, m, "order.created")
	assert.Equal(t, 2, m.ListenerCount("order.created"), "two literal listeners")
	assert.True(t, m.HasListeners("order.created"))
	assert.Zero(t, m.ListenerCount("order.shipped"), "another name")

	wild := register(t, m, "order.*")
	register(t, m, ">")
	assert.Equal(t, 4, m.ListenerCount("order.created"), "literal and wildcard listeners")
	assert.Equal(t, 2, m.ListenerCount("order.shipped"), "wildcard listeners only")
	assert.Equal(t, 1, m.ListenerCount("user"), "'>' alone")

	exact.Unregister()
	assert.Equal(t, 3, m.ListenerCount("order.created"), "after Unregister of a literal listener")
	wild.Unregister()
	assert.Equal(t, 2, m.ListenerCount("order.created"), "after Unregister of a wildcard listener")
	assert.Equal(t, 1, m.ListenerCount("order.shipped"))

	for _, bad := range []string{"", "order..created", "order.*", "order.>", " x"} {
		assert.Zero(t, m.ListenerCount(bad), "invalid name %q matches nothing", bad)
		assert.False(t, m.HasListeners(bad), "invalid name %q", bad)
	}
}

func TestListenerCountSeesOnceAndClose(t *testing.T) {
	m := newManager[int](t)
	_, err := m.RegisterListener("job.done", work, eventbus.Once())
	require.NoError(t, err)
	assert.Equal(t, 1, m.ListenerCount("job.done"), "a Once listener counts until it fires")
	require.NoError(t, m.EmitSync(context.Background(), "job.done", 1))
	assert.Zero(t, m.ListenerCount("job.done"), "a Once listener that fired is gone")

	register(t, m, "job.*")
	require.NoError(t, m.Close(context.Background()))
	assert.Equal(t, 1, m.ListenerCount("job.done"), "Close does not change the count")
}

func TestListenerCountDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	m := newManager[int](t)
	register(t, m, "order.created")
	assertNoAllocs(t, m, "order.created", 1)
	assertNoAllocs(t, m, "nobody.listens", 0) // no wildcard: not cached, still free
	for i := range 1000 {
		register(t, m, "svc"+strconv.Itoa(i)+".*.>")
	}
	register(t, m, "order.*")
	assertNoAllocs(t, m, "order.created", 2)
	assertNoAllocs(t, m, "order.shipped", 1)
	assertNoAllocs(t, m, "nobody.listens", 0)
}

func assertNoAllocs(t *testing.T, m *eventbus.EventManager[int], name string, want int) {
	t.Helper()
	var got int
	allocs := testing.AllocsPerRun(100, func() {
		got = m.ListenerCount(name)
		if !m.HasListeners(name) {
			got = -got
		}
	})
	if want == 0 {
		assert.Zero(t, got, "ListenerCount(%q)", name)
	} else {
		assert.Equal(t, want, got, "ListenerCount(%q), HasListeners agreeing", name)
	}
	assert.Zero(t, allocs, "allocations per ListenerCount(%q)+HasListeners", name)
}

func register(t testing.TB, m *eventbus.EventManager[int], pattern string, opts ...eventbus.ListenerOption) *eventbus.Listener {
	t.Helper()
	l, err := m.RegisterListener(pattern, work, opts...)
	require.NoError(t, err, "register %q", pattern)
	return l
}

// churnPairs is how many register/unregister pairs the memory tests make:
// the million, fewer under the race detector or -short, where a
// leak of one pointer per pair still shows far above the margin.
func churnPairs() int {
	if raceEnabled || testing.Short() {
		return 100_000
	}
	return 1_000_000
}

// heapMargin is the growth of the live heap the memory tests allow: 10% of
// what it was, and at least 64 KiB for the runtime's own bookkeeping.
func heapMargin(before uint64) uint64 { return max(before/10, 64<<10) }

func TestRegistryMemoryComesBackAfterChurn(t *testing.T) {
	cases := map[string]func(i int) string{
		"literal":  func(i int) string { return "conn." + strconv.Itoa(i) + ".closed" },
		"wildcard": func(i int) string { return "user." + strconv.Itoa(i) + ".>" },
	}
	for name, pattern := range cases {
		t.Run(name, func(t *testing.T) {
			m := newManager[int](t)
			register(t, m, "stays.put") // live names are kept: one here, one wildcard
			register(t, m, "stays.*")
			for i := range 1000 { // let every lazily made structure exist
				register(t, m, pattern(-i)).Unregister()
			}
			before := liveHeap()
			pairs := churnPairs()
			for i := range pairs {
				register(t, m, pattern(i)).Unregister()
			}
			after := liveHeap()
			t.Logf("%d pairs: live heap %d -> %d bytes", pairs, before, after)
			assert.LessOrEqual(t, after, before+heapMargin(before), "live heap after %d register/unregister pairs", pairs)
			assert.Equal(t, 2, m.ListenerCount("stays.put"), "stays.put and stays.* are still there")
			assert.Equal(t, 1, m.ListenerCount("stays.x"), "stays.* still matches")
		})
	}
}

func TestRegistryRouteCacheMemoryIsBounded(t *testing.T) {
	// Per-request names emitted while a wildcard pattern is registered each
	// get a cached route; the cache must forget them.
	m := newManager[int](t)
	register(t, m, "job.*.done")
	emitFresh := func(from, to int) {
		for i := from; i < to; i++ {
			name := "job." + strconv.Itoa(i) + ".done"
			l := register(t, m, name)
			require.NoError(t, m.EmitSync(context.Background(), name, 1))
			l.Unregister()
			require.NoError(t, m.EmitSync(context.Background(), "job.x"+strconv.Itoa(i)+".done", 1)) // never had its own
		}
	}
	warm := 3 * eventbus.RouteCacheSize
	emitFresh(0, warm) // fill the cache, and then some
	before := liveHeap()
	pairs := churnPairs() / 4
	emitFresh(warm, warm+pairs)
	after := liveHeap()
	t.Logf("%d names emitted: live heap %d -> %d bytes", pairs, before, after)
	assert.LessOrEqual(t, after, before+heapMargin(before), "live heap after emitting %d more fresh names", pairs)
	assert.Equal(t, 1, m.ListenerCount("job.1.done"), "the wildcard listener is still there")
}

func TestRoutesStayRightPastTheRouteCache(t *testing.T) {
	m := newManager[int](t)
	var wild, exact atomic.Int64
	_, err := m.RegisterListener("n.*", func(context.Context, eventbus.Event[int]) error { wild.Add(1); return nil })
	require.NoError(t, err)
	names := 2*eventbus.RouteCacheSize + 100
	for i := range names {
		if i%3 == 0 {
			_, err := m.RegisterListener("n."+strconv.Itoa(i), func(context.Context, eventbus.Event[int]) error { exact.Add(1); return nil })
			require.NoError(t, err)
		}
	}
	for round := range 2 { // the second round finds some names evicted
		for i := range names {
			require.NoError(t, m.EmitSync(context.Background(), "n."+strconv.Itoa(i), 1))
		}
		assert.Equal(t, int64((round+1)*names), wild.Load(), "wildcard deliveries after round %d", round)
		assert.Equal(t, int64((round+1)*((names+2)/3)), exact.Load(), "literal deliveries after round %d", round)
	}
}

// model is what the registry should hold: the live listeners in
// registration order.
type model struct {
	live []*modelListener
}

type modelListener struct {
	id       int
	pattern  string
	priority int
	l        *eventbus.Listener
}

// want returns the ids of the listeners an emit of name runs, in order.
func (md *model) want(name string) []int {
	var ls []*modelListener
	for _, ml := range md.live {
		if eventbus.MatchPattern(ml.pattern, name) {
			ls = append(ls, ml)
		}
	}
	slices.SortStableFunc(ls, func(a, b *modelListener) int { return b.priority - a.priority })
	ids := make([]int, len(ls))
	for i, ml := range ls {
		ids[i] = ml.id
	}
	return ids
}

func TestRegistryAgreesWithAModel(t *testing.T) {
	// Random registrations, unregistrations and emits over a small universe
	// of names, so that routes are cached, refreshed and invalidated in
	// every order; every emit must run exactly the listeners the model says.
	rng := rand.New(rand.NewPCG(10, 10))
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
				parts[i] = "*"
			}
		}
		if rng.IntN(4) == 0 {
			parts[len(parts)-1] = ">"
		}
		return strings.Join(parts, ".")
	}
	m := newManager[int](t)
	var md model
	var ran []int
	steps := 20_000
	if raceEnabled {
		steps = 5_000
	}
	for step := range steps {
		switch op := rng.IntN(10); {
		case op < 3 || len(md.live) == 0:
			ml := &modelListener{id: step, pattern: randPattern(), priority: rng.IntN(3)}
			var err error
			ml.l, err = m.RegisterListener(ml.pattern, func(context.Context, eventbus.Event[int]) error {
				ran = append(ran, ml.id)
				return nil
			}, eventbus.Priority(ml.priority))
			require.NoError(t, err)
			md.live = append(md.live, ml)
		case op < 5:
			i := rng.IntN(len(md.live))
			md.live[i].l.Unregister()
			md.live = slices.Delete(md.live, i, i+1)
		default:
			name := randName()
			want := md.want(name)
			if rng.IntN(2) == 0 {
				require.Equal(t, len(want), m.ListenerCount(name), "step %d: ListenerCount(%q)", step, name)
			}
			ran = ran[:0]
			require.NoError(t, m.EmitSync(context.Background(), name, 1))
			require.Equal(t, want, append([]int{}, ran...), "step %d: listeners run by EmitSync(%q)", step, name)
		}
	}
}

func TestRegistryChurnNeverHidesStableListeners(t *testing.T) {
	// While other goroutines register and unregister literal and wildcard
	// listeners on the same and other names, every emit must reach the
	// listeners that were registered before it and stay.
	m := newManager[int](t)
	var exact, wild atomic.Int64
	_, err := m.RegisterListener("s.a", func(context.Context, eventbus.Event[int]) error { exact.Add(1); return nil })
	require.NoError(t, err)
	_, err = m.RegisterListener("s.*", func(context.Context, eventbus.Event[int]) error { wild.Add(1); return nil })
	require.NoError(t, err)

	pairs := 20_000
	if raceEnabled {
		pairs = 2_000
	}
	patterns := []string{"s.a", "s.>", "s.*", ">", "c.%d", "c.%d.>", "s.a.%d", "*.a"}
	var churners, emitters sync.WaitGroup
	stop := make(chan struct{})
	for g := range 2 {
		churners.Add(1)
		go func() {
			defer churners.Done()
			for i := range pairs {
				p := strings.Replace(patterns[(i+g)%len(patterns)], "%d", strconv.Itoa(i), 1)
				l, err := m.RegisterListener(p, noop)
				if !assert.NoError(t, err) {
					return
				}
				_ = m.EmitSync(context.Background(), "c."+strconv.Itoa(i), 1)
				l.Unregister()
			}
		}()
	}
	var emitted atomic.Int64
	for range 2 {
		emitters.Add(1)
		go func() {
			defer emitters.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !assert.GreaterOrEqual(t, m.ListenerCount("s.a"), 2, "stable listeners counted") {
					return
				}
				if !assert.NoError(t, m.EmitSync(context.Background(), "s.a", 1)) {
					return
				}
				emitted.Add(1)
			}
		}()
	}
	churners.Wait()
	close(stop)
	emitters.Wait()
	assert.Equal(t, emitted.Load(), exact.Load(), "every emit reached the literal listener")
	assert.Equal(t, emitted.Load(), wild.Load(), "every emit reached the wildcard listener")
	assert.Equal(t, 2, m.ListenerCount("s.a"), "only the stable listeners are left")
	assert.Zero(t, m.ListenerCount("c.1"), "churned names are gone")
}
