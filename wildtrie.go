package eventbus

import (
	"strings"
	"sync/atomic"
)

// wnode is a node of the trie of wildcard patterns, keyed by pattern token.
// Writers (who hold EventManager.mu) change it in place, each change one
// atomic store; emitters walk it without locking. A node's children are in
// a hashTrie, so a node with many children costs no more to change than one
// with a few, and a node left empty is taken out of its parent.
type wnode[T any] struct {
	next atomic.Pointer[hashTrie[*wnode[T]]] // literal tokens; nil when none
	star atomic.Pointer[wnode[T]]            // '*'
	end  atomic.Pointer[[]*entry[T]]         // patterns that end at this node
	rest atomic.Pointer[[]*entry[T]]         // patterns that end with '>' after it
}

func (n *wnode[T]) empty() bool {
	next := n.next.Load()
	return (next == nil || next.size == 0) && n.star.Load() == nil && n.end.Load() == nil && n.rest.Load() == nil
}

// set applies change to the listeners registered under the wildcard pattern
// p (creating its nodes first) and prunes the nodes that are left empty.
// Writers only.
func (n *wnode[T]) set(seed uint64, p string, change func([]*entry[T]) []*entry[T]) {
	type step struct {
		parent *wnode[T]
		tok    string
	}
	var buf [8]step
	path := buf[:0]
	list := &n.end
	for more := true; more; {
		var tok string
		tok, p, more = strings.Cut(p, ".")
		if tok == restToken { // always the last token
			list = &n.rest
			break
		}
		path = append(path, step{n, tok})
		n = n.child(seed, tok)
		list = &n.end
	}
	var old []*entry[T]
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
func (n *wnode[T]) child(seed uint64, tok string) *wnode[T] {
	if tok == anyToken {
		c := n.star.Load()
		if c == nil {
			c = &wnode[T]{}
			n.star.Store(c)
		}
		return c
	}
	next := n.next.Load()
	if next == nil {
		next = newHashTrie[*wnode[T]](seed)
		n.next.Store(next)
	}
	if leaf := next.find(tok); leaf != nil {
		return leaf.val
	}
	c := &wnode[T]{}
	next.insert(tok, func(v **wnode[T]) { *v = c })
	return c
}

// drop takes n's child for tok out.
func (n *wnode[T]) drop(tok string) {
	if tok == anyToken {
		n.star.Store(nil)
		return
	}
	next := n.next.Load()
	next.delete(tok)
	if next.size == 0 {
		n.next.Store(nil)
	}
}

// match appends the listeners whose patterns match name (a valid, non-empty
// name relative to n) to out.
func (n *wnode[T]) match(name string, out []*entry[T]) []*entry[T] {
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

func (n *wnode[T]) matchAfter(rest string, more bool, out []*entry[T]) []*entry[T] {
	if !more {
		if e := n.end.Load(); e != nil {
			out = append(out, *e...)
		}
		return out
	}
	return n.match(rest, out)
}

func (n *wnode[T]) literal(tok string) *wnode[T] {
	if leaf := n.next.Load().find(tok); leaf != nil {
		return leaf.val
	}
	return nil
}
