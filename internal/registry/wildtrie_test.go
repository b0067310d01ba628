package registry

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestWildcardTriePrunesEmptyNodes(t *testing.T) {
	seed := newSeed()
	root := &wnode[*fakeEntry]{}
	entries := map[string]*fakeEntry{}
	for _, p := range []string{"a.b.c", "a.*.c", "a.>", "a.b.>", "*.b", ">", "x.y.z.>"} {
		e := &fakeEntry{pattern: p}
		entries[p] = e
		root.set(seed, p, func(l []*fakeEntry) []*fakeEntry { return AppendCopy(l, e) })
	}
	got := root.match("a.b.c", nil)
	assert.ElementsMatch(t, []*fakeEntry{entries["a.b.c"], entries["a.*.c"], entries["a.>"], entries["a.b.>"], entries[">"]}, got)
	for p, e := range entries {
		root.set(seed, p, func(l []*fakeEntry) []*fakeEntry { return DeleteCopy(l, e) })
	}
	assert.True(t, root.empty(), "no pattern left")
	assert.Nil(t, root.next.Load(), "no child left")
	assert.Nil(t, root.star.Load(), "no '*' child left")
}
