package sched

import (
	"sync"
	"time"
)

// poolTimer is one of the scheduler's timers (the watchdog, the idle timer,
// the retry timer): a time.Timer made on first use and re-armed with Reset
// after, so that arming costs no allocation and no goroutine. f, its
// callback, and live are set once by New (a method value made at each
// arming would be allocated each time). Its other fields are guarded by
// s.mu; the callback takes s.mu and calls fired first.
//
// live counts each firing from the moment it is scheduled until its
// callback has returned, or until Stop or Reset takes it back, so that
// Close, which waits for live (Scheduler.gone), returns only once no
// callback of the pool's timers can be running: a scheduled firing is
// counted before it is scheduled (it could otherwise run, and be counted
// down, first), and a Reset that moved a firing still pending rather than
// scheduling a new one gives its count back.
type poolTimer struct {
	f     func()
	live  *sync.WaitGroup
	t     *time.Timer
	armed bool // set from arming until the callback runs or stop
}

// arm makes the timer call f after d, unless it is armed already.
func (p *poolTimer) arm(d time.Duration) {
	if !p.armed {
		p.reset(d)
	}
}

// reset makes the timer call f after d, armed or not.
func (p *poolTimer) reset(d time.Duration) {
	p.armed = true
	p.live.Add(1)
	if p.t == nil {
		p.t = time.AfterFunc(d, p.fire)
		return
	}
	if p.t.Reset(d) { // a firing was pending: it moved, and was counted
		p.live.Done()
	}
}

// fire runs the callback of one firing.
func (p *poolTimer) fire() {
	defer p.live.Done()
	p.f()
}

// fired records that the callback runs: the timer may be armed again.
func (p *poolTimer) fired() { p.armed = false }

// stop disarms the timer.
func (p *poolTimer) stop() {
	p.armed = false
	if p.t != nil && p.t.Stop() { // a pending firing will not run
		p.live.Done()
	}
}
