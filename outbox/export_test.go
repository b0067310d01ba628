package outbox

// FlushLooks counts the looks of o's Flush calls at the table that found
// rows still to do: a test that needs a Flush to be waiting waits for it
// to grow.
func FlushLooks[T any](o *Outbox[T]) uint64 { return o.looks.Load() }
