package watermillbus

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Topics and event names.
//
// A watermill topic is any string; an eventbus event name is one or more
// non-empty tokens separated by '.', without whitespace, control characters
// or wildcards ('*', '>'). EventName maps the first onto the second without
// collisions, keeping '.' as the token separator so that "orders.placed"
// stays "orders.placed".

const (
	escapeByte = '%'
	emptyToken = "%" // an empty token: '%' never stands alone otherwise
	upperHex   = "0123456789ABCDEF"
)

// EventName returns the eventbus event name that carries topic: the topic
// itself when it is already a valid event name without '%', and otherwise
// the topic with every '%', '*', '>', whitespace or control character and
// every byte of invalid UTF-8 written as %XX (its bytes in upper-case
// hexadecimal), and every empty token (a leading, trailing or doubled '.',
// or the empty topic) written as a lone "%". Distinct topics give distinct
// names, and Topic reverses it. It is safe for concurrent use and
// allocates only when something must be escaped.
func EventName(topic string) string {
	if plain(topic) {
		return topic
	}
	var b strings.Builder
	b.Grow(len(topic) + 8)
	for i, tok := range strings.Split(topic, ".") {
		if i > 0 {
			b.WriteByte('.')
		}
		if tok == "" {
			b.WriteString(emptyToken)
			continue
		}
		escapeToken(&b, tok)
	}
	return b.String()
}

// plain reports whether topic is its own event name.
func plain(topic string) bool {
	if topic == "" || topic[0] == '.' || topic[len(topic)-1] == '.' {
		return false
	}
	for i := 0; i < len(topic); {
		c := topic[i]
		if c < utf8.RuneSelf {
			if mustEscape(rune(c)) || (c == '.' && topic[i+1] == '.') {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(topic[i:])
		if (r == utf8.RuneError && size == 1) || mustEscape(r) {
			return false
		}
		i += size
	}
	return true
}

func mustEscape(r rune) bool {
	return r == escapeByte || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r)
}

// escapeToken writes a non-empty token with its unsafe bytes escaped.
func escapeToken(b *strings.Builder, tok string) {
	for i := 0; i < len(tok); {
		r, size := utf8.DecodeRuneInString(tok[i:])
		if (r == utf8.RuneError && size == 1) || mustEscape(r) {
			for _, c := range []byte(tok[i : i+size]) {
				b.WriteByte(escapeByte)
				b.WriteByte(upperHex[c>>4])
				b.WriteByte(upperHex[c&0x0f])
			}
		} else {
			b.WriteString(tok[i : i+size])
		}
		i += size
	}
}

// Topic returns the topic that EventName maps to name. It fails with
// ErrInvalidEventName for a name that EventName never returns (a stray or
// lower-case escape, or a character that should have been escaped).
func Topic(name string) (string, error) {
	if plain(name) {
		return name, nil
	}
	var b strings.Builder
	b.Grow(len(name))
	for i, tok := range strings.Split(name, ".") {
		if i > 0 {
			b.WriteByte('.')
		}
		if tok == emptyToken {
			continue
		}
		for j := 0; j < len(tok); j++ {
			if tok[j] != escapeByte {
				b.WriteByte(tok[j])
				continue
			}
			hi, lo := -1, -1
			if j+2 < len(tok) {
				hi, lo = strings.IndexByte(upperHex, tok[j+1]), strings.IndexByte(upperHex, tok[j+2])
			}
			if hi < 0 || lo < 0 {
				return "", fmt.Errorf("%w: %q: bad escape at byte %d", ErrInvalidEventName, name, j)
			}
			b.WriteByte(byte(hi<<4 | lo))
			j += 2
		}
	}
	topic := b.String()
	if EventName(topic) != name {
		return "", fmt.Errorf("%w: %q is not in canonical form", ErrInvalidEventName, name)
	}
	return topic, nil
}
