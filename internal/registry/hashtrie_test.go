package registry

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nodes counts t's inner nodes and leaves (chained leaves included).
func (t *hashTrie[V]) nodes() (inner, leaves int) {
	var walk func(n *trieNode[V])
	walk = func(n *trieNode[V]) {
		switch {
		case n == nil:
		case n.kids != nil:
			inner++
			taken := 0
			for i := range n.kids.slot {
				if c := n.kids.slot[i].Load(); c != nil {
					taken++
					walk(c)
				}
			}
			if taken != n.kids.count {
				panic("inner node count " + strconv.Itoa(n.kids.count) + ", children " + strconv.Itoa(taken))
			}
		default:
			for ; n != nil; n = n.more.Load() {
				leaves++
			}
		}
	}
	for i := range t.root {
		walk(t.root[i].Load())
	}
	return inner, leaves
}

func TestHashTrieAgreesWithAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tr := newHashTrie[int](newSeed())
	want := map[string]int{}
	for step := range 50_000 {
		key := "k" + strconv.Itoa(rng.IntN(5_000))
		if _, ok := want[key]; ok && rng.IntN(2) == 0 {
			require.True(t, tr.delete(key), "step %d: delete %q", step, key)
			delete(want, key)
		} else if !ok {
			tr.insert(key, func(v *int) { *v = step })
			want[key] = step
		}
		require.Equal(t, len(want), tr.size, "step %d: size", step)
		if step%1000 == 0 {
			_, leaves := tr.nodes() // checks every inner node's count
			require.Equal(t, len(want), leaves, "step %d: leaves", step)
		}
	}
	for i := range 5_000 {
		key := "k" + strconv.Itoa(i)
		n := tr.find(key)
		v, ok := want[key]
		if assert.Equal(t, ok, n != nil, "find %q", key) && ok {
			assert.Equal(t, v, n.val, "value of %q", key)
		}
	}
	assert.False(t, tr.delete("absent"), "deleting an absent key")
	for key := range want {
		require.True(t, tr.delete(key), "delete %q", key)
	}
	inner, leaves := tr.nodes()
	assert.Zero(t, inner+leaves, "an emptied trie keeps no node")
}

func TestHashTrieCollisionsAndPruning(t *testing.T) {
	// Hashes chosen to share long prefixes, and whole hashes shared, which
	// real keys meet rarely.
	tr := newHashTrie[string](newSeed())
	cases := []struct {
		key  string
		hash uint64
	}{
		{"a", 0x1234_5678_9abc_def0},
		{"b", 0x1234_5678_9abc_def1}, // differs in the last digit only
		{"c", 0x1234_5678_9abc_def1}, // the same hash as b
		{"d", 0x1234_5678_9abc_def1}, // and again
		{"e", 0x2234_5678_9abc_def0}, // differs in the first digit
	}
	for _, c := range cases {
		tr.insertHash(c.key, c.hash, func(v *string) { *v = c.key })
	}
	for _, c := range cases {
		n := tr.findHash(c.key, c.hash)
		if assert.NotNil(t, n, "find %q", c.key) {
			assert.Equal(t, c.key, n.val)
		}
	}
	assert.Nil(t, tr.findHash("x", cases[1].hash), "a key absent from a chain")
	inner, leaves := tr.nodes()
	assert.Equal(t, 5, leaves)
	assert.Equal(t, maxDepth-1, inner, "a and b share every digit but the last")

	assert.True(t, tr.deleteHash("c", cases[2].hash), "delete from the middle of a chain")
	assert.True(t, tr.deleteHash("d", cases[3].hash), "delete the head of a chain")
	assert.NotNil(t, tr.findHash("b", cases[1].hash), "the chain's last leaf stays")
	assert.True(t, tr.deleteHash("a", cases[0].hash))
	inner, leaves = tr.nodes()
	assert.Equal(t, 2, leaves)
	assert.Zero(t, inner, "b, alone under its inner nodes, is lifted to the root")
	assert.NotNil(t, tr.findHash("b", cases[1].hash), "a lifted leaf is found")
	key, ok := tr.pick(0)
	assert.True(t, ok)
	assert.Contains(t, []string{"b", "e"}, key, "pick returns a key in the trie")

	assert.True(t, tr.deleteHash("b", cases[1].hash))
	assert.True(t, tr.deleteHash("e", cases[4].hash))
	_, ok = tr.pick(0)
	assert.False(t, ok, "pick on an empty trie")
	assert.Zero(t, tr.size)
}

func TestHashTrieReadersDuringWrites(t *testing.T) {
	// Keys that stay are found by every lookup while one writer inserts and
	// deletes others around them, splitting and pruning the nodes they are in.
	tr := newHashTrie[int](newSeed())
	const stable = 64
	for i := range stable {
		tr.insert("stable"+strconv.Itoa(i), func(v *int) { *v = i })
	}
	rounds := 20_000
	if testing.Short() {
		rounds = 2_000
	}
	var done atomic.Bool
	var readers sync.WaitGroup
	for r := range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := r; !done.Load(); i++ {
				key := "stable" + strconv.Itoa(i%stable)
				n := tr.find(key)
				if !assert.NotNil(t, n, "find %q", key) || !assert.Equal(t, i%stable, n.val) {
					return
				}
			}
		}()
	}
	for i := range rounds {
		key := "churn" + strconv.Itoa(i%512)
		if tr.find(key) == nil {
			tr.insert(key, func(v *int) { *v = -1 })
		} else {
			tr.delete(key)
		}
	}
	done.Store(true)
	readers.Wait()
}
