package eventbus

import "sync/atomic"

// hashTrie maps strings to values of type V. It is a hash array mapped trie
// whose nodes are arrays of atomic pointers indexed by successive digits of
// the key's hash (see strhash; seeded at random, so that keys chosen by a
// client cannot be made to collide): 4 bits at the root, held in the trie
// itself, then 6 bits per inner node, so that a trie of 100,000 keys is
// about three nodes deep. Lookups take no lock and may run at any time;
// writers must be serialised by their caller. Every change is published by
// one atomic store, so a lookup sees each insert or delete entirely or not
// at all.
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
	nodeBits  = 6
	nodeMask  = 1<<nodeBits - 1
	// maxDepth is the most nodes a path holds, the root's slot included.
	maxDepth = 1 + rootShift/nodeBits
)

// trieNode is an inner node when kids is not nil, and a leaf otherwise.
type trieNode[V any] struct {
	kids *[1 << nodeBits]atomic.Pointer[trieNode[V]] // set when made, never changed
	hash uint64
	key  string
	more atomic.Pointer[trieNode[V]] // next leaf with the same hash: rare
	val  V
}

// inner is an inner node and its children in one allocation, so that a
// lookup finds them side by side in memory.
type inner[V any] struct {
	node trieNode[V]
	kids [1 << nodeBits]atomic.Pointer[trieNode[V]]
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
		n = n.kids[h>>shift&nodeMask].Load()
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
	for {
		n := slot.Load()
		next := leaf
		switch {
		case n == nil:
		case n.kids != nil:
			shift -= nodeBits
			slot = &n.kids[h>>shift&nodeMask]
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
		in.kids[ia].Store(split(a, b, shift-nodeBits))
	} else {
		in.kids[ia].Store(a)
		in.kids[ib].Store(b)
	}
	return in
}

// delete removes key's leaf and reports whether there was one. Writers only.
func (t *hashTrie[V]) delete(key string) bool {
	return t.deleteHash(key, t.hash(key))
}

func (t *hashTrie[V]) deleteHash(key string, h uint64) bool {
	// path[d] is the slot that holds the node at depth d.
	var path [maxDepth]*atomic.Pointer[trieNode[V]]
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
		slot, depth = &n.kids[h>>shift&nodeMask], depth+1
	}
	var prev *trieNode[V]
	for n := slot.Load(); n != nil; prev, n = n, n.more.Load() {
		if n.hash != h || n.key != key {
			continue
		}
		if prev == nil {
			slot.Store(n.more.Load())
		} else {
			prev.more.Store(n.more.Load())
		}
		t.size--
		prune(path[:depth])
		return true
	}
	return false
}

// prune walks up the slots of inner nodes in path, from its end: an inner
// node left without children is taken out of its slot, and one left with a
// single leaf is replaced by that leaf, which a lookup finds as well one
// level up. A lookup already inside a node taken out still finds what it
// held.
func prune[V any](path []*atomic.Pointer[trieNode[V]]) {
	for d := len(path) - 1; d >= 0; d-- {
		var only *trieNode[V]
		count := 0
		kids := path[d].Load().kids
		for i := range kids {
			if n := kids[i].Load(); n != nil {
				only = n
				if count++; count > 1 {
					return
				}
			}
		}
		switch {
		case count == 0:
			path[d].Store(nil)
		case only.kids == nil:
			path[d].Store(only)
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
		kids := n.kids
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
