package eventbus

import (
	"math/rand/v2"
	"time"
)

// Retries. A listener's retry policy (Retry) says whether a failed delivery
// is attempted again and after what backoff; the scheduler
// (internal/sched) asks it through the listener's entry (pool.go), and
// waits out the backoff on its one retry timer.

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
