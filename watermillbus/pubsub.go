package watermillbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventbus-go/eventbus"
)

// PubSub is a watermill message.Publisher and message.Subscriber backed by
// an eventbus.EventManager that it creates and owns. All its methods are
// safe for concurrent use. Create one with New and release it with Close.
//
// Every message published to a topic goes, once, to every subscription of
// the topic that existed when Publish was called (and, with
// WithPersistence, to later ones from the topic's log). A subscription
// receives its messages in the order they were published (for one
// publishing goroutine, the order of its calls), one at a time: the next
// one only after the current one is acked. Nack sends the same message
// again until it is acked. Each subscription gets its own copy of each
// message, sharing the Payload bytes with the published message.
type PubSub struct {
	cfg config
	bus *eventbus.EventManager[envelope]

	closed atomic.Bool
	mu     sync.Mutex // guards subs, logs and the closed transition
	subs   map[*subscription]struct{}
	logs   map[string]*topicLog // by event name; WithPersistence only

	closeOnce sync.Once
	closeErr  error

	// nowait is a context that is already done: EmitTo with it never waits
	// for room (see subscription.poke).
	nowait context.Context

	stats counters
}

// envelope is the data of an event on the PubSub's EventManager.
type envelope struct {
	// msg is the published message; nil for an event that only runs a
	// subscription's listener, to start or resume its replay (poke).
	msg *message.Message
	// seq is msg's number in its topic's log (WithPersistence; 0 without).
	seq uint64
}

var (
	_ message.Publisher  = (*PubSub)(nil)
	_ message.Subscriber = (*PubSub)(nil)
)

// New returns a PubSub configured by opts, with an EventManager of its own
// made with the options given to WithBusOptions. It fails with
// ErrInvalidOption when an option is out of range. It starts no goroutine.
func New(opts ...Option) (*PubSub, error) {
	var cfg config
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if cfg.err != nil {
		return nil, fmt.Errorf("watermillbus.New: %w", cfg.err)
	}
	nowait, cancel := context.WithCancel(context.Background())
	cancel()
	p := &PubSub{
		cfg:    cfg,
		bus:    eventbus.New[envelope](cfg.busOpts...),
		subs:   map[*subscription]struct{}{},
		nowait: nowait,
	}
	if cfg.persist > 0 {
		p.logs = map[string]*topicLog{}
	}
	return p, nil
}

// Publish publishes messages to topic, in order. Each message is copied
// (with its context under WithPreserveContext), so the caller may reuse it
// once Publish returns; its acks are not affected by any subscriber's.
// Publish returns once the messages are queued for the subscriptions of
// topic, without waiting for them to be handled. When the backlog of one of
// them is full (see eventbus.WithQueueSize) it waits for room, until the
// message's context is done (an error matching eventbus.ErrQueueFull and
// the context's error; the message is delivered to no subscription and
// kept in no log) or Close is called (ErrClosed); called from an eventbus
// handler (of any EventManager), it does not wait and fails with
// eventbus.ErrQueueFull instead once the backlog and its reserve are full.
// While it waits it holds no lock: other Publish and Subscribe calls, on
// this topic or any other, go on.
//
// It fails with ErrClosed after Close and ErrNilMessage for a nil message;
// the messages before the failing one are published.
func (p *PubSub) Publish(topic string, messages ...*message.Message) error {
	if p.closed.Load() {
		return fmt.Errorf("publish to %q: %w", topic, ErrClosed)
	}
	name := EventName(topic)
	var log *topicLog
	if p.cfg.persist > 0 {
		var err error
		if log, err = p.topicLog(name); err != nil {
			return fmt.Errorf("publish to %q: %w", topic, err)
		}
	}
	for i, msg := range messages {
		if msg == nil {
			return fmt.Errorf("publish to %q: message %d: %w", topic, i, ErrNilMessage)
		}
		if err := p.publish(name, msg, log); err != nil {
			return fmt.Errorf("publish to %q: message %q: %w", topic, msg.UUID, err)
		}
	}
	return nil
}

func (p *PubSub) publish(name string, msg *message.Message, log *topicLog) error {
	cp := msg.Copy()
	if p.cfg.preserveContext {
		cp = msg.CopyWithContext()
	}
	// Emit waits for room under the message's cancellation, if it has one;
	// listeners do not need the publisher's context values.
	ctx := context.Background()
	if mctx := msg.Context(); mctx.Done() != nil {
		ctx = mctx
	}
	if log == nil {
		if err := p.bus.Emit(ctx, name, envelope{msg: cp}); err != nil {
			return busError(err)
		}
		p.stats.published.Add(1)
		return nil
	}
	// The entry is in the log, pending, before the emit and settled after
	// it, with no lock held in between (see persist.go).
	e, evicted := log.take(cp, p.cfg.persist)
	if evicted {
		p.stats.evicted.Add(1)
	}
	err := p.bus.Emit(ctx, name, envelope{msg: cp, seq: e.seq})
	waiters, evicted := log.settle(e, err == nil)
	if evicted {
		p.stats.evicted.Add(1)
	}
	if err == nil {
		p.stats.published.Add(1)
	}
	for _, s := range waiters {
		s.settled(e)
	}
	if err != nil {
		return busError(err)
	}
	return nil
}

// busError adds ErrClosed to the EventManager's.
func busError(err error) error {
	if errors.Is(err, eventbus.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// topicLog returns the log of the topic with the given event name.
func (p *PubSub) topicLog(name string) (*topicLog, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return nil, ErrClosed
	}
	log := p.logs[name]
	if log == nil {
		log = &topicLog{}
		p.logs[name] = log
	}
	return log, nil
}

// Subscribe returns a channel that receives the messages published to
// topic from now on (preceded, under WithPersistence, by the messages kept
// for topic), in publish order; the next message arrives only after the
// previous one is acked. A nacked message arrives again, at once or, with
// WithNackDelay, after an eventbus.Retry backoff on a timer, until it is
// acked. Each subscription is one eventbus listener with Ordered
// delivery; while a message waits to be read or acked, that listener keeps
// a worker goroutine, which the EventManager counts as stalled and replaces
// (up to eventbus.WithMaxWorkers goroutines).
//
// Subscribe never waits for room, for a Publish or for the subscription's
// reader: it returns at once, whatever is being published meanwhile. The
// replay is sent by the subscription's listener once Subscribe has
// returned; it waits for nothing but the reader's acks and, for a message
// whose Publish had not returned when Subscribe was called, for that
// Publish to settle (a message whose Publish fails is skipped).
//
// The channel is closed when ctx is done or Close is called; a message
// being read or not yet acked then is dropped from this subscription. It
// fails with ErrNilContext for a nil ctx, ErrClosed after Close, and, if
// ctx is done by the time it would return, with an error matching ctx's
// error (and no subscription).
func (p *PubSub) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if ctx == nil {
		return nil, fmt.Errorf("subscribe to %q: %w", topic, ErrNilContext)
	}
	if p.closed.Load() {
		return nil, fmt.Errorf("subscribe to %q: %w", topic, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("subscribe to %q: %w", topic, err)
	}
	s := newSubscription(p, ctx)
	name := EventName(topic)
	replay, err := p.register(s, name)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %q: %w", topic, err)
	}
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		s.close()
		return nil, fmt.Errorf("subscribe to %q: %w", topic, ErrClosed)
	}
	p.subs[s] = struct{}{}
	p.mu.Unlock()
	s.watch(ctx)
	if err := ctx.Err(); err != nil {
		s.close()
		return nil, fmt.Errorf("subscribe to %q: %w", topic, err)
	}
	if replay > 0 {
		// Any event runs the listener, which replays first; this one
		// carries no message, and goes to s's listener only.
		s.poke()
	}
	return s.out, nil
}

// register registers s's listener for name and, with persistence, takes
// the topic's log as s's replay, atomically with respect to the log's
// bookkeeping (see persist.go): s.from and s.replay are set before the
// listener exists, and belong to it from then on. It returns the length of
// the replay.
func (p *PubSub) register(s *subscription, name string) (replay int, err error) {
	s.name = name
	if p.cfg.persist == 0 {
		return 0, s.register()
	}
	log, err := p.topicLog(name)
	if err != nil {
		return 0, err
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	s.replay, s.from = log.snapshot(s)
	return len(s.replay), s.register()
}

// closeBus closes the EventManager once every subscription is closed: their
// listeners are unregistered and their handlers have returned, so all it
// still holds is deliveries that are skipped without running, the nack
// retries waiting out WithNackDelay included (Unregister drops their
// timers, and a retry made after it goes straight back to be skipped), so
// a graceful Close waits for nothing but the workers to exit. (A first
// Close with a done context, as before, abandoned instead of skipping
// whatever a worker had not yet accounted for: the count depended on
// timing.)
func (p *PubSub) closeBus() error {
	return p.bus.Close(context.Background())
}

// forget removes a closed subscription.
func (p *PubSub) forget(s *subscription) {
	p.mu.Lock()
	delete(p.subs, s)
	p.mu.Unlock()
}

// Close closes every subscription (their channels are closed once their
// listener has returned), drops the topic logs, and closes the
// EventManager, waiting for its workers to exit. From its call on, Publish
// and Subscribe fail with ErrClosed; a Publish waiting for queue room is
// released with it. Messages published and not yet delivered are dropped,
// and so are nacked ones waiting out WithNackDelay: Close does not wait
// for their timers.
// Close is idempotent and safe to call concurrently: every call returns
// once the first one has finished, with its result.
func (p *PubSub) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed.Store(true)
		subs := make([]*subscription, 0, len(p.subs))
		for s := range p.subs {
			subs = append(subs, s)
		}
		p.logs = nil
		p.mu.Unlock()
		for _, s := range subs {
			s.close()
		}
		if err := p.closeBus(); err != nil {
			p.closeErr = fmt.Errorf("watermillbus: close: %w", err)
		}
	})
	return p.closeErr
}
