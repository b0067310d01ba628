package registry

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemoFindsWhatItWasGiven(t *testing.T) {
	var c Memo[fakeRoute]
	var version atomic.Uint64
	const name = "memo.name"
	rt := &fakeRoute{name: name}
	assert.Nil(t, c.Find(name, &version), "nothing remembered yet")
	c.Put(name, version.Load(), rt)
	assert.Same(t, rt, c.Find(name, &version), "the same string finds its route")
	assert.Nil(t, c.Find(strings.Clone(name), &version), "the same bytes elsewhere are another key")
	assert.Nil(t, c.Find(name[:len(name)-1], &version), "a prefix of the same bytes is another key")

	version.Add(1)
	assert.Nil(t, c.Find(name, &version), "a route is not used past its version")
	c.Put(name, version.Load()-1, rt)
	assert.Nil(t, c.Find(name, &version), "a route looked up at an older version is not used")
	c.Put(name, version.Load(), rt)
	assert.Same(t, rt, c.Find(name, &version))
}

func TestMemoSlotsNeverTear(t *testing.T) {
	// Emitters put and find names that share slots (more names than slots),
	// concurrently: Find returns nil or the route put for that very name,
	// never one of another name sharing the slot.
	var c Memo[fakeRoute]
	var version atomic.Uint64
	names := make([]string, 4*MemoSlots)
	routes := make([]*fakeRoute, len(names))
	for i := range names {
		names[i] = "n." + strconv.Itoa(i)
		routes[i] = &fakeRoute{name: names[i]}
	}
	rounds := 20_000
	if testing.Short() {
		rounds = 2_000
	}
	var wg sync.WaitGroup
	var found atomic.Int64
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				k := (i*7 + g*13) % len(names)
				c.Put(names[k], version.Load(), routes[k])
				k = (i*5 + g) % len(names)
				if rt := c.Find(names[k], &version); rt != nil {
					if !assert.Equal(t, names[k], rt.name, "route found for %q", names[k]) {
						return
					}
					found.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	assert.Positive(t, found.Load(), "some lookups found their route")
	for i := range c.slots {
		s := &c.slots[i]
		if rt := s.rt.Load(); rt != nil {
			p, n := s.name.Load(), s.n.Load()
			require.Equal(t, rt.name, unsafe.String(p, int(n)), "slot %d holds its name's route", i)
		}
	}
}
