package sched

import (
	"strconv"
	"testing"
)

// popTo moves the first n elements in order, whatever n (one by one below
// _fewSlots, block copies above) and wherever the ring wraps, leaves the
// rest in order, and zeroes every slot it emptied: the ring keeps no popped
// value alive.
func TestDequePopToMovesInOrderAndZeroesWhatItPopped(t *testing.T) {
	const size = 32 // the ring's capacity once grown: 4, 8, 16, 32
	for start := range size {
		for n := 0; n <= size; n++ {
			t.Run(strconv.Itoa(start)+"/"+strconv.Itoa(n), func(t *testing.T) {
				var d deque[*int]
				for range start { // move head to start
					d.push(new(int))
				}
				for range start {
					d.pop()
				}
				vals := make([]*int, size)
				for i := range vals {
					vals[i] = new(int)
					*vals[i] = i
					d.push(vals[i])
				}
				if len(d.buf) != size {
					t.Fatalf("ring of %d slots, want %d", len(d.buf), size)
				}
				pre := []*int{new(int)}
				got := d.popTo(pre, n)
				if len(got) != 1+n || got[0] != pre[0] {
					t.Fatalf("popTo returned %d elements, want the %d given and %d more", len(got), len(pre), n)
				}
				for i := range n {
					if got[1+i] != vals[i] {
						t.Fatalf("element %d popped out of order", i)
					}
				}
				if d.len() != size-n {
					t.Fatalf("%d left, want %d", d.len(), size-n)
				}
				live := 0
				for _, p := range d.buf {
					if p != nil {
						live++
					}
				}
				if live != size-n {
					t.Errorf("%d slots hold a value, want %d: a popped slot was not zeroed", live, size-n)
				}
				for i := n; i < size; i++ {
					if p := d.pop(); p != vals[i] {
						t.Fatalf("element %d left out of order", i)
					}
				}
			})
		}
	}
}

// zero zeroes every element, one by one or with clear.
func TestZeroZeroesEveryElement(t *testing.T) {
	for _, n := range []int{0, 1, _fewSlots - 1, _fewSlots, _fewSlots + 1, 64} {
		s := make([]delivery[ev, tag], n)
		for i := range s {
			s[i] = delivery[ev, tag]{rec: &record[ev]{}, named: &tag{}, attempt: i + 1}
		}
		zero(s)
		for i := range s {
			if s[i] != (delivery[ev, tag]{}) {
				t.Errorf("n=%d: element %d not zeroed", n, i)
			}
		}
	}
}
