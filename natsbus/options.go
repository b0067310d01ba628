package natsbus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
)

// Defaults used when an option or a JetStreamConfig field is left zero.
const (
	_defaultMaxInFlight    = 256
	_defaultAckTimeout     = 2 * time.Second
	_defaultPublishTimeout = 15 * time.Second
	_defaultRetryWait      = 100 * time.Millisecond
	_defaultMaxDeliver     = 5
	_defaultAckWait        = 30 * time.Second
	_defaultNakDelay       = time.Second
	_defaultMaxAckPending  = 1000
	_defaultPullBatch      = 100
	_defaultPullMaxBytes   = 4 << 20
	_defaultPullExpiry     = 10 * time.Second
	_defaultHeartbeat      = time.Second
	_defaultPendingMsgs    = nats.DefaultSubPendingMsgsLimit
	_defaultPendingBytes   = nats.DefaultSubPendingBytesLimit
	_defaultRequestTimeout = 5 * time.Second
)

// An Option configures a [Bridge]. Options that can be invalid make [New]
// return an error wrapping [ErrConfig].
type Option interface {
	apply(*options) error
}

type optionFunc func(*options) error

func (f optionFunc) apply(o *options) error { return f(o) }

type options struct {
	outbound     []string
	inbound      []string
	prefix       string
	codec        Codec
	onError      func(error)
	origin       string
	propagators  []Propagator
	queue        string
	pendingMsgs  int
	pendingBytes int
	syncInbound  bool
	js           *JetStreamConfig
}

// Outbound publishes every local event whose name matches one of the
// patterns. An event matching several patterns is published once.
func Outbound(patterns ...string) Option {
	return optionFunc(func(o *options) error {
		o.outbound = append(o.outbound, patterns...)
		return nil
	})
}

// Inbound emits into the local EventManager every message whose subject
// (after the prefix) matches one of the patterns. A message matching several
// patterns is emitted once.
func Inbound(patterns ...string) Option {
	return optionFunc(func(o *options) error {
		o.inbound = append(o.inbound, patterns...)
		return nil
	})
}

// WithSubjectPrefix puts prefix in front of every subject the bridge
// publishes or subscribes to, and strips it from inbound subjects to get the
// local event name. The prefix is one or more literal tokens followed by a
// dot, such as "orders.svc1.".
func WithSubjectPrefix(prefix string) Option {
	return optionFunc(func(o *options) error {
		o.prefix = prefix
		return nil
	})
}

// WithCodec sets the codec for event data. The default is [JSON].
func WithCodec(c Codec) Option {
	return optionFunc(func(o *options) error {
		if c == nil {
			return configErr("nil codec")
		}
		o.codec = c
		return nil
	})
}

// WithErrorHandler receives the errors the bridge cannot return to a caller:
// undecodable or forged inbound messages, slow-consumer drops, JetStream
// publishes that failed or whose outcome is unknown, exhausted
// redeliveries. It may be called from several goroutines at once
// and must not block for long. Without it, such errors are only counted in
// [Stats].
func WithErrorHandler(f func(err error)) Option {
	return optionFunc(func(o *options) error {
		o.onError = f
		return nil
	})
}

// WithOrigin names the bridge in the Eventbus-Origin header. The default
// is a random unique ID; a fixed name must be unique among running bridges.
// A message that comes back with the bridge's own origin is not emitted
// locally again: silently (Stats.SkippedOwn) if the bridge published it,
// with ErrForgedOrigin (Stats.ForgedOrigin) if its Eventbus-Id is not one
// this bridge made, which is the case for messages of another bridge
// using the same name and for those an earlier run of this service
// published under it (JetStream redelivers them after a restart).
func WithOrigin(name string) Option {
	return optionFunc(func(o *options) error {
		if name == "" {
			return configErr("empty origin")
		}
		o.origin = name
		return nil
	})
}

// WithPropagator copies values between an event's context and message
// headers: Inject on the way out, Extract on the way in. Several
// propagators may be given; they run in order.
func WithPropagator(p Propagator) Option {
	return optionFunc(func(o *options) error {
		if p == nil {
			return configErr("nil propagator")
		}
		o.propagators = append(o.propagators, p)
		return nil
	})
}

// WithQueueGroup makes the core-mode inbound subscriptions members of a
// NATS queue group, so that each message reaches only one of the bridges
// sharing the group name (load balancing across replicas). The server
// picks one subscription of the group per message, among all the patterns'
// subscriptions, so a message matching several Inbound patterns is still
// delivered once. JetStream bridges share work by using the same Durable
// name instead ([New] refuses a queue group in JetStream mode).
func WithQueueGroup(name string) Option {
	return optionFunc(func(o *options) error {
		if name == "" {
			return configErr("empty queue group")
		}
		o.queue = name
		return nil
	})
}

// WithPendingLimits sets how many messages and bytes the NATS client may
// buffer for a core-mode inbound subscription before it drops messages as a
// slow consumer. The defaults are nats.go's.
func WithPendingLimits(msgs, bytes int) Option {
	return optionFunc(func(o *options) error {
		if msgs == 0 || bytes == 0 {
			return configErr("pending limits must be non-zero")
		}
		o.pendingMsgs, o.pendingBytes = msgs, bytes
		return nil
	})
}

// WithSyncInbound makes a core-mode bridge deliver each inbound message
// with EmitSync, in the subscription's callback, instead of handing it to
// the EventManager's workers with Emit. Memory held for inbound messages
// is then bounded by the pending limits (WithPendingLimits) plus one
// message per Inbound pattern being handled: past the limits nats.go drops
// messages, counted in Stats.Dropped and reported with ErrSlowConsumer.
// Without it, Emit queues up to the EventManager's queue size (4096 per
// listener by default) of decoded events on top of the pending limits, and
// the bridge cannot bound that in bytes (see the README).
//
// The price: a pattern's messages are handled one at a time, in order, on
// nats.go's goroutine for its subscription, and the listeners' delivery
// modes (Ordered, Concurrency, Retry, ...) do not apply, as with any
// EmitSync; a listener's error is reported as a *MessageError wrapping
// ErrEmit and counted in Stats.ListenerErrors. Close cancels the context of
// every listener still running, with or without
// eventbus.CancelWithEmitter, and waits for them. It has no effect in
// JetStream mode, which always works this way, within PullMaxBytes.
func WithSyncInbound() Option {
	return optionFunc(func(o *options) error {
		o.syncInbound = true
		return nil
	})
}

// WithJetStream switches the bridge to JetStream (at-least-once) mode.
func WithJetStream(cfg JetStreamConfig) Option {
	return optionFunc(func(o *options) error {
		if cfg.Stream == "" {
			return configErr("JetStream: empty stream name")
		}
		c := cfg
		o.js = &c
		return nil
	})
}

// JetStreamConfig configures JetStream mode. Zero fields take the defaults
// given in their comments.
type JetStreamConfig struct {
	// Stream is the stream that captures the outbound subjects and holds
	// the inbound ones. It must exist unless Provision is set. Required.
	Stream string
	// Durable is the name of the durable pull consumer the bridge creates
	// or updates for its inbound patterns. Required when there are inbound
	// patterns. Bridges sharing a Durable share the work.
	Durable string

	// Provision, if set, makes New create the stream, or update it, with
	// the subjects the bridge needs (see StreamSettings). Without it the
	// stream must exist and capture the outbound subjects.
	Provision *StreamSettings

	// MaxInFlight bounds outbound publishes awaiting the server's ack.
	// When it is reached, the outbound listener waits, which pushes back
	// on Emit: this is the only way a JetStream publish blocks the
	// emitter. Default 256.
	MaxInFlight int
	// PublishTimeout is the retry budget of a publish: for this long after
	// its first send, a publish whose ack does not come (AckTimeout), or
	// that the server refuses for now ("no responders", JetStream
	// temporarily unavailable, or "duplicate message id is in process"),
	// is sent again with the same Nats-Msg-Id, pausing RetryWait after a
	// refusal (doubling up to 1s). It covers a stream leader election
	// (4-9s with nats-server's defaults on a machine with CPU to spare;
	// elections of 12-30s were seen on a 2-core machine at a load average
	// of 10: set it above the longest election you must ride out, since a
	// publish in flight when it is spent is reported outcome unknown).
	// Once it is spent, the publish is
	// reported at its next deadline (so at most PublishTimeout +
	// AckTimeout after the first send, time disconnected aside): with
	// ErrAckTimeout (outcome unknown) if some send may have been stored,
	// else with ErrPublishRejected. Time while disconnected does not
	// count: the budget is extended by the time the connection was down
	// (as the bridge's checks saw it, to within a check's interval), and
	// after a reconnect every unacknowledged publish is sent again at once
	// and gets at least AckTimeout more. Default 15s.
	PublishTimeout time.Duration
	// AckTimeout is how long to wait for a publish ack before sending the
	// same message again (same Nats-Msg-Id), within PublishTimeout. Only
	// time while connected counts. Default 2s.
	AckTimeout time.Duration
	// PublishAttempts, if positive, also limits the sends of a publish
	// (resends on reconnect included). Default 0: only PublishTimeout
	// limits them.
	PublishAttempts int
	// RetryWait is the first pause before resending a publish the server
	// refused for now (see PublishTimeout); it doubles with each refusal,
	// up to 1s. Default 100ms.
	RetryWait time.Duration

	// MaxDeliver is how often an inbound message is delivered to local
	// listeners at most; after the last failure it is reported as
	// ErrMaxDeliver and terminated. Default 5. The server counts
	// deliveries, not failures: one that Close cuts short, or a message
	// pulled ahead and left unhandled by Close, counts too. A message
	// that Close keeps from being handled on the server's last delivery
	// (the MaxDeliver+1st) is reported as ErrMaxDeliver and terminated.
	// Only a process that dies during that last delivery, or a Close
	// that unsubscribes while the server's last delivery is on its way to
	// the bridge (the client drops it), leaves the message unreported (the
	// server's MAX_DELIVERIES advisory says so).
	MaxDeliver int
	// AckWait is the consumer's ack wait. Every message the bridge holds
	// (being handled, or pulled ahead and waiting for the listeners) gets
	// an in-progress ack at least every AckWait/2 from its arrival until
	// it is acknowledged, so that a long listener neither has its message
	// nor the ones queued behind it redelivered. Default 30s.
	AckWait time.Duration
	// NakDelay is the delay before a failed message is redelivered.
	// Default 1s.
	NakDelay time.Duration
	// MaxAckPending is the consumer's max-ack-pending. It must be at least
	// PullBatch. Default 1000.
	MaxAckPending int
	// PullBatch is how many messages one pull asks for: the client buffers
	// at most this many ahead. Default 100.
	PullBatch int
	// PullMaxBytes bounds, in bytes, the messages one pull may bring and
	// so what the bridge holds in memory ahead of its listeners: at most
	// PullMaxBytes of messages (as the server counts them: subjects,
	// headers and payload), plus the one being handled. It is raised to
	// the server's max payload plus 8 KiB if lower, so that every message
	// fits. (A pull given up for lost, after two missed heartbeats, may
	// still deliver if it was only slow; the bound is then twice as
	// high until it is over.) Default 4 MiB.
	PullMaxBytes int
	// PullExpiry is how long one pull waits on the server for messages
	// before the bridge sends another. Default 10s.
	PullExpiry time.Duration
	// Heartbeat is the idle heartbeat the server sends to a waiting pull.
	// Two heartbeats missed make the bridge wait for the consumer's leader
	// and pull again (reported with ErrConsumerInterrupted), so a consumer
	// resumes within about the election time plus 2 x Heartbeat after its
	// leader dies. At most PullExpiry/2. Default 1s.
	Heartbeat time.Duration
	// RequestTimeout bounds the JetStream API calls made by New (stream
	// lookup, consumer creation) when ctx has no earlier deadline.
	// Default 5s.
	RequestTimeout time.Duration
}

func (c *JetStreamConfig) setDefaults() error {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defd := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.MaxInFlight, _defaultMaxInFlight)
	def(&c.PullMaxBytes, _defaultPullMaxBytes)
	defd(&c.PublishTimeout, _defaultPublishTimeout)
	defd(&c.PullExpiry, _defaultPullExpiry)
	defd(&c.Heartbeat, _defaultHeartbeat)
	def(&c.MaxDeliver, _defaultMaxDeliver)
	def(&c.MaxAckPending, _defaultMaxAckPending)
	def(&c.PullBatch, _defaultPullBatch)
	defd(&c.AckTimeout, _defaultAckTimeout)
	defd(&c.RetryWait, _defaultRetryWait)
	defd(&c.AckWait, _defaultAckWait)
	defd(&c.NakDelay, _defaultNakDelay)
	defd(&c.RequestTimeout, _defaultRequestTimeout)
	switch {
	case c.MaxInFlight < 0, c.PublishAttempts < 0, c.MaxDeliver < 0, c.MaxAckPending < 0, c.PullBatch < 0, c.PullMaxBytes < 0:
		return configErr("JetStream: negative limit")
	case c.AckTimeout < 0, c.RetryWait < 0, c.AckWait < 0, c.NakDelay < 0, c.RequestTimeout < 0,
		c.PublishTimeout < 0, c.PullExpiry < 0, c.Heartbeat < 0:
		return configErr("JetStream: negative duration")
	case 2*c.Heartbeat > c.PullExpiry:
		return configErr("JetStream: Heartbeat %v exceeds PullExpiry/2 (%v)", c.Heartbeat, c.PullExpiry)
	case c.PullBatch > c.MaxAckPending:
		// A pull batch larger than max-ack-pending would leave the client
		// waiting for messages the server will never send.
		return configErr("JetStream: PullBatch %d exceeds MaxAckPending %d", c.PullBatch, c.MaxAckPending)
	}
	return nil
}

// A Propagator copies values between contexts and message headers, for
// correlation IDs or trace context. Inject is called for each outbound
// event with the emitter's context; Extract for each inbound message, and
// its result is the context local listeners receive. Extract must return
// a context derived from the one it is given (context.WithValue and the
// like), or that context itself: the bridge cancels it on Close (see
// Bridge.Close), and a context made afresh would not end. Header keys are
// case-sensitive; keys starting with "Eventbus-" or "Nats-" are reserved.
type Propagator interface {
	Inject(ctx context.Context, h nats.Header)
	Extract(ctx context.Context, h nats.Header) context.Context
}

// ContextValue returns a Propagator that carries the string stored in the
// context under key as the header named header, and restores it on the
// receiving side under the same key. Values that are not strings are not
// carried.
func ContextValue(header string, key any) Propagator {
	return ctxValue{header: header, key: key}
}

type ctxValue struct {
	header string
	key    any
}

func (p ctxValue) Inject(ctx context.Context, h nats.Header) {
	if v, ok := ctx.Value(p.key).(string); ok && v != "" {
		h.Set(p.header, v)
	}
}

func (p ctxValue) Extract(ctx context.Context, h nats.Header) context.Context {
	if v := h.Get(p.header); v != "" {
		return context.WithValue(ctx, p.key, v)
	}
	return ctx
}
