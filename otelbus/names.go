package otelbus

import (
	"sync/atomic"

	"github.com/eventbus-go/eventbus"
)

// Other is the attribute value that stands for every name a [Limit] or
// [Patterns] mapping does not keep.
const Other = "_OTHER"

// _defaultLimit is how many distinct event names, and listener names, keep
// their own attribute value by default.
const _defaultLimit = 100

// Limit returns a name mapping that keeps the first n distinct names it is
// given and maps every later one to [Other], so that attribute cardinality
// stays at most n+1 whatever names are emitted. n < 1 maps every name to
// Other. It is safe for concurrent use; which names are first is decided by
// the order in which concurrent callers reach it. It holds at most n names.
func Limit(n int) func(name string) string {
	l := &limiter{max: n}
	return l.name
}

type limiter struct {
	max   int
	known cowMap[string, struct{}]
	full  atomic.Bool
}

func (l *limiter) name(name string) string {
	if _, ok := l.known.load(name); ok {
		return name
	}
	if l.full.Load() {
		return Other
	}
	if _, ok := l.known.store(name, struct{}{}, l.max); !ok {
		l.full.Store(true)
		return Other
	}
	return name
}

// Patterns returns a name mapping that maps an event name to the first of
// patterns that matches it (see eventbus.MatchPattern), and to [Other] when
// none does: "user.*.created" for "user.42.created", say. Cardinality is at
// most len(patterns)+1. Invalid patterns match nothing. It is safe for
// concurrent use.
func Patterns(patterns ...string) func(name string) string {
	ps := append([]string(nil), patterns...)
	return func(name string) string {
		for _, p := range ps {
			if eventbus.MatchPattern(p, name) {
				return p
			}
		}
		return Other
	}
}

// listenerName is the name of l that telemetry reports (before mapping).
func listenerName(l *eventbus.Listener) string {
	if l == nil {
		return ""
	}
	return l.Name()
}
