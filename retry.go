package eventbus

import (
	"math/rand/v2"
	"time"
)

type retryPolicy struct {
	retries      int
	initial, max time.Duration
}

// backoff returns how long to wait before attempt number n+1, after n failed
// attempts: initial·2^(n-1) capped at max, then a random point in its upper
// half, so that listeners failing together do not retry in lockstep.
func (p *retryPolicy) backoff(n int) time.Duration {
	d := p.initial
	for i := 1; i < n && d < p.max; i++ {
		d *= 2
	}
	d = min(d, p.max)
	half := d / 2
	return half + rand.N(d-half+1)
}
