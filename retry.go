package eventbus

import (
	"math/rand/v2"
	"time"
)

// Retries. A failed delivery of a listener with Retry waits out its backoff
// on a timer, not on a worker, and then goes back to the front of its
// mailbox. While it waits it stays in the listener's backlog (so it counts
// against the bound) and in its Flush epoch (so Flush and Close wait for
// it); an ordered mailbox is paused meanwhile, to keep its order.

// RetryForever, as Retry's retries, retries a failing delivery until it
// succeeds, the listener is unregistered, or Close gives up waiting.
const RetryForever = -1

type retryPolicy struct {
	retries      int // RetryForever: no limit
	initial, max time.Duration
}

// again reports whether a delivery that failed attempt+1 times is retried.
func (p *retryPolicy) again(attempt int) bool {
	return p.retries == RetryForever || attempt < p.retries
}

// backoff returns how long to wait before attempt number n+1, after n failed
// attempts: initial·2^(n-1) capped at max, then a random point in its upper
// half, so that listeners failing together do not retry in lockstep.
func (p *retryPolicy) backoff(n int) time.Duration {
	if p.max == 0 {
		return 0 // at once
	}
	d := p.initial
	for i := 1; i < n && d < p.max; i++ {
		d *= 2
	}
	d = min(d, p.max)
	half := d / 2
	return half + rand.N(d-half+1)
}

// retryTimer is a delivery waiting out its backoff.
type retryTimer[T any] struct {
	t  *time.Timer
	d  delivery[T]
	mb *mailbox[T]
}

// startBackoff schedules d to run again in mb after its backoff, with s.mu
// held. d.attempt counts the attempts that failed.
func (s *scheduler[T]) startBackoff(mb *mailbox[T], d delivery[T]) {
	wait := mb.in.e.retry.backoff(d.attempt)
	if wait == 0 { // at once: straight back to the front of the mailbox
		s.push(mb, d, true)
		return
	}
	if !mb.tracked {
		s.track(mb)
	}
	s.backoff++
	mb.backoffs++
	mb.in.backlog++
	rt := &retryTimer[T]{d: d, mb: mb}
	s.timers[rt] = struct{}{}
	rt.t = time.AfterFunc(wait, func() { s.retryDue(rt) })
}

// retryDue puts a delivery whose backoff has ended back in its mailbox, or
// abandons it if Close gave up meanwhile.
func (s *scheduler[T]) retryDue(rt *retryTimer[T]) {
	s.mu.Lock()
	if _, ok := s.timers[rt]; !ok {
		s.mu.Unlock()
		return // abort stopped it
	}
	s.endBackoff(rt)
	if !s.aborted.Load() {
		s.push(rt.mb, rt.d, true)
		s.makeReady(rt.mb)
		s.verify()
		s.mu.Unlock()
		return
	}
	s.stats.abandoned++
	s.complete(rt.d.rec.ep)
	lost := s.observeLost(nil, rt.mb, rt.d)
	s.release(&rt.d)
	s.retire(rt.mb)
	s.finish()
	s.idle = 0
	s.work.Broadcast() // the pool may have drained
	s.verify()
	s.mu.Unlock()
	s.tellLost(lost, OutcomeAbandoned)
}

// endBackoff takes rt out of the backoff accounting, with s.mu held.
func (s *scheduler[T]) endBackoff(rt *retryTimer[T]) {
	delete(s.timers, rt)
	s.backoff--
	rt.mb.backoffs--
	s.shrink(rt.mb.in, 1)
}

// dropRetries skips the deliveries of in that wait out a backoff, once its
// listener is unregistered: their next attempt would be skipped anyway, and
// Flush and Close need not wait for the timers.
func (s *scheduler[T]) dropRetries(in *inbox[T]) {
	var lost []Delivery
	dropped := 0
	s.mu.Lock()
	for rt := range s.timers {
		if rt.mb.in != in || !rt.t.Stop() {
			continue
		}
		dropped++
		s.endBackoff(rt)
		s.stats.skipped++
		in.e.l.counts.add(cSkipped, 1)
		s.complete(rt.d.rec.ep)
		lost = s.observeLost(lost, rt.mb, rt.d)
		s.release(&rt.d)
		s.makeReady(rt.mb) // an ordered mailbox no longer waits for it
		s.retire(rt.mb)
	}
	if dropped > 0 {
		s.finish()
		s.idle = 0
		s.work.Broadcast() // the pool may have drained
	}
	s.verify()
	s.mu.Unlock()
	s.tellLost(lost, OutcomeSkipped)
}
