package registry

import (
	"math/bits"
	"math/rand/v2"
)

// newSeed returns a random hash seed.
func newSeed() uint64 { return rand.Uint64() }

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
