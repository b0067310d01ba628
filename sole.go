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
// Stats adds up cSole over EventManager.soles, the listeners that have had
// a sole delivery and are still registered, and soleGone, which holds the
// counts of those that left. A listener's Listener.sole state goes
// soleUnseen → soleListed (its first sole delivery puts it in soles, with
// mu held) → soleOut (remove, with mu held, takes it out of soles, sets
// soleOut and moves its count to soleGone: settleSole); or soleUnseen →
// soleOut, for one unregistered before any sole delivery.
//
// An EmitSync call still running on a route that held the listener may
// count a sole delivery after remove: it adds first and loads the state
// after, and if it finds soleOut it moves the count itself. remove stores
// soleOut before it reads the count; these being sequentially consistent
// atomics, either remove's read sees the add, or the call sees soleOut, so
// every add reaches soleGone. Moves take turns on Listener.soleMoved (a
// compare-and-swap), so none is moved twice.
//
// Invariants, with mu held (for reading at least): each listener in soles
// is soleListed, at its soleIdx, and has had nothing moved; soleGone only
// grows. So soleSum only grows: a count it read in a listener of soles stays
// there or, moved by remove with mu held, is in soleGone at the next read.
// checkSoles checks them (tests only call it).

// The states of Listener.sole.
const (
	soleUnseen uint32 = iota // no sole delivery yet, not in soles
	soleListed               // in EventManager.soles
	soleOut                  // unregistered: its count goes to soleGone
)

// soleDelivered counts an EmitSync call that delivered to l, its one
// listener.
func (m *EventManager[T]) soleDelivered(l *Listener) {
	l.counts.add(cSole, 1)
	if l.sole.Load() != soleListed {
		m.soleFirstOrOut(l)
	}
}

// soleFirstOrOut is soleDelivered for a listener not in soles: it lists
// one that had no sole delivery before, and settles one unregistered.
func (m *EventManager[T]) soleFirstOrOut(l *Listener) {
	if l.sole.Load() == soleUnseen {
		m.mu.Lock()
		if l.sole.Load() == soleUnseen { // remove sets soleOut with mu held
			l.soleIdx = len(m.soles)
			m.soles = append(m.soles, l)
			l.sole.Store(soleListed)
		}
		m.mu.Unlock()
	}
	if l.sole.Load() == soleOut {
		m.settleSole(l)
	}
}

// soleLeave takes l out of soles, with mu held, as its entry leaves the
// registry, and moves its count to soleGone.
func (m *EventManager[T]) soleLeave(l *Listener) {
	if l.sole.Load() == soleListed {
		last := m.soles[len(m.soles)-1]
		m.soles[l.soleIdx], last.soleIdx = last, l.soleIdx
		m.soles[len(m.soles)-1] = nil
		m.soles = m.soles[:len(m.soles)-1]
	}
	l.sole.Store(soleOut) // before its count is read
	m.settleSole(l)
}

// settleSole moves l's sole deliveries not yet moved to soleGone; l is
// soleOut.
func (m *EventManager[T]) settleSole(l *Listener) {
	for {
		moved, n := l.soleMoved.Load(), l.counts.read(cSole)
		if n <= moved {
			return
		}
		if l.soleMoved.CompareAndSwap(moved, n) {
			m.soleGone.Add(n - moved)
			return
		}
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
	for i, l := range m.soles {
		if st := l.sole.Load(); st != soleListed || l.soleIdx != i || l.soleMoved.Load() != 0 {
			return fmt.Errorf("eventbus: sole invariant: listener %q at %d of soles has state %d, index %d, %d moved",
				l.name, i, st, l.soleIdx, l.soleMoved.Load())
		}
	}
	return nil
}
