package eventbus

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
)

// hashTrie maps strings to values of type V. It is a hash array mapped trie
// whose inner nodes are arrays of atomic pointers, indexed by successive
// 4-bit digits of the key's hash (seeded at random, so that keys chosen by a
// client cannot be made to collide). Lookups take no lock and may run at any time;
// writers must be serialised by their caller. Every change is published by
// one atomic store, so a lookup sees each insert or delete entirely or not at
// all.
//
// A change costs O(depth), and depth grows as log16 of the number of keys:
// nothing is copied but the node being split. Deleting a key prunes the inner
// nodes it leaves empty and lifts a lone leaf into its parent, so the trie
// holds memory for the keys it has, not for the keys it ever had.
//
// A value is set by insert's init before its leaf is published, and leaves
// are never copied or moved between tries, so a V may hold atomics that
// readers load and writers store after publication.
type hashTrie[V any] struct {
	seed uint64
	root trieKids[V]
	size int // number of keys; writers only
}

const (
	trieBits   = 4
	trieFanout = 1 << trieBits
	trieMask   = trieFanout - 1
	// trieTop is the shift of the root's digit, the hash's top bits.
	trieTop = 64 - trieBits
)

type trieKids[V any] [trieFanout]atomic.Pointer[trieNode[V]]

// trieNode is an inner node when kids is not nil, and a leaf otherwise.
type trieNode[V any] struct {
	kids *trieKids[V] // set when the node is made, never changed
	hash uint64
	key  string
	more atomic.Pointer[trieNode[V]] // next leaf with the same hash: rare
	val  V
}

func newHashTrie[V any](seed uint64) *hashTrie[V] {
	return &hashTrie[V]{seed: seed}
}

// newSeed returns a random hash seed.
func newSeed() uint64 { return rand.Uint64() }

func (t *hashTrie[V]) hash(key string) uint64 { return strhash(key, t.seed) }

// strhash hashes s with seed. It is a multiply-and-fold hash in the style
// of wyhash (which the Go runtime falls back to where it has no AES
// instructions), written for the short keys of event names: it reads a
// string of up to 16 bytes as two overlapping words, which makes it about
// three times as fast as hash/maphash on them, where an emit feels it.
func strhash(s string, seed uint64) uint64 {
	const (
		k0 = 0xa0761d6478bd642f
		k1 = 0xe7037ed1a0b428db
		k2 = 0x8ebc6af09c88c6e3
	)
	n := len(s)
	seed ^= k0
	var a, b uint64
	switch {
	case n == 0:
	case n < 4:
		a = uint64(s[0])<<16 | uint64(s[n>>1])<<8 | uint64(s[n-1])
	case n <= 8:
		a, b = read4(s), read4(s[n-4:])
	case n <= 16:
		a, b = read8(s), read8(s[n-8:])
	default:
		for p := s; len(p) > 16; p = p[16:] {
			seed = fold(read8(p)^k1, read8(p[8:])^seed)
		}
		a, b = read8(s[n-16:]), read8(s[n-8:])
	}
	return fold(k1^uint64(n), fold(a^k1, b^seed)^k2)
}

// fold multiplies a and b into 128 bits and folds the halves together.
func fold(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func read4(s string) uint64 {
	_ = s[3]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24
}

func read8(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// find returns key's leaf, or nil. t may be nil.
func (t *hashTrie[V]) find(key string) *trieNode[V] {
	if t == nil {
		return nil
	}
	return t.findHash(key, t.hash(key))
}

func (t *hashTrie[V]) findHash(key string, h uint64) *trieNode[V] {
	n := t.root[h>>trieTop].Load()
	for shift := uint(trieTop - trieBits); n != nil && n.kids != nil; shift -= trieBits {
		n = n.kids[h>>shift&trieMask].Load()
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
	kids := &t.root
	for shift := uint(trieTop); ; shift -= trieBits {
		slot := &kids[h>>shift&trieMask]
		n := slot.Load()
		next := leaf
		switch {
		case n == nil:
		case n.kids != nil:
			kids = n.kids
			continue
		case n.hash == h: // the whole hash collides: chain the leaves
			leaf.more.Store(n)
		default:
			next = split(n, leaf, shift-trieBits)
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
	in := &trieNode[V]{kids: new(trieKids[V])}
	ia, ib := a.hash>>shift&trieMask, b.hash>>shift&trieMask
	if ia == ib {
		in.kids[ia].Store(split(a, b, shift-trieBits))
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
	// path[d] is the array whose slot for h holds the node at depth d.
	var path [64 / trieBits]*trieKids[V]
	kids, depth, shift := &t.root, 0, uint(trieTop)
	for {
		path[depth] = kids
		n := kids[h>>shift&trieMask].Load()
		if n == nil {
			return false
		}
		if n.kids == nil {
			break
		}
		kids, depth, shift = n.kids, depth+1, shift-trieBits
	}
	slot := &kids[h>>shift&trieMask]
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
		t.prune(path[:depth+1], h)
		return true
	}
	return false
}

// prune walks up path (see deleteHash) from its end: an inner node left
// without children is taken out of its parent, and one left with a single
// leaf is replaced by that leaf, which a lookup finds as well one level up.
// A lookup already inside a node taken out still finds what it held.
func (t *hashTrie[V]) prune(path []*trieKids[V], h uint64) {
	for d := len(path) - 1; d > 0; d-- {
		var only *trieNode[V]
		count := 0
		for i := range path[d] {
			if n := path[d][i].Load(); n != nil {
				only = n
				count++
			}
		}
		parent := &path[d-1][h>>(trieTop-uint(d-1)*trieBits)&trieMask]
		switch {
		case count == 0:
			parent.Store(nil)
		case count == 1 && only.kids == nil:
			parent.Store(only)
		default:
			return
		}
	}
}

// pick returns the key of some leaf, picked by the digits of r, or false
// when t is empty. Writers use it to evict.
func (t *hashTrie[V]) pick(r uint64) (string, bool) {
	kids := &t.root
	for {
		var n *trieNode[V]
		for i := range uint64(trieFanout) {
			if n = kids[(r+i)&trieMask].Load(); n != nil {
				break
			}
		}
		switch {
		case n == nil:
			return "", false
		case n.kids == nil:
			return n.key, true
		}
		kids, r = n.kids, r>>trieBits
	}
}
