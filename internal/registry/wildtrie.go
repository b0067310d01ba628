package registry

import (
	"strings"
	"sync/atomic"
)

// wnode is a node of the trie of wildcard patterns, keyed by pattern token,
// that holds the entries registered under each pattern. Writers (serialised
// by the Registry's caller) change it in place, each change one atomic
// store; emitters walk it without locking. A node's children are in
// a hashTrie, so a node with many children costs no more to change than one
// with a few, and a node left empty is taken out of its parent.
type wnode[E any] struct {
	next atomic.Pointer[hashTrie[*wnode[E]]] // literal tokens; nil when none
	star atomic.Pointer[wnode[E]]            // '*'
	end  atomic.Pointer[[]E]                 // patterns that end at this node
	rest atomic.Pointer[[]E]                 // patterns that end with '>' after it
}

func (n *wnode[E]) empty() bool {
	next := n.next.Load()
	return (next == nil || next.size == 0) && n.star.Load() == nil && n.end.Load() == nil && n.rest.Load() == nil
}

// set applies change to the entries registered under the wildcard pattern
// p (creating its nodes first) and prunes the nodes that are left empty.
// Writers only.
func (n *wnode[E]) set(seed uint64, p string, change func([]E) []E) {
	type step struct {
		parent *wnode[E]
		tok    string
	}
	var buf [8]step
	path := buf[:0]
	list := &n.end
	for more := true; more; {
		var tok string
		tok, p, more = strings.Cut(p, ".")
		if tok == RestToken { // always the last token
			list = &n.rest
			break
		}
		path = append(path, step{n, tok})
		n = n.child(seed, tok)
		list = &n.end
	}
	var old []E
	if cur := list.Load(); cur != nil {
		old = *cur
	}
	if changed := change(old); len(changed) > 0 {
		list.Store(&changed)
	} else {
		list.Store(nil)
	}
	for i := len(path) - 1; i >= 0 && n.empty(); i-- {
		path[i].parent.drop(path[i].tok)
		n = path[i].parent
	}
}

// child returns n's child for tok, adding an empty one if there is none.
func (n *wnode[E]) child(seed uint64, tok string) *wnode[E] {
	if tok == AnyToken {
		c := n.star.Load()
		if c == nil {
			c = &wnode[E]{}
			n.star.Store(c)
		}
		return c
	}
	next := n.next.Load()
	if next == nil {
		next = newHashTrie[*wnode[E]](seed)
		n.next.Store(next)
	}
	if leaf := next.find(tok); leaf != nil {
		return leaf.val
	}
	c := &wnode[E]{}
	next.insert(tok, func(v **wnode[E]) { *v = c })
	return c
}

// drop takes n's child for tok out.
func (n *wnode[E]) drop(tok string) {
	if tok == AnyToken {
		n.star.Store(nil)
		return
	}
	next := n.next.Load()
	next.delete(tok)
	if next.size == 0 {
		n.next.Store(nil)
	}
}

// match appends the entries whose patterns match name (a valid, non-empty
// name relative to n) to out.
func (n *wnode[E]) match(name string, out []E) []E {
	if r := n.rest.Load(); r != nil {
		out = append(out, *r...) // '>' matches the one or more tokens left
	}
	tok, rest, more := strings.Cut(name, ".")
	if c := n.literal(tok); c != nil {
		out = c.matchAfter(rest, more, out)
	}
	if c := n.star.Load(); c != nil {
		out = c.matchAfter(rest, more, out)
	}
	return out
}

func (n *wnode[E]) matchAfter(rest string, more bool, out []E) []E {
	if !more {
		if e := n.end.Load(); e != nil {
			out = append(out, *e...)
		}
		return out
	}
	return n.match(rest, out)
}

func (n *wnode[E]) literal(tok string) *wnode[E] {
	if leaf := n.next.Load().find(tok); leaf != nil {
		return leaf.val
	}
	return nil
}
