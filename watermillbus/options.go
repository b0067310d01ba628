package watermillbus

import (
	"fmt"
	"math"
	"time"

	"github.com/eventbus-go/eventbus"
)

// An Option configures a PubSub; pass it to New.
type Option interface {
	apply(*config)
}

type config struct {
	preserveContext bool
	persist         int // messages kept per topic; 0: off
	nackDelay       time.Duration
	busOpts         []eventbus.Option
	err             error
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

func (c *config) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
	}
}

// WithPreserveContext makes every delivered message carry the context of
// the published message (its values, deadline and cancellation), as
// gochannel's PreserveContext does; the PubSub never cancels it. Without
// it, a delivered message's context is derived from the context given to
// Subscribe and is cancelled once the message is acked or nacked, or when
// the subscription ends.
func WithPreserveContext() Option {
	return optionFunc(func(c *config) { c.preserveContext = true })
}

// WithPersistence keeps the last perTopic messages published to each topic
// (perTopic ≥ 1) and replays them, in publish order, to every new
// subscription of the topic before any message published after it
// subscribed; the equivalent of gochannel's Persistent option, with a
// bound. When a topic's log is full, publishing drops its oldest message
// from the log (live subscriptions still get every message), counted in
// Stats.Evicted; a message whose Publish fails is not kept. See Subscribe
// for what a replay waits for. Memory grows with the number of topics published to:
// up to perTopic messages each, kept until Close.
func WithPersistence(perTopic int) Option {
	return optionFunc(func(c *config) {
		if perTopic < 1 {
			c.fail("WithPersistence(%d): need at least 1 message per topic", perTopic)
			return
		}
		c.persist = perTopic
	})
}

// WithNackDelay makes a nacked message wait before it is sent again to the
// subscription that nacked it: at least d and at most 2d, a random point in
// between so that subscriptions nacking together do not come back in
// lockstep (d ≥ 0). The default, 0, sends it again at once. The wait is a
// timer, not a goroutine; the subscription's next messages wait behind the
// nacked one. The end of the subscription, or Close, cuts the wait short.
func WithNackDelay(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.fail("WithNackDelay(%v): must not be negative", d)
			return
		}
		c.nackDelay = d
	})
}

// listenerOptions are the options of a subscription's listener: Ordered,
// and with a nack delay a Retry policy that sends a nacked message again
// until it is acked, after a backoff in [nackDelay, 2·nackDelay] (the
// core's jitter picks a point in the upper half of its bound) on a timer.
func (c *config) listenerOptions() []eventbus.ListenerOption {
	d := c.nackDelay
	if d == 0 {
		return []eventbus.ListenerOption{eventbus.Ordered()}
	}
	bound := time.Duration(math.MaxInt64)
	if d <= bound/2 {
		bound = 2 * d
	}
	return []eventbus.ListenerOption{eventbus.Ordered(), eventbus.Retry(eventbus.RetryForever, bound, bound)}
}

// WithBusOptions passes options to the EventManager that the PubSub
// creates, such as eventbus.WithWorkers, eventbus.WithQueueSize or
// eventbus.WithErrorHandler.
func WithBusOptions(opts ...eventbus.Option) Option {
	return optionFunc(func(c *config) { c.busOpts = append(c.busOpts, opts...) })
}
