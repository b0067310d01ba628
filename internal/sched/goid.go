package sched

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Worker identity. An Accept, Flush or Close must know whether it runs on a
// worker goroutine, whatever context it was given: a worker must never wait
// for backlog room (it could be waiting for itself, or for a worker of
// another Scheduler that waits for it), and Flush or Close on a worker of
// their own Scheduler would wait for the very handler that calls them.
//
// Workers enlist their goroutine ID in workerGoroutines, the package's one
// piece of global state: it must span every Scheduler (every EventManager),
// whatever its type parameters, for the cross-manager case. Reading the ID
// costs a stack read, which walks the caller's stack (1 µs shallow, tens of
// µs at call depth 40; see the eventbus's BenchmarkGoroutineID), so it is
// done only where waiting or a re-entrant call is at stake: when an Accept
// would otherwise wait for room (after yielding: see admit.go), when an
// Accept is made while Close drains the pool (workers still exist), in
// Flush, Close and Quiesce, and once per worker start. A refused Accept that may not wait (TryEmit), an Accept after the
// pool has finished and every Accept that finds room never read it.

var (
	workerGoroutines sync.Map      // goroutine ID → *Scheduler[E, C] of the worker
	goidReads        atomic.Uint64 // workerOwner calls, for tests
)

// enlistWorker records the calling goroutine as a worker of s and returns
// its ID and the function that strikes it off.
func enlistWorker(s any) (id uint64, strike func()) {
	id = goid()
	workerGoroutines.Store(id, s)
	return id, func() { workerGoroutines.Delete(id) }
}

// workerOwner returns the calling goroutine's ID and the scheduler whose
// worker it is, or nil.
func workerOwner() (id uint64, owner any) {
	goidReads.Add(1)
	id = goid()
	owner, _ = workerGoroutines.Load(id)
	return id, owner
}

// goid returns the calling goroutine's ID, read from the first line of its
// stack trace ("goroutine 42 [running]:").
func goid() uint64 {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	const prefix = len("goroutine ")
	var id uint64
	for _, c := range buf[prefix:n] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}

// GoroutineIDReads counts the stack reads made to tell whether a caller is
// a worker (not those of workers enlisting themselves), for tests.
func GoroutineIDReads() uint64 { return goidReads.Load() }

// GoroutineID returns the calling goroutine's ID: the stack read itself,
// for its benchmark.
func GoroutineID() uint64 { return goid() }
