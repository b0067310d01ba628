package registry

import (
	"sync/atomic"
	"unsafe"
)

// Memo remembers the routes of the names emitted last, keyed by where
// the name's bytes are and how many there are, so that an emit with a name
// it saw before (a string constant, a name kept in a variable) finds its
// listeners with a few loads instead of hashing the name and walking the
// registry's trie: EmitSync to one listener spent a quarter of its
// instructions there.
//
// Two strings with the same bytes pointer and length have the same
// contents: strings are immutable, and the slot keeps the bytes alive, so
// they cannot be reused for another string while remembered. A remembered
// route is used only while the registry's version is the one loaded before
// the route was looked up (the version is a counter the Memo's user keeps:
// each registry change publishes its routes before it increments the
// counter, see the eventbus's Topic.rebind), so it is never older than the
// registry. Only names with listeners are remembered (Put takes no nil
// route); others take the full lookup, which also validates them.
//
// Slots are written without a lock, as seqlocks: a writer makes the slot's
// sequence odd (a compare-and-swap, so one writer at a time; a writer that
// loses does not wait and leaves the slot alone), stores the fields, and
// makes it even again; a reader uses the fields only if the sequence was the
// same even number before and after reading them. Every field is atomic, so
// a torn read is detected, never a data race. Readers write nothing:
// emitters that keep to a few names share the slots' lines read-only.
type Memo[R any] struct {
	slots [MemoSlots]memoSlot[R]
}

const (
	memoBits = 5
	// MemoSlots is how many names a Memo remembers at most.
	MemoSlots = 1 << memoBits
)

type memoSlot[R any] struct {
	seq     atomic.Uint64
	name    atomic.Pointer[byte] // unsafe.StringData of the name
	n       atomic.Uint64        // its length
	version atomic.Uint64        // the registry version the route is valid for
	rt      atomic.Pointer[R]
	_       [64 - 40]byte
}

func (c *Memo[R]) slot(p *byte, n int) *memoSlot[R] {
	h := (uint64(uintptr(unsafe.Pointer(p)))>>3 ^ uint64(n)) * 0x9E3779B97F4A7C15
	return &c.slots[h>>(64-memoBits)]
}

// Find returns the remembered route of name if it is valid at the registry
// version now (version's value), or nil. It writes nothing.
func (c *Memo[R]) Find(name string, version *atomic.Uint64) *R {
	p := unsafe.StringData(name)
	s := c.slot(p, len(name))
	seq := s.seq.Load()
	if s.name.Load() != p || s.n.Load() != uint64(len(name)) {
		return nil
	}
	v, rt := s.version.Load(), s.rt.Load()
	if seq&1 != 0 || s.seq.Load() != seq || v != version.Load() {
		return nil
	}
	return rt
}

// Put remembers rt as name's route, looked up at registry version v or
// later; rt must not be nil. It gives up if another emitter is writing the
// slot.
func (c *Memo[R]) Put(name string, v uint64, rt *R) {
	p := unsafe.StringData(name)
	s := c.slot(p, len(name))
	seq := s.seq.Load()
	if seq&1 != 0 || !s.seq.CompareAndSwap(seq, seq+1) {
		return
	}
	s.name.Store(p)
	s.n.Store(uint64(len(name)))
	s.version.Store(v)
	s.rt.Store(rt)
	s.seq.Store(seq + 2)
}
