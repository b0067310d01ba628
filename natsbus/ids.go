package natsbus

import (
	"crypto/rand"
	"strings"

	"github.com/nats-io/nuid"
)

const (
	_idDigits    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	_idPrefixLen = 12
	_idRandLen   = 16
	_idLen       = _idPrefixLen + _idRandLen
)

// idGen makes the bridge's event IDs: 28 characters of the NUID alphabet, a
// random 12-character prefix drawn once per bridge followed by 16 characters
// drawn for each event from crypto/rand (95 bits).
//
// The prefix tells the bridge's own messages from others that carry its
// origin (see ErrForgedOrigin); it is no secret, since every message shows
// it. The per-event part is what makes the ID, which is also the
// Nats-Msg-Id, impossible to guess from the IDs seen: before issue 19 it
// was a counter, and a publisher who stored a message under the bridge's
// next ID made the stream drop the bridge's own event as a duplicate.
// It is safe for concurrent use and takes no lock.
type idGen struct {
	prefix string
}

func newIDGen() *idGen {
	return &idGen{prefix: nuid.New().Next()[:_idPrefixLen]}
}

func (g *idGen) next() string {
	var buf [_idLen]byte
	copy(buf[:], g.prefix)
	var rnd [32]byte
	i, j := _idPrefixLen, len(rnd)
	for i < _idLen {
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
	return string(buf[:])
}

// mine reports whether id was made by g.
func (g *idGen) mine(id string) bool {
	return len(id) == _idLen && strings.HasPrefix(id, g.prefix)
}
