package eventbus

import (
	"context"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/eventbus-go/eventbus/internal/registry"
)

// Event is what a listener receives: the name it was emitted under and its
// payload. Data is passed by value; when T is a pointer, map or slice, every
// listener of the event shares what it points to, so listeners that may run
// concurrently must not mutate it without their own synchronisation.
type Event[T any] struct {
	Name string
	Data T
}

// Handler handles one event. The context carries the values of the context
// given to Emit or EmitSync (see those methods for its cancellation). A
// non-nil error, or a panic, is reported as a [*ListenerError]; it never
// affects other listeners. On the pool, a Handler that calls runtime.Goexit
// (as t.FailNow does) fails that attempt too (retried under Retry, else
// reported), and its worker is replaced; under EmitSync it ends the calling
// goroutine, as a direct call would.
//
// A Handler may call any method of the EventManager that runs it, or of
// another one, with any context: an emit made on a pool worker never waits
// for backlog room (see WithQueueSize), so a listener that emits cannot
// deadlock the pool. Flush and Close called from a Handler on the pool of
// their own EventManager return ErrReentrant instead of waiting for it.
// Waiting calls across EventManagers are not protected that way: a Handler
// on A's pool that calls B.Flush (or B.Close, or UnregisterAndWait of one of
// B's listeners) waits for B's handlers, and if one of those waits for A the
// same way, both wait until their contexts end. Give such calls a context
// with a deadline, or make them from a goroutine of your own.
type Handler[T any] func(ctx context.Context, e Event[T]) error

// Wildcard tokens in patterns; they follow NATS subject rules.
const (
	tokenSep  = '.'
	anyToken  = registry.AnyToken  // matches exactly one token
	restToken = registry.RestToken // last token only: matches one or more tokens
)

// ValidateName reports whether name can be emitted: one or more non-empty
// tokens separated by '.', valid UTF-8 with no whitespace, no control
// characters and no wildcard characters ('*', '>'). The error wraps
// [ErrInvalidName] and quotes name.
func ValidateName(name string) error {
	if reason := checkTokens(name, false); reason != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidName, name, reason)
	}
	return nil
}

// ValidatePattern reports whether pattern can be registered: a valid name in
// which a token may also be '*' (exactly one token) and the last token may
// be '>' (one or more tokens). The error wraps [ErrInvalidPattern] and quotes
// pattern.
func ValidatePattern(pattern string) error {
	if reason := checkTokens(pattern, true); reason != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidPattern, pattern, reason)
	}
	return nil
}

// checkTokens returns why s is not a valid name (or pattern, when wild is
// true), or "" when it is valid. It does not allocate.
func checkTokens(s string, wild bool) string {
	if s == "" {
		return "empty"
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != tokenSep {
			continue
		}
		tok := s[start:i]
		last := i == len(s)
		switch {
		case tok == "":
			return "empty token"
		case wild && tok == anyToken:
		case wild && tok == restToken:
			if !last {
				return "'>' must be the last token"
			}
		default:
			if reason := checkToken(tok, wild); reason != "" {
				return reason
			}
		}
		start = i + 1
	}
	return ""
}

func checkToken(tok string, wild bool) string {
	for i := 0; i < len(tok); {
		r, size := rune(tok[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(tok[i:])
			if r == utf8.RuneError && size == 1 {
				return "invalid UTF-8"
			}
		}
		switch {
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return "whitespace or control character"
		case r == '*' || r == '>':
			if wild {
				return "wildcard must be a whole token"
			}
			return "wildcards are not allowed in event names"
		}
		i += size
	}
	return ""
}

// MatchPattern reports whether the event name is matched by pattern. Both
// must be valid (see [ValidateName] and [ValidatePattern]); an invalid one
// matches nothing.
func MatchPattern(pattern, name string) bool {
	if checkTokens(pattern, true) != "" || checkTokens(name, false) != "" {
		return false
	}
	for {
		pt, prest, pmore := strings.Cut(pattern, ".")
		nt, nrest, nmore := strings.Cut(name, ".")
		switch {
		case pt == restToken:
			return true
		case pt != anyToken && pt != nt:
			return false
		case !pmore || !nmore:
			return pmore == nmore
		}
		pattern, name = prest, nrest
	}
}
