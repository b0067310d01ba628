package sched

// deque is a growable ring buffer. It is not safe for concurrent use; the
// scheduler guards its deques with its mutex. Popped slots are zeroed so the
// ring keeps no event data alive. A ring only grows; release drops an empty
// one past _dequeKeep slots, for a deque whose peak is not bounded (a
// listener's ready keys).
type deque[E any] struct {
	buf  []E // len is 0 or a power of two
	head int
	n    int
}

// _dequeKeep is the largest ring a deque keeps once empty.
const _dequeKeep = 4096

func (d *deque[E]) len() int { return d.n }

// release drops an empty ring larger than _dequeKeep.
func (d *deque[E]) release() {
	if d.n == 0 && len(d.buf) > _dequeKeep {
		d.buf, d.head = nil, 0
	}
}

func (d *deque[E]) grow() {
	size := 2 * len(d.buf)
	if size == 0 {
		size = 4
	}
	buf := make([]E, size)
	for i := 0; i < d.n; i++ {
		buf[i] = d.buf[(d.head+i)&(len(d.buf)-1)]
	}
	d.buf, d.head = buf, 0
}

// push appends v at the back.
func (d *deque[E]) push(v E) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.buf[(d.head+d.n)&(len(d.buf)-1)] = v
	d.n++
}

// pushFront puts v at the front, to be popped next.
func (d *deque[E]) pushFront(v E) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.head = (d.head - 1) & (len(d.buf) - 1)
	d.buf[d.head] = v
	d.n++
}

// pop removes and returns the front element; the deque must not be empty.
func (d *deque[E]) pop() E {
	var zero E
	v := d.buf[d.head]
	d.buf[d.head] = zero
	d.head = (d.head + 1) & (len(d.buf) - 1)
	d.n--
	return v
}

// popTo moves the first n elements (n ≤ len) to the end of dst, in order,
// and returns it: one by one for a few (as a keyed or shared listener
// takes them), else one or two block copies instead of n pops.
func (d *deque[E]) popTo(dst []E, n int) []E {
	if n <= _fewSlots {
		for ; n > 0; n-- {
			dst = append(dst, d.pop())
		}
		return dst
	}
	for n > 0 {
		end := min(d.head+n, len(d.buf))
		dst = append(dst, d.buf[d.head:end]...)
		clear(d.buf[d.head:end])
		k := end - d.head
		d.head = (d.head + k) & (len(d.buf) - 1)
		d.n -= k
		n -= k
	}
	return dst
}

// _fewSlots is how many slots are copied or zeroed one by one rather than
// as a block: clear and a slice copy of elements that hold pointers call
// into the runtime (memclrHasPointers, typedslicecopy, each with its write
// barrier check), about 55 instructions even for one slot, while a store
// of one element costs about 6.
const _fewSlots = 8

// zero zeroes s: a few elements one by one (see _fewSlots), more with
// clear. The plain loop is on purpose: a range loop storing the zero value
// would be compiled into the same runtime call as clear.
func zero[E any](s []E) {
	if len(s) > _fewSlots {
		clear(s)
		return
	}
	var z E
	for i := 0; i < len(s); i++ {
		s[i] = z
	}
}
