package otelbus

import (
	"sync"
	"sync/atomic"
)

// cowMap is a map that readers use without locking or allocating, and that
// is copied on every insert: for small sets that stop growing early (the
// names kept by Limit, the attribute sets of mapped names).
type cowMap[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex // serialises inserts
}

func (c *cowMap[K, V]) load(k K) (v V, ok bool) {
	if p := c.m.Load(); p != nil {
		v, ok = (*p)[k]
	}
	return v, ok
}

// store inserts v under k unless k is there already or the map holds max
// entries; it returns the value under k, and false when the map was full.
func (c *cowMap[K, V]) store(k K, v V, max int) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if have, ok := (*old)[k]; ok {
			return have, true
		}
		if len(*old) >= max {
			return v, false
		}
	} else if max < 1 {
		return v, false
	}
	n := 1
	if old != nil {
		n += len(*old)
	}
	m := make(map[K]V, n)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[k] = v
	c.m.Store(&m)
	return v, true
}
