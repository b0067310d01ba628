package natsbus

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"strings"

	"github.com/nats-io/nuid"
)

const (
	_idDigits    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	_idPrefixLen = 12
	_idRandLen   = 10
	_idMACLen    = 6
	_idLen       = _idPrefixLen + _idRandLen + _idMACLen
)

// idGen makes the bridge's event IDs: 28 characters of the NUID alphabet, a
// random 12-character prefix drawn once per bridge, 10 characters drawn for
// each event from crypto/rand (59 bits), and a 6-character tag (36 bits):
// an HMAC-SHA256 of the first 22 characters under a key drawn once per
// bridge and never sent.
//
// The prefix and the tag tell the bridge's own messages from others that
// carry its origin (see ErrForgedOrigin). The prefix is no secret, since
// every message shows it; the tag is what a forger cannot make: checking
// the prefix alone let any ID that began with it pass as the bridge's own,
// skipped instead of refused. An ID someone else made passes with a chance
// of 62^-6 (about 2e-11) per message, whatever IDs they have seen. The
// per-event part is what makes the ID, which is also the Nats-Msg-Id,
// impossible to guess from the IDs seen: before issue 19 it was a counter,
// and a publisher who stored a message under the bridge's next ID made the
// stream drop the bridge's own event as a duplicate.
//
// It is safe for concurrent use and takes no lock.
type idGen struct {
	prefix string
	// ipad and opad are the HMAC key blocks (RFC 2104): the key, zero
	// padded to SHA-256's block size, XORed with 0x36 and 0x5c.
	ipad, opad [sha256.BlockSize]byte
}

func newIDGen() *idGen {
	var key [32]byte
	_, _ = rand.Read(key[:]) // never fails (crypto/rand)
	g := &idGen{prefix: nuid.New().Next()[:_idPrefixLen]}
	for i := range g.ipad {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		g.ipad[i], g.opad[i] = k^0x36, k^0x5c
	}
	return g
}

func (g *idGen) next() string {
	var buf [_idLen]byte
	copy(buf[:], g.prefix)
	var rnd [32]byte
	i, j := _idPrefixLen, len(rnd)
	for i < _idPrefixLen+_idRandLen {
		if j == len(rnd) {
			_, _ = rand.Read(rnd[:]) // never fails (crypto/rand)
			j = 0
		}
		// Rejection sampling: 248 = 4*62, so every digit is equally likely.
		if b := rnd[j]; b < 248 {
			buf[i] = _idDigits[b%62]
			i++
		}
		j++
	}
	tag := g.tag(buf[:])
	copy(buf[_idLen-_idMACLen:], tag[:])
	return string(buf[:])
}

// tag returns the tag of id's first 22 characters: HMAC-SHA256 under g's
// key, written out with sha256.Sum256 on arrays, so that it allocates
// nothing (hmac.New allocates, and a hash.Hash's input escapes).
func (g *idGen) tag(id []byte) (tag [_idMACLen]byte) {
	var in [sha256.BlockSize + _idLen - _idMACLen]byte
	copy(in[:], g.ipad[:])
	copy(in[sha256.BlockSize:], id)
	inner := sha256.Sum256(in[:])
	var out [sha256.BlockSize + sha256.Size]byte
	copy(out[:], g.opad[:])
	copy(out[sha256.BlockSize:], inner[:])
	sum := sha256.Sum256(out[:])
	n := binary.BigEndian.Uint64(sum[:8])
	// 62^6 is below 2^36: the digits of a 64-bit number are as good as
	// uniform.
	for k := range tag {
		tag[k] = _idDigits[n%62]
		n /= 62
	}
	return tag
}

// mine reports whether id was made by g: its prefix is g's, and its tag is
// the one g gives its first 22 characters.
func (g *idGen) mine(id string) bool {
	if len(id) != _idLen || !strings.HasPrefix(id, g.prefix) {
		return false
	}
	var got [_idLen]byte
	copy(got[:], id)
	want := g.tag(got[:])
	return hmac.Equal(want[:], got[_idLen-_idMACLen:])
}
