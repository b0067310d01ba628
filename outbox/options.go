package outbox

import (
	"fmt"
	"log/slog"
	"regexp"
	"time"
)

// Defaults of the options.
const (
	DefaultTable        = "eventbus_outbox"      // see Table
	DefaultMaxAttempts  = 8                      // see MaxAttempts
	DefaultBackoffMin   = 100 * time.Millisecond // see Backoff
	DefaultBackoffMax   = time.Minute            // see Backoff
	DefaultPollInterval = time.Second            // see PollInterval
	DefaultBatchSize    = 256                    // see BatchSize
	hotStart            = 250 * time.Microsecond // first poll after an Emit
)

// An Option configures an Outbox; pass it to New. An option out of range makes
// New fail with an error matching ErrInvalidOption.
type Option interface {
	apply(*options) error
}

type optionFunc func(*options) error

func (f optionFunc) apply(o *options) error { return f(o) }

type options struct {
	table       string
	maxAttempts int
	backoffMin  time.Duration
	backoffMax  time.Duration
	poll        time.Duration
	batch       int
	codec       Codec
	onError     func(error)
}

func defaultOptions() options {
	return options{
		table:       DefaultTable,
		maxAttempts: DefaultMaxAttempts,
		backoffMin:  DefaultBackoffMin,
		backoffMax:  DefaultBackoffMax,
		poll:        DefaultPollInterval,
		batch:       DefaultBatchSize,
		codec:       JSON{},
		onError: func(err error) {
			slog.Default().Error("outbox: relay error", "err", err)
		},
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidOption, fmt.Sprintf(format, args...))
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,50}$`)

// Table names the table the Outbox writes to and relays from (DefaultTable,
// "eventbus_outbox", without it). New creates it if it is missing, with an
// index named after it. name must be a plain SQL identifier: a letter or
// '_', then letters, digits or '_', at most 51 characters; it is used
// unquoted, so PostgreSQL folds it to lower case.
func Table(name string) Option {
	return optionFunc(func(o *options) error {
		if !identRE.MatchString(name) {
			return invalid("table name %q is not a plain SQL identifier", name)
		}
		o.table = name
		return nil
	})
}

// MaxAttempts sets how many failed attempts of a listener on an event the
// outbox makes before it gives up on that listener for that event, as a
// dead letter (n ≥ 1; DefaultMaxAttempts, 8, without it). An attempt is one
// call of the listener (of every listener of one name); a corrupt row is
// given up after n failed decodings.
func MaxAttempts(n int) Option {
	return optionFunc(func(o *options) error {
		if n < 1 {
			return invalid("MaxAttempts(%d): want at least 1", n)
		}
		o.maxAttempts = n
		return nil
	})
}

// Backoff sets the wait before a failed event is attempted again, for the
// listeners that have not handled it: min after the event's first failed
// attempt, doubling with each failed attempt up to max, randomised to between half
// and all of that (DefaultBackoffMin 100ms, DefaultBackoffMax 1m without it).
// With the defaults an event is given up about 13 s after its first failure.
// 0 < min ≤ max; the database stores times in milliseconds.
func Backoff(min, max time.Duration) Option {
	return optionFunc(func(o *options) error {
		if min <= 0 || max < min {
			return invalid("Backoff(%v, %v): want 0 < min <= max", min, max)
		}
		o.backoffMin, o.backoffMax = min, max
		return nil
	})
}

// PollInterval sets how often the relay looks for events when nothing woke it
// (DefaultPollInterval, 1s, without it): the latency bound for events
// committed by another process on SQLite, or on PostgreSQL while its
// LISTEN connection is down. d > 0.
func PollInterval(d time.Duration) Option {
	return optionFunc(func(o *options) error {
		if d <= 0 {
			return invalid("PollInterval(%v): want > 0", d)
		}
		o.poll = d
		return nil
	})
}

// BatchSize sets how many rows the relay claims per pass (DefaultBatchSize,
// 256, without it). n ≥ 1.
func BatchSize(n int) Option {
	return optionFunc(func(o *options) error {
		if n < 1 {
			return invalid("BatchSize(%d): want at least 1", n)
		}
		o.batch = n
		return nil
	})
}

// WithCodec sets the codec of the payloads (JSON without it). Rows written
// with one codec must be read with the same one. A nil c is invalid.
func WithCodec(c Codec) Option {
	return optionFunc(func(o *options) error {
		if c == nil {
			return invalid("WithCodec(nil)")
		}
		o.codec = c
		return nil
	})
}

// WithErrorHandler sets the function that receives the relay's own errors:
// a database that cannot be read or written, a lost LISTEN connection (the
// relay retries; it reports each failure). Dead letters go to the
// EventManager's error handler instead (see DeadLetter). It is called from the
// relay's goroutines and must not block for long. The default logs with
// slog.Default(); a nil f keeps it.
func WithErrorHandler(f func(err error)) Option {
	return optionFunc(func(o *options) error {
		if f != nil {
			o.onError = f
		}
		return nil
	})
}
