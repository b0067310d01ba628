package natsbus

import (
	"crypto/rand"
	"strings"
	"testing"
)

// An ID is 28 characters of the NUID alphabet; the bridge that made it
// knows it as its own, and no other ID with its prefix passes; making one
// allocates only the string, checking one nothing (the inbound path checks
// every message with the bridge's origin).
func TestIDsAreTaggedAndCheap(t *testing.T) {
	g, other := newIDGen(), newIDGen()
	seen := map[string]bool{}
	for range 10_000 {
		id := g.next()
		if len(id) != _idLen || strings.Trim(id, _idDigits) != "" {
			t.Fatalf("malformed ID %q", id)
		}
		if seen[id] {
			t.Fatalf("ID %q made twice", id)
		}
		seen[id] = true
		if !g.mine(id) {
			t.Fatalf("%q is not known as its maker's own", id)
		}
		if other.mine(id) {
			t.Fatalf("%q passes as another generator's", id)
		}
		for i := _idPrefixLen; i < _idLen; i++ { // any character changed after the prefix
			b := []byte(id)
			b[i] = _idDigits[(strings.IndexByte(_idDigits, b[i])+1)%len(_idDigits)]
			if g.mine(string(b)) {
				t.Fatalf("%q, %q with character %d changed, passes as its maker's", b, id, i)
			}
		}
	}
	id := g.next()
	// crypto/rand.Read allocates under the race detector: count it apart.
	rnd := testing.AllocsPerRun(100, func() {
		var r [32]byte
		_, _ = rand.Read(r[:])
	})
	if n := testing.AllocsPerRun(100, func() { _ = g.next() }); n != 1+rnd {
		t.Errorf("next allocates %v times, want %v (the string, and crypto/rand's %v)", n, 1+rnd, rnd)
	}
	if n := testing.AllocsPerRun(100, func() { _ = g.mine(id) }); n != 0 {
		t.Errorf("mine allocates %v times, want 0", n)
	}
}
