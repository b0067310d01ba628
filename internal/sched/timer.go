package sched

import "time"

// poolTimer is one of the scheduler's timers (the watchdog, the idle timer,
// the retry timer): a time.Timer made on first use and re-armed with Reset
// after, so that arming costs no allocation and no goroutine. f, its
// callback, is set once by New (a method value made at each arming would
// be allocated each time). Its other fields are guarded by s.mu; the
// callback takes s.mu and calls fired first.
type poolTimer struct {
	f     func()
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
	if p.t == nil {
		p.t = time.AfterFunc(d, p.f)
		return
	}
	p.t.Reset(d)
}

// fired records that the callback runs: the timer may be armed again.
func (p *poolTimer) fired() { p.armed = false }

// stop disarms the timer.
func (p *poolTimer) stop() {
	p.armed = false
	if p.t != nil {
		p.t.Stop()
	}
}
