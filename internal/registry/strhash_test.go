package registry

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStrhashSeesEveryByte(t *testing.T) {
	seed := newSeed()
	for n := range 70 {
		base := []byte(strings.Repeat("x", n))
		h := strhash(string(base), seed)
		for i := range n {
			changed := slices.Clone(base)
			changed[i] = 'y'
			assert.NotEqual(t, h, strhash(string(changed), seed), "length %d: byte %d changed", n, i)
		}
		assert.NotEqual(t, h, strhash(string(base)+"\x00", seed), "length %d: a byte appended", n)
	}
	assert.NotEqual(t, strhash("order.created", seed), strhash("order.created", seed+1), "the seed matters")
}

func TestStrhashSpreadsEventNames(t *testing.T) {
	// Names that differ only in a counter, as per-connection names do, must
	// not collide and must spread over the root's digits.
	seed := newSeed()
	const names = 200_000
	seen := make(map[uint64]string, names)
	var digits [1 << rootBits]int
	for i := range names {
		name := "chat.room." + strconv.Itoa(i)
		h := strhash(name, seed)
		if prev, ok := seen[h]; ok {
			require.Failf(t, "hash collision", "%q and %q", prev, name)
		}
		seen[h] = name
		digits[h>>rootShift]++
	}
	for d, c := range digits {
		assert.InDelta(t, names/len(digits), c, float64(names/len(digits)/10), "names whose hash starts with digit %x", d)
	}
}
