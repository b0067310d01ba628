package eventbus

import "fmt"

// Sole deliveries. An EmitSync call whose name has one listener, and which
// that listener delivered, is counted with one atomic add, where the
// listener's counter and the call tally (callTally) would take two: on the
// listener's cSole counter, which counts the call (Stats.Emitted), its
// delivery (Stats.Matched and Delivered) and the listener's delivery
// (ListenerStats.Delivered) at once. This is EmitSync's commonest call, and
// an atomic add is most of what it costs beyond the handler.
//
// Stats adds up cSole over EventManager.soles, every registered listener
// (a slice, unordered, so that the sum reads a line or two per listener, or
// 33 for one whose counters have spread over lines under contention: see
// tallies), and soleGone, which holds the counts of the listeners
// unregistered since. RegisterListener appends the listener to soles, and
// remove takes it out, with mu held; remove then sets Listener.soleOut and
// moves its count to soleGone (settleSole), counting what it moved in
// Listener.soleMoved.
//
// An EmitSync call still running on a route that held the listener may
// count a sole delivery after remove: it adds first and loads soleOut
// after, and if it is set it moves the count itself, taking mu. remove
// stores soleOut before it reads the count; these being sequentially
// consistent atomics, either remove's read sees the add, or the call sees
// soleOut, so every add reaches soleGone, once. Every move is made with mu
// held, so that soleSum (mu held for reading) never sees one half done: the
// count taken from the listener and not yet in soleGone. The call's move
// is done before it returns, so a Stats after it counts it.
//
// Invariants, with mu held (for reading at least): each listener in soles
// is at its soleIdx, has soleOut unset and has had nothing moved; soles
// holds as many listeners as EventManager.listeners counts; soleGone only
// grows, and holds exactly the moved counts. So soleSum only grows: a count
// it read in a listener of soles stays there or, moved by remove with mu
// held, is in soleGone at the next read. checkSoles checks them (tests
// only call it).

// soleDelivered counts an EmitSync call that delivered to l, its one
// listener.
func (m *EventManager[T]) soleDelivered(l *Listener) {
	if !l.counts.addBase(cSole, 1) { // tallies.add, inlined
		l.counts.addStriped(cSole, 1)
	}
	if l.soleOut.Load() { // unregistered meanwhile: rare
		m.mu.Lock()
		m.settleSole(l)
		m.mu.Unlock()
	}
}

// soleJoin lists l in soles, with mu held, as it is registered.
func (m *EventManager[T]) soleJoin(l *Listener) {
	l.soleIdx = len(m.soles)
	m.soles = append(m.soles, l)
}

// soleLeave takes l out of soles, with mu held, as it leaves the registry,
// and moves its count to soleGone. soles gives memory back once it holds
// less than a quarter of its capacity.
func (m *EventManager[T]) soleLeave(l *Listener) {
	last := m.soles[len(m.soles)-1]
	m.soles[l.soleIdx], last.soleIdx = last, l.soleIdx
	m.soles[len(m.soles)-1] = nil
	m.soles = m.soles[:len(m.soles)-1]
	if c := cap(m.soles); c > 64 && len(m.soles) < c/4 {
		m.soles = append(make([]*Listener, 0, 2*len(m.soles)), m.soles...)
	}
	l.soleOut.Store(true) // before its count is read
	m.settleSole(l)
}

// settleSole moves l's sole deliveries not yet moved to soleGone, with mu
// held; l is out of soles.
func (m *EventManager[T]) settleSole(l *Listener) {
	if n := l.counts.read(cSole); n > l.soleMoved {
		if m.opts.onSoleMove != nil {
			m.opts.onSoleMove()
		}
		m.soleGone.Add(n - l.soleMoved)
		l.soleMoved = n
	}
}

// soleSum returns the sole deliveries of every listener m has had.
func (m *EventManager[T]) soleSum() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := m.soleGone.Load()
	for _, l := range m.soles {
		n += l.counts.read(cSole)
	}
	return n
}

// checkSoles checks the invariants above, with mu held for reading.
func (m *EventManager[T]) checkSoles() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if int64(len(m.soles)) != m.listeners.Load() {
		return fmt.Errorf("eventbus: sole invariant: %d listeners in soles, %d registered", len(m.soles), m.listeners.Load())
	}
	for i, l := range m.soles {
		if l.soleIdx != i || l.soleOut.Load() || l.soleMoved != 0 {
			return fmt.Errorf("eventbus: sole invariant: listener %q at %d of soles has index %d, out %t, %d moved",
				l.name, i, l.soleIdx, l.soleOut.Load(), l.soleMoved)
		}
	}
	return nil
}
