package outbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventbus-go/eventbus"
)

// Outbox writes events in the caller's transactions and relays the committed
// ones to the listeners of an EventManager. All its methods are safe for
// concurrent use. Create one with New and stop it with Close, which stops its
// goroutines.
//
// Guarantees (the module's README has them in a table):
//   - An event whose transaction rolls back is never delivered; one whose
//     transaction commits is delivered to every listener of its name that is
//     registered when the relay reads it, at least once per listener, even if
//     the process crashes at any point (the next New on the database
//     delivers it).
//   - Delivery is by EventManager.EmitSyncTo, to each listener that
//     EventManager.ListenersOf returns for the event's name (in EmitSync's
//     order), one listener at a time on a goroutine the relay starts and
//     waits for (a listener that calls runtime.Goexit fails that attempt
//     with ErrListenerExited), one event at a time in table order:
//     commit order for transactions committed one after another, and the
//     order of the Emit calls within one transaction. Every listener,
//     Ordered or not, gets the events in that order, except as said below
//     for failures. A listener's middleware and Timeout apply; the core's
//     delivery modes (Ordered, OrderedBy, Concurrency, Retry) govern
//     EventManager.Emit only: the outbox retries by itself, and the core's
//     error handler sees a listener's failure only in a dead letter.
//   - Listeners are identified by name (eventbus.Listener.Name; give them
//     names with eventbus.Name to keep them stable across processes).
//     The row of an event records the listeners that have handled it
//     (column handled). If a listener fails (error or panic), the event is
//     attempted again after a backoff (see Backoff) for the listeners that
//     have not handled it only: a listener that returned nil is not called
//     again. Listeners sharing a name count as one: done when all of them
//     returned nil in one attempt, all called again otherwise. A listener
//     registered between two attempts gets the event at the next one; one
//     unregistered is no longer waited for.
//   - While an event waits for the retry of an Ordered listener (one whose
//     Listener.Ordered is true: Ordered, Concurrency(1), or OrderedBy, for
//     which the outbox holds back all its later events, not only those of
//     the key), the later events are held back for that listener only, so
//     that it keeps commit order, as the core's Retry does; the other
//     listeners of those events get them at once, unless more than
//     BatchSize held-back rows stand at the front of the table: those count
//     against BatchSize, and delay the rows behind them until they are
//     retried or given up (a bounded time). A failure of any other
//     listener holds back nothing, not even that listener's later events.
//     With several relays on PostgreSQL, a pass also holds back the rows
//     behind a held row that another relay's pass has locked, as its last
//     committed state says: a failure not yet committed is not seen.
//   - After MaxAttempts failed attempts of a listener on an event, the
//     outbox gives up on that listener for that event: it is reported as a
//     *DeadLetter to the EventManager's error handler and counts as done.
//     An event is done when every listener it matched has handled it or
//     been given up on: its row is deleted, or, if any listener was given
//     up, marked dead (never delivered again).
//   - A listener sees an event twice (with the same EventID) only when its
//     own attempt failed, or after a crash: the events delivered shortly
//     before it whose rows were not yet deleted (on PostgreSQL those of the
//     relay's current pass, at most BatchSize; on SQLite at most
//     17×BatchSize, as the deletes wait for the application's writers),
//     and the listeners that had handled an event whose failure had not yet
//     been recorded. On PostgreSQL, a pass whose commit fails is as a
//     crash (the relay then claims half as many rows, and one more after
//     each pass that commits, so that a pass the server ends for lasting
//     too long gets shorter until it commits); so is a Close that gives up
//     on a running listener, for the listeners of that event that had
//     returned nil in that attempt.
type Outbox[T any] struct {
	db *sql.DB
	m  *eventbus.EventManager[T]
	o  options
	q  queries

	// stop is cancelled when Close starts: the relay finishes the event it
	// is delivering and exits; LISTEN stops; a pass that has not yet
	// claimed its rows is abandoned (its database calls are cancelled).
	// life is cancelled when Close gives up waiting (or after the relay
	// exited): listeners' contexts derive from it. The database work that
	// settles what a pass delivered (recording failures, deleting the
	// delivered rows, committing) derives from neither: cancelling it
	// would deliver those events again. It is bounded instead, to
	// finishGrace once Close has started and the relay has stopped
	// delivering (see scan).
	stop       context.Context
	stopCancel context.CancelFunc
	life       context.Context
	lifeCancel context.CancelFunc

	closed    atomic.Bool
	reporting atomic.Int64  // dead letters marked and not yet handed to the EventManager (Flush waits for them)
	looks     atomic.Uint64 // Flush's looks at the table that found rows still to do (tests wait on it)
	listening atomic.Bool   // a LISTEN connection is up (PostgreSQL with pgx)
	wake      chan struct{} // buffered 1: scan now
	poke      chan struct{} // buffered 1: an Emit happened, poll soon
	done      chan struct{} // closed when every goroutine of the Outbox has exited
	wg        sync.WaitGroup

	// mu guards scanned, delivered, undeleted and claims. scanned is closed
	// and replaced whenever the relay has delivered rows and at the end of
	// every pass, so that Flush can wait for progress. delivered holds the
	// rows whose listeners all returned nil (Flush counts them as done, the
	// relay never delivers them again): the value is 0 until the row is
	// deleted, then the number of claims started by then. A claim already
	// running when the DELETE ended may still return the row, so the entry
	// stays until a claim started after it (number > value) is read.
	// undeleted counts the entries whose value is 0. No call is made with
	// mu held.
	mu         sync.Mutex
	scanned    chan struct{}
	delivered  map[int64]uint64
	undeletedN int
	claims     uint64

	stats    counters
	low      int64         // relay goroutine only, SQLite only: every row up to it is delivered
	batch    int           // relay goroutine only: the rows a pass claims (see scan: less than BatchSize after failed commits)
	reap     chan struct{} // buffered 1: rows were delivered, delete them
	reapStop chan struct{} // closed by the relay's exit: the reaper stops
	reapDone chan struct{} // closed when the reaper has stopped
}

type counters struct {
	emitted, delivered, failed, dead, decodeErrors, scans, notifications atomic.Uint64
}

// Stats is a snapshot of an Outbox's counters, for this process since New.
type Stats struct {
	Emitted       uint64 // rows written by Emit (their transactions may have rolled back)
	Delivered     uint64 // events relayed by this process whose listeners all returned nil (their rows are deleted next)
	Failed        uint64 // failed attempts of a listener (listeners sharing a name count once per attempt), each retried or given up
	DeadLetters   uint64 // listeners given up on an event after MaxAttempts, and corrupt rows given up
	DecodeErrors  uint64 // attempts that could not decode a row
	Scans         uint64 // passes of the relay over the table
	Notifications uint64 // PostgreSQL notifications received
	Listening     bool   // a LISTEN connection is up now (PostgreSQL with pgx's stdlib)
}

// Stats returns a snapshot of the counters. It is safe for concurrent use.
func (o *Outbox[T]) Stats() Stats {
	return Stats{
		Emitted:       o.stats.emitted.Load(),
		Delivered:     o.stats.delivered.Load(),
		Failed:        o.stats.failed.Load(),
		DeadLetters:   o.stats.dead.Load(),
		DecodeErrors:  o.stats.decodeErrors.Load(),
		Scans:         o.stats.scans.Load(),
		Notifications: o.stats.notifications.Load(),
		Listening:     o.listening.Load(),
	}
}

// DeadLetterListener is the Listener name of the *eventbus.ListenerError
// that reports a corrupt row (see DeadLetter): no listener of the
// EventManager was called for it.
const DeadLetterListener = "eventbus-outbox"

// New creates the table if it is missing (see Table), and starts relaying:
// events left undelivered by an earlier process (or Outbox) are delivered
// too, as soon as New returns. Register listeners on m before New: an event
// relayed when no listener matches it is done, and deleted.
//
// The database is SQLite or PostgreSQL, told apart by asking it. With SQLite
// every connection must reach the same database (a file, not ":memory:"),
// and a busy timeout (for modernc.org/sqlite, "_pragma=busy_timeout(5000)")
// lets the relay wait for a writer instead of failing. New registers nothing
// on m.
//
// New fails with ErrInvalidOption for a nil db or m or a bad option, with
// ErrUnsupported for another database or a table of another layout, and with
// the database's error if it cannot create the table; ctx bounds that work
// only, not the relaying.
func New[T any](ctx context.Context, db *sql.DB, m *eventbus.EventManager[T], opts ...Option) (*Outbox[T], error) {
	if db == nil || m == nil {
		return nil, invalid("nil *sql.DB or EventManager")
	}
	o := &Outbox[T]{db: db, m: m, o: defaultOptions()}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt.apply(&o.o); err != nil {
			return nil, err
		}
	}
	postgres, err := detect(ctx, db)
	if err != nil {
		return nil, err
	}
	if err := createSchema(ctx, db, postgres, o.o.table); err != nil {
		return nil, err
	}
	o.q = newQueries(postgres, o.o.table)
	o.stop, o.stopCancel = context.WithCancel(context.Background())
	o.life, o.lifeCancel = context.WithCancel(context.Background())
	o.wake = make(chan struct{}, 1)
	o.poke = make(chan struct{}, 1)
	o.done = make(chan struct{})
	o.scanned = make(chan struct{})
	o.reap = make(chan struct{}, 1)
	o.reapStop = make(chan struct{})
	o.reapDone = make(chan struct{})
	o.delivered = make(map[int64]uint64)
	o.batch = o.o.batch
	o.wg.Add(1)
	go o.run()
	go o.reaper()
	if postgres {
		o.wg.Add(1)
		go o.listen()
	}
	go func() { o.wg.Wait(); close(o.done) }()
	return o, nil
}

// Emit writes the event into tx, and does nothing else: if tx rolls back, no
// listener ever sees it; once tx commits, the relay delivers it (see Outbox).
// The data is encoded by the codec now; the listeners get what it decodes.
//
// Emit fails with ErrNilTx for a nil tx, with ErrClosed after Close, with an
// error matching eventbus.ErrInvalidName for an invalid name, with
// eventbus.ErrTypeMismatch for data not of the type declared for name by
// eventbus.NewTopic, and with ErrEncode when the codec cannot encode data:
// in all these cases it writes nothing and leaves tx untouched. Otherwise it
// returns the database's error, if any (then tx is as the database left it;
// PostgreSQL aborts the transaction). ctx bounds the INSERT.
func (o *Outbox[T]) Emit(ctx context.Context, tx *sql.Tx, name string, data T) error {
	if tx == nil {
		return fmt.Errorf("outbox: emit %q: %w", name, ErrNilTx)
	}
	if o.closed.Load() {
		return fmt.Errorf("outbox: emit %q: %w", name, ErrClosed)
	}
	if err := eventbus.ValidateName(name); err != nil {
		return fmt.Errorf("outbox: emit: %w", err)
	}
	if err := o.checkType(name, data); err != nil {
		return err
	}
	payload, err := o.encode(data)
	if err != nil {
		return fmt.Errorf("outbox: emit %q: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, o.q.insert, newID(), name, payload); err != nil {
		return fmt.Errorf("outbox: emit %q: %w", name, err)
	}
	o.stats.emitted.Add(1)
	if !o.listening.Load() {
		select {
		case o.poke <- struct{}{}:
		default:
		}
	}
	return nil
}

// checkType refuses, as the EventManager's Emit would, data whose dynamic
// type is not the one NewTopic declared for name.
func (o *Outbox[T]) checkType(name string, data T) error {
	typ := o.m.DeclaredType(name)
	if typ == nil {
		return nil
	}
	v := any(data)
	if v == nil {
		return nil
	}
	got := reflect.TypeOf(v)
	if got == typ || (typ.Kind() == reflect.Interface && got.Implements(typ)) {
		return nil
	}
	return fmt.Errorf("outbox: emit %q: %w: data is %v, the topic's type is %v", name, eventbus.ErrTypeMismatch, got, typ)
}

func (o *Outbox[T]) encode(data T) (p []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: codec panicked: %v", ErrEncode, r)
		}
	}()
	p, err = o.o.codec.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEncode, err)
	}
	if p == nil {
		p = []byte{}
	}
	return p, nil
}

// newID returns 128 random bits in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type deliveryKey struct{}

// delivery is what the context given to listeners carries.
type delivery struct {
	outbox any // the *Outbox[T] relaying
	id     string
}

// EventID returns the ID of the event being delivered, from the context a
// listener was given by an Outbox's relay: the same on every delivery of
// that event (a retry, a redelivery after Close and New, or after a crash),
// and different for every event Emit wrote, so that a listener can be
// idempotent. ok is false for a context that did not come from a relay.
func EventID(ctx context.Context) (id string, ok bool) {
	if d, _ := ctx.Value(deliveryKey{}).(*delivery); d != nil {
		return d.id, true
	}
	return "", false
}

// reentrant reports whether ctx was given by this Outbox's relay to a
// listener: the relay's own goroutine, which Flush and Close cannot wait for.
func (o *Outbox[T]) reentrant(ctx context.Context) bool {
	d, _ := ctx.Value(deliveryKey{}).(*delivery)
	return d != nil && d.outbox == any(o)
}

// Close stops relaying: the relay finishes the event it is delivering, ends
// its pass (on PostgreSQL, committing what it delivered and freeing the rows
// it had claimed), deletes the rows it delivered, and exits, leaving every
// undelivered event in the table for the next New. From its call on, Emit and Flush fail
// with ErrClosed. Close does not close the database or the EventManager.
//
// It returns nil once the relay's goroutines have exited. A pass that has
// not yet claimed its rows is abandoned, so Close does not wait for a
// database that does not answer while the relay polls; the work that
// records what a pass delivered (recording failures, deleting the delivered
// rows, committing) is not cancelled, as that would deliver those events
// again, but once Close has started it is given at most 5 seconds after the
// last listener call returns. If ctx ends first, Close cancels the context
// of the listener running and returns an error matching ctx's error; the
// goroutines exit as soon as that listener returns and its pass has
// recorded what it delivered.
// Called from a listener with the context the relay gave it, it cannot wait
// for its own caller: it stops the relay all the same and returns an error
// matching eventbus.ErrReentrant. Close is idempotent: a later call waits
// again.
func (o *Outbox[T]) Close(ctx context.Context) error {
	o.closed.Store(true)
	o.stopCancel()
	if o.reentrant(ctx) {
		return fmt.Errorf("outbox: close from a listener of the relay: %w", eventbus.ErrReentrant)
	}
	select {
	case <-o.done:
		return nil
	case <-ctx.Done():
		o.lifeCancel()
		return fmt.Errorf("outbox: close: %w", ctx.Err())
	}
}

// Flush waits until every event committed before the call has been delivered
// or given up on (see MaxAttempts), by this process or another one relaying
// the same table; for an event this process gave up on, until its dead
// letter has been handed to the EventManager (a later EventManager.Flush
// waits for the error handler). It notices rows that another process
// delivered within 100 ms. Events of transactions still open are not waited for
// (on PostgreSQL, one that commits while Flush waits may be). If ctx ends
// first, Flush returns an error matching ctx's error; after Close it returns
// ErrClosed. Called from a listener with the context the relay gave it, it
// would wait for itself: it returns an error matching eventbus.ErrReentrant.
func (o *Outbox[T]) Flush(ctx context.Context) error {
	if o.closed.Load() {
		return fmt.Errorf("outbox: flush: %w", ErrClosed)
	}
	if o.reentrant(ctx) {
		return fmt.Errorf("outbox: flush from a listener of the relay: %w", eventbus.ErrReentrant)
	}
	var max int64
	if err := o.db.QueryRowContext(ctx, o.q.maxSeq).Scan(&max); err != nil {
		return fmt.Errorf("outbox: flush: %w", err)
	}
	first := true
	// Another process's relay may deliver the rows, and nothing wakes this
	// one when it deletes them: Flush also looks again every
	// flushRecheck, not only after this relay's passes (with a long
	// PollInterval it waited for its ctx while the table was empty).
	recheck := time.NewTicker(flushRecheck)
	defer recheck.Stop()
	for {
		next := o.nextScan()
		if first {
			o.wakeNow()
			first = false
		}
		select {
		case <-next:
		case <-recheck.C:
		case <-o.stop.Done():
			return fmt.Errorf("outbox: flush: %w", ErrClosed)
		case <-ctx.Done():
			return fmt.Errorf("outbox: flush: %w", ctx.Err())
		}
		done, err := o.flushed(ctx, max)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("outbox: flush: %w", ctx.Err())
			}
			return fmt.Errorf("outbox: flush: %w", err)
		}
		if done {
			return nil
		}
		o.looks.Add(1)
	}
}

// flushRecheck is how often a waiting Flush looks at the table besides
// after each of its relay's passes: the bound on how late it notices rows
// that another process delivered. Each look is one query.
const flushRecheck = 100 * time.Millisecond

// flushed reports whether no row up to max is pending, but those delivered
// and not yet deleted, and no dead letter is still to be reported.
func (o *Outbox[T]) flushed(ctx context.Context, max int64) (bool, error) {
	if o.reporting.Load() > 0 {
		return false, nil
	}
	rows, err := o.db.QueryContext(ctx, o.q.pending, max)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var v any
		if err := rows.Scan(&v); err != nil {
			return false, err
		}
		n++
		seq, err := intColumn(v)
		if err != nil {
			continue // a fraction (SQLite): never delivered, reported by the relay at each pass
		}
		if !o.isDelivered(seq) {
			return false, nil
		}
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	return n < flushWindow, nil
}

// nextScan returns a channel closed when the relay's next pass has ended.
func (o *Outbox[T]) nextScan() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.scanned
}

func (o *Outbox[T]) changed() {
	o.mu.Lock()
	close(o.scanned)
	o.scanned = make(chan struct{})
	o.mu.Unlock()
}

func (o *Outbox[T]) wakeNow() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}
