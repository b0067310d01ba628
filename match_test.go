package eventbus_test

import (
	"context"
	"strings"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
)

// refMatch is a deliberately simple reference matcher over split tokens.
func refMatch(pattern, name string) bool {
	p, n := strings.Split(pattern, "."), strings.Split(name, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(n) > i
		}
		if i >= len(n) || (tok != "*" && tok != n[i]) {
			return false
		}
	}
	return len(p) == len(n)
}

func FuzzMatch(f *testing.F) {
	seeds := [][2]string{
		{"order.*", "order.created"}, {"order.>", "order.a.b"}, {">", "x"}, {"a.*.c", "a.b.c"},
		{"a.b", "a.b.c"}, {"*", "a.b"}, {"a..b", "a.b"}, {"a.>.b", "a.x.b"}, {"a*", "a"}, {"", ""},
		{"a b", "a b"}, {"order.>", "order"}, {"*.*", "a.b"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		perr, nerr := eventbus.ValidatePattern(pattern), eventbus.ValidateName(name)
		if nerr == nil {
			assert.NoError(t, eventbus.ValidatePattern(name), "every valid name is a valid pattern")
		}
		want := perr == nil && nerr == nil && refMatch(pattern, name)
		assert.Equal(t, want, eventbus.MatchPattern(pattern, name), "MatchPattern(%q, %q)", pattern, name)
		if perr != nil || nerr != nil {
			return
		}
		// The EventManager's routing (trie, exact map, cache) agrees.
		m := eventbus.New[int]()
		defer m.Close(context.Background())
		hit := false
		_, err := m.RegisterListener(pattern, func(context.Context, eventbus.Event[int]) error { hit = true; return nil })
		assert.NoError(t, err)
		assert.NoError(t, m.EmitSync(context.Background(), name, 0))
		assert.Equal(t, want, hit, "routing of %q for pattern %q", name, pattern)
	})
}
