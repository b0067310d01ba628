package eventbus

// ListenerCount returns how many listeners an event named name would be
// delivered to if it were emitted now: those registered with name itself
// and those whose wildcard pattern matches it. It is a snapshot: listeners
// registered or unregistered concurrently may or may not be counted, and
// the count may change as soon as it returns. A Once listener counts until
// its delivery has started; Close does not change the count (an emit after
// Close fails with ErrClosed instead). An invalid name (see [ValidateName])
// matches no pattern, so its count is 0.
//
// It is safe for concurrent use and costs what finding the listeners costs
// an emit, so it can guard the building of an expensive event on the hot
// path: it takes no lock and does not allocate for a name that has a
// literal listener, nor, when there are wildcard patterns, for a name whose
// route is cached (the first emit or ListenerCount of a name caches it).
func (m *EventManager[T]) ListenerCount(name string) int {
	r := m.reg.Load()
	if rt, ok := r.Lookup(name); ok {
		if rt == nil {
			return 0
		}
		return len(rt.all)
	}
	if ValidateName(name) != nil {
		return 0
	}
	if rt := r.Resolve(name); rt != nil {
		return len(rt.all)
	}
	return 0
}

// HasListeners reports whether ListenerCount(name) > 0, with the same
// guarantees: a snapshot, safe for concurrent use, without locking or
// allocating.
func (m *EventManager[T]) HasListeners(name string) bool {
	return m.ListenerCount(name) > 0
}
