package sched

// Counters count the scheduler's deliveries, guarded by its lock; a worker
// fills its own for a batch and adds them in one go.
type Counters struct {
	Emitted   uint64 // events accepted
	Matched   uint64 // deliveries they made: one per event and listener
	Delivered uint64 // attempts that returned Delivered
	Failed    uint64 // deliveries that failed (after any retries)
	Panicked  uint64 // deliveries that panicked (after any retries)
	Skipped   uint64 // deliveries not run: Skipped, or unregistered while backing off
	Dropped   uint64 // deliveries dropped by an overflow policy
	Abandoned uint64 // deliveries dropped because Close gave up
	Retried   uint64 // failed attempts that are run again; not deliveries
}

func (c *Counters) add(o *Counters) {
	c.Emitted += o.Emitted
	c.Matched += o.Matched
	c.Delivered += o.Delivered
	c.Failed += o.Failed
	c.Panicked += o.Panicked
	c.Skipped += o.Skipped
	c.Dropped += o.Dropped
	c.Abandoned += o.Abandoned
	c.Retried += o.Retried
}

// count counts the result of one attempt.
func (c *Counters) count(r Result) {
	switch r {
	case Delivered:
		c.Delivered++
	case Failed:
		c.Failed++
	case Panicked:
		c.Panicked++
	case Skipped:
		c.Skipped++
	case Retry:
		c.Retried++
	}
}

// Stats is a snapshot of the scheduler's counters, read together under its
// lock: every delivery accepted is counted once in Counters (but Retried)
// or is still Queued or Running.
type Stats struct {
	Counters
	Queued  int // deliveries waiting, including those waiting out a retry backoff
	Running int // deliveries in workers' hands
}
