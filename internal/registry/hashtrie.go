package registry

import "sync/atomic"

// hashTrie maps strings to values of type V. It is a hash array mapped trie
// whose nodes are arrays of atomic pointers indexed by successive digits of
// the key's hash (see strhash; seeded at random, so that keys chosen by a
// client cannot be made to collide): 4 bits at the root, held in the trie
// itself, then 6 bits per inner node, so that a trie of 100,000 keys is
// about three nodes deep (a root of 10 bits saves a level on paper and
// nothing in a lookup: its slots miss the cache as the nodes would).
// Lookups take no lock and may run at any time; writers must be serialised
// by their caller. Every change is published by one atomic store, so a
// lookup sees each insert or delete entirely or not at all.
//
// A change costs O(depth): nothing is copied but the node being split.
// Deleting a key prunes the inner nodes it leaves empty and lifts a lone
// leaf into its parent, so the trie holds memory for the keys it has, not
// for the keys it ever had.
//
// A value is set by insert's init before its leaf is published, and leaves
// are never copied or moved between tries, so a V may hold atomics that
// readers load and writers store after publication.
type hashTrie[V any] struct {
	seed uint64
	root [1 << rootBits]atomic.Pointer[trieNode[V]]
	size int // number of keys; writers only
}

const (
	rootBits  = 4
	rootShift = 64 - rootBits // the root's digit is the hash's top bits
	nodeBits  = 6             // rootShift is a multiple: the last digit is whole
	nodeMask  = 1<<nodeBits - 1
	// maxDepth is the most nodes a path holds, the root's slot included.
	maxDepth = 1 + rootShift/nodeBits
)

// trieNode is an inner node when kids is not nil, and a leaf otherwise.
type trieNode[V any] struct {
	kids *children[V] // set when made, never changed
	hash uint64
	key  string
	more atomic.Pointer[trieNode[V]] // next leaf with the same hash: rare
	val  V
}

// children are an inner node's slots, and how many of them are taken
// (writers only: it tells a delete at once whether to prune the node).
type children[V any] struct {
	count int
	slot  [1 << nodeBits]atomic.Pointer[trieNode[V]]
}

// inner is an inner node and its children in one allocation, so that a
// lookup finds them side by side in memory.
type inner[V any] struct {
	node trieNode[V]
	kids children[V]
}

func newInner[V any]() *trieNode[V] {
	in := new(inner[V])
	in.node.kids = &in.kids
	return &in.node
}

func newHashTrie[V any](seed uint64) *hashTrie[V] {
	return &hashTrie[V]{seed: seed}
}

func (t *hashTrie[V]) hash(key string) uint64 { return strhash(key, t.seed) }

// find returns key's leaf, or nil. t may be nil.
func (t *hashTrie[V]) find(key string) *trieNode[V] {
	if t == nil {
		return nil
	}
	return t.findHash(key, t.hash(key))
}

func (t *hashTrie[V]) findHash(key string, h uint64) *trieNode[V] {
	n := t.root[h>>rootShift].Load()
	for shift := uint(rootShift - nodeBits); n != nil && n.kids != nil; shift -= nodeBits {
		n = n.kids.slot[h>>shift&nodeMask].Load()
	}
	for ; n != nil; n = n.more.Load() {
		if n.hash == h && n.key == key {
			return n
		}
	}
	return nil
}

// insert adds a leaf for key, which must not be in t, and returns it; init
// sets the leaf's value before any reader can see it. Writers only.
func (t *hashTrie[V]) insert(key string, init func(*V)) *trieNode[V] {
	return t.insertHash(key, t.hash(key), init)
}

func (t *hashTrie[V]) insertHash(key string, h uint64, init func(*V)) *trieNode[V] {
	leaf := &trieNode[V]{hash: h, key: key}
	init(&leaf.val)
	slot, shift := &t.root[h>>rootShift], uint(rootShift) // shift: slot's digit
	var parent *children[V]                               // nil at the root
	for {
		n := slot.Load()
		next := leaf
		switch {
		case n == nil:
			if parent != nil {
				parent.count++
			}
		case n.kids != nil:
			shift -= nodeBits
			parent = n.kids
			slot = &parent.slot[h>>shift&nodeMask]
			continue
		case n.hash == h: // the whole hash collides: chain the leaves
			leaf.more.Store(n)
		default:
			next = split(n, leaf, shift-nodeBits)
		}
		slot.Store(next)
		t.size++
		return leaf
	}
}

// split returns a new inner node that holds leaves a and b, whose hashes
// differ, and whose digit for it is at shift; a stays where it is until the
// caller publishes the result in its place.
func split[V any](a, b *trieNode[V], shift uint) *trieNode[V] {
	in := newInner[V]()
	ia, ib := a.hash>>shift&nodeMask, b.hash>>shift&nodeMask
	if ia == ib {
		in.kids.slot[ia].Store(split(a, b, shift-nodeBits))
		in.kids.count = 1
	} else {
		in.kids.slot[ia].Store(a)
		in.kids.slot[ib].Store(b)
		in.kids.count = 2
	}
	return in
}

// delete removes key's leaf and reports whether there was one. Writers only.
func (t *hashTrie[V]) delete(key string) bool {
	return t.deleteHash(key, t.hash(key))
}

func (t *hashTrie[V]) deleteHash(key string, h uint64) bool {
	// path[d] is the slot that holds the node at depth d, and kids[d] the
	// children it is one of (nil for the root's).
	var path [maxDepth]*atomic.Pointer[trieNode[V]]
	var kids [maxDepth]*children[V]
	slot, depth, shift := &t.root[h>>rootShift], 0, uint(rootShift)
	for {
		path[depth] = slot
		n := slot.Load()
		if n == nil {
			return false
		}
		if n.kids == nil {
			break
		}
		shift -= nodeBits
		kids[depth+1] = n.kids
		slot, depth = &n.kids.slot[h>>shift&nodeMask], depth+1
	}
	var prev *trieNode[V]
	for n := slot.Load(); n != nil; prev, n = n, n.more.Load() {
		if n.hash != h || n.key != key {
			continue
		}
		switch {
		case prev != nil:
			prev.more.Store(n.more.Load())
		case n.more.Load() != nil:
			slot.Store(n.more.Load())
		default:
			slot.Store(nil)
			if kids[depth] != nil {
				kids[depth].count--
			}
		}
		t.size--
		prune(path[:depth+1], kids[:depth+1])
		return true
	}
	return false
}

// prune walks up path and kids (see deleteHash) from the inner node whose
// children are at the end: an inner node left without children is taken
// out of its slot, and one left with a single leaf is replaced by that
// leaf, which a lookup finds as well one level up. A lookup already inside a
// node taken out still finds what it held.
func prune[V any](path []*atomic.Pointer[trieNode[V]], kids []*children[V]) {
	for d := len(path) - 1; d > 0; d-- {
		c := kids[d]
		switch {
		case c.count == 0:
			path[d-1].Store(nil)
			if kids[d-1] != nil {
				kids[d-1].count--
			}
		case c.count == 1:
			var only *trieNode[V]
			for i := range c.slot {
				if only = c.slot[i].Load(); only != nil {
					break
				}
			}
			if only.kids != nil {
				return
			}
			path[d-1].Store(only)
		default:
			return
		}
	}
}

// clear deletes every key. Writers only.
func (t *hashTrie[V]) clear() {
	for i := range t.root {
		t.root[i].Store(nil)
	}
	t.size = 0
}

// pick returns the key of some leaf, picked by the digits of r, or false
// when t is empty. Writers use it to evict.
func (t *hashTrie[V]) pick(r uint64) (string, bool) {
	var n *trieNode[V]
	for i := range uint64(len(t.root)) {
		if n = t.root[(r+i)%uint64(len(t.root))].Load(); n != nil {
			break
		}
	}
	for r >>= rootBits; n != nil && n.kids != nil; r >>= nodeBits {
		kids := &n.kids.slot
		for i := range uint64(len(kids)) {
			if n = kids[(r+i)&nodeMask].Load(); n != nil {
				break
			}
		}
	}
	if n == nil {
		return "", false
	}
	return n.key, true
}
