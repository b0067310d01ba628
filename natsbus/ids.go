package natsbus

import (
	"strings"
	"sync/atomic"

	"github.com/nats-io/nuid"
)

const (
	_idDigits    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	_idPrefixLen = 12
	_idLen       = 22
)

// idGen makes the bridge's event IDs: 22 characters of the NUID alphabet, a
// random 12-character prefix drawn once per bridge (from crypto/rand, as
// nuid does) followed by a 10-character sequence. The prefix tells the
// bridge's own messages from others that carry its origin (see
// ErrForgedOrigin); it is no secret, since every message shows it. It is
// safe for concurrent use and takes no lock.
type idGen struct {
	prefix string
	seq    atomic.Uint64
}

func newIDGen() *idGen {
	return &idGen{prefix: nuid.New().Next()[:_idPrefixLen]}
}

func (g *idGen) next() string {
	n := g.seq.Add(1)
	var buf [_idLen]byte
	copy(buf[:], g.prefix)
	for i := _idLen - 1; i >= _idPrefixLen; i-- {
		buf[i] = _idDigits[n%uint64(len(_idDigits))]
		n /= uint64(len(_idDigits))
	}
	return string(buf[:])
}

// mine reports whether id was made by g.
func (g *idGen) mine(id string) bool {
	return len(id) == _idLen && strings.HasPrefix(id, g.prefix)
}
