package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/eventbus-go/eventbus"
)

// row is one claimed row of the table.
type row struct {
	seq      int64
	id, name string
	payload  []byte
	attempts int
	nextAt   int64 // unix ms
	heldFor  string
	handled  string // see progress
	bad      error  // an event column (id, name, payload) that could not be read (columns.go): a corrupt row
}

// run is the relay: one goroutine per Outbox, the only one that delivers.
// It passes over the table when woken (Flush, a PostgreSQL notification, the
// start), shortly after an Emit (hot polling: 250µs, doubling up to the poll
// interval, back to 250µs whenever a pass delivered something), when a
// retry is due, and every poll interval.
func (o *Outbox[T]) run() {
	defer o.wg.Done()
	defer o.exit()
	timer := time.NewTimer(0) // first pass at once: earlier processes' leftovers
	defer timer.Stop()
	var due time.Time // when timer fires
	hot := time.Duration(0)
	reset := func(d time.Duration) {
		timer.Stop()
		select {
		case <-timer.C:
		default:
		}
		timer.Reset(d)
		due = time.Now().Add(d)
	}
	for {
		select {
		case <-o.stop.Done():
			return
		case <-o.poke:
			hot = hotStart
			if time.Until(due) > hot {
				reset(hot)
			}
			continue
		case <-o.wake:
		case <-timer.C:
		}
		progress, more, retryAt := o.scan()
		o.changed()
		if o.stop.Err() != nil {
			return
		}
		if more {
			o.wakeNow()
		}
		switch {
		case progress:
			hot = hotStart
		case hot > 0:
			hot *= 2
			if hot >= o.o.poll {
				hot = 0
			}
		}
		d := o.o.poll
		if hot > 0 {
			d = hot
		}
		if !retryAt.IsZero() {
			d = min(d, max(time.Until(retryAt), time.Millisecond))
		}
		reset(d)
	}
}

// exit runs when the relay stops: it deletes the rows it delivered if it
// has not yet. It bounds its database work to a few seconds: rows
// left delivered but not deleted are delivered again by the next relay.
func (o *Outbox[T]) exit() {
	close(o.reapStop)
	<-o.reapDone
	ctx, cancel := context.WithTimeout(context.Background(), finishGrace)
	defer cancel()
	if err := o.deleteDelivered(ctx, o.db); err != nil {
		o.o.onError(fmt.Errorf("outbox: deleting delivered rows of %s: %w", o.o.table, err))
	}
	o.lifeCancel()
}

// passBound is what Close does to a pass's database context (cancel).
// Until the pass has claimed its rows, Close cancels it at once: nothing is
// delivered yet, and a database that does not answer must not hold Close.
// From then on the context settles what the pass delivers (records, deletes,
// commits: cancelling it would deliver those events again), and Close
// starts a finishGrace timer that cancels it, once no listener call runs,
// so that a listener that outlasts the grace does not lose its pass.
type passBound struct {
	mu      sync.Mutex
	cancel  func()
	claimed bool        // the rows are claimed: Close no longer cancels at once
	closing bool        // Close has started
	busy    bool        // a listener call is running
	t       *time.Timer // the grace's timer, once started
	ended   bool        // the pass has returned: no timer starts
}

// close records that Close has started (o.stop's AfterFunc).
func (b *passBound) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closing = true
	if !b.claimed {
		b.cancel()
		return
	}
	b.start()
}

// claim records that the rows are claimed, unless Close has started
// (false: the claim was or will be cancelled; the pass delivers nothing).
func (b *passBound) claim() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.claimed = !b.closing
	return b.claimed
}

// enter records that a listener call starts, unless Close has started
// (false: the pass delivers nothing more). Checking Close here, under the
// same lock, keeps the grace from starting before a call that would then
// outlast it.
func (b *passBound) enter() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.busy = !b.closing
	return b.busy
}

// leave records that the listener call has returned.
func (b *passBound) leave() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.busy = false
	b.start()
}

// start starts the grace's timer, with b.mu held, if Close has started
// after the claim, no listener call runs and the pass has not returned.
func (b *passBound) start() {
	if b.closing && b.claimed && !b.busy && !b.ended && b.t == nil {
		b.t = time.AfterFunc(finishGrace, b.cancel)
	}
}

// stop stops the timer, if started: the pass has returned.
func (b *passBound) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ended = true
	if b.t != nil {
		b.t.Stop()
	}
}

// finishGrace bounds the database work that settles what the relay
// delivered (recording, deleting, committing) once Close has started and
// the relay has stopped delivering: a database that does not answer within
// it leaves those rows to be delivered again by the next relay.
const finishGrace = 5 * time.Second

// scan makes one pass: it claims up to BatchSize rows in table order and
// delivers those due, holding back as the Outbox's doc says. progress: some
// row was delivered or given up; more: the batch was full and progress made;
// retryAt: the earliest retry among the rows claimed, if any.
func (o *Outbox[T]) scan() (progress, more bool, retryAt time.Time) {
	o.stats.scans.Add(1)
	// ctx is the pass's database context: see passBound for what Close
	// does to it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bound := passBound{cancel: cancel}
	unwatch := context.AfterFunc(o.stop, bound.close)
	defer unwatch()
	defer bound.stop()
	now := time.Now().UnixMilli()
	var earliest any // untyped, as in claim: a next_at of another type must not stop the relay
	if err := o.db.QueryRowContext(ctx, o.q.due).Scan(&earliest); err != nil {
		if ctx.Err() == nil {
			o.o.onError(fmt.Errorf("outbox: reading table %s: %w", o.o.table, err))
		}
		return false, false, time.Time{}
	}
	if earliest == nil {
		return false, false, time.Time{} // nothing pending
	}
	if first, err := intColumn(earliest); err == nil && first > now {
		return false, false, time.UnixMilli(first) // only retries, not yet due
	} // else due, or unreadable: the claim reads the row (columns.go)
	// On PostgreSQL the pass runs in a transaction that holds the claimed
	// rows locked (FOR UPDATE SKIP LOCKED) and deletes the delivered ones
	// before it commits; on SQLite it reads, and the reaper deletes.
	var ex execer = o.db
	var tx *sql.Tx
	if o.q.postgres {
		var err error
		if tx, err = o.db.BeginTx(ctx, nil); err != nil {
			if ctx.Err() == nil {
				o.o.onError(fmt.Errorf("outbox: claiming rows of %s: %w", o.o.table, err))
			}
			return false, false, time.Time{}
		}
		defer func() { _ = tx.Rollback() }()
		ex = tx
	}
	batch := o.batch
	rows, elsewhere, err := o.claim(ctx, ex, now)
	if err != nil {
		if ctx.Err() == nil {
			o.o.onError(fmt.Errorf("outbox: claiming rows of %s: %w", o.o.table, err))
		}
		return false, false, time.Time{}
	}
	if !bound.claim() {
		return false, false, time.Time{} // Close started: the claim is rolled back, nothing delivered
	}
	var dead []func() // dead-letter reports, made once the pass is committed
	var (
		// blocked: the ordered listeners (by heldKey) that an earlier row
		// still has to reach, and when that row is next attempted; a
		// later row waits for them.
		blocked   = map[string]int64{}
		holdAll   bool // the EventManager is closed, or Close gave up: deliver nothing more
		delivered bool
		cache     = map[string][]*eventbus.Listener{}
	)
	for _, r := range rows {
		if o.stop.Err() != nil {
			break
		}
		for len(elsewhere) > 0 && elsewhere[0].seq < r.seq {
			for _, n := range elsewhere[0].names {
				blocked[n] = max(blocked[n], elsewhere[0].until)
			}
			elsewhere = elsewhere[1:]
		}
		if r.nextAt > now { // waiting for its retry
			for _, n := range parseHeld(r.heldFor) {
				blocked[n] = max(blocked[n], r.nextAt)
			}
			if t := time.UnixMilli(r.nextAt); retryAt.IsZero() || t.Before(retryAt) {
				retryAt = t
			}
			continue
		}
		if holdAll || o.isDelivered(r.seq) {
			continue
		}
		data, err := o.decodeRow(r)
		if err != nil {
			o.stats.decodeErrors.Add(1)
			if t, report := o.corrupt(ctx, ex, r, err); report != nil {
				progress = true
				dead = append(dead, report)
			} else if retryAt.IsZero() || t.Before(retryAt) {
				retryAt = t
			}
			continue
		}
		ls, ok := cache[r.name]
		if !ok {
			ls, _ = o.m.ListenersOf(r.name) // the name is valid: decodeRow checked it
			cache[r.name] = ls
		}
		if !bound.enter() {
			break // Close started: this row is left as it is
		}
		out := o.attempt(r, data, ls, blocked)
		bound.leave()
		if out.stopped {
			// The EventManager is closed, or Close gave up: not an
			// attempt. The row stays as it was for a later pass or
			// process (its listeners that succeeded now will see it
			// again).
			holdAll = true
			continue
		}
		if out.any {
			progress = true
		}
		if len(out.failed) == 0 && len(out.deferred) == 0 && len(out.p.Dead) == 0 {
			o.markDelivered(r.seq)
			delivered = true
			continue
		}
		t, reports := o.record(ctx, ex, r, data, out, blocked)
		if len(reports) > 0 {
			progress = true
			dead = append(dead, reports...)
		}
		if !t.IsZero() && (retryAt.IsZero() || t.Before(retryAt)) {
			retryAt = t
		}
	}
	if !o.q.postgres {
		// Advance the low-water mark over the delivered rows at the
		// front. (A row dead or deleted between is not returned again.)
		for _, r := range rows {
			if !o.isDelivered(r.seq) {
				break
			}
			o.low = r.seq
		}
	}
	if tx != nil {
		o.changed() // Flush counts delivered rows as done, deleted or not
		err := o.deleteDelivered(ctx, tx)
		if err == nil {
			err = tx.Commit()
		}
		if err != nil {
			// Delivered, not deleted: they will be delivered again; the
			// dead marks are undone too. Not progress: the relay backs
			// off as from an idle pass (a commit refused at every pass
			// redelivered its batch hundreds of times a second), and
			// claims half as many rows next time, so that a pass the
			// server ends for lasting too long (idle_in_transaction_
			// session_timeout: listeners run inside it) gets shorter
			// until it commits, instead of delivering its first rows
			// again forever. It grows back by one row per pass that
			// commits (doubling back went straight to the size that
			// failed, which failed again every other pass).
			o.forgetUndeleted()
			o.reporting.Add(-int64(len(dead)))
			o.batch = max(1, o.batch/2)
			if ctx.Err() == nil {
				o.o.onError(fmt.Errorf("outbox: committing a pass over %s (claiming %d rows at a time now): %w", o.o.table, o.batch, err))
			}
			return false, false, retryAt
		}
		o.deletedAll()
		o.batch = min(o.o.batch, o.batch+1)
	}
	for _, report := range dead {
		report()
	}
	if len(dead) > 0 {
		o.changed()
	}
	if delivered {
		progress = true
		o.changed() // Flush counts delivered rows as done, deleted or not
		if tx == nil {
			select {
			case o.reap <- struct{}{}:
			default:
			}
		}
	}
	if o.undeleted() >= maxUndeleted*o.o.batch {
		// The reaper cannot keep up (on SQLite, writers keep the lock):
		// wait for it here rather than read ever more delivered rows.
		if err := o.deleteDelivered(o.life, o.db); err != nil && o.life.Err() == nil {
			o.o.onError(fmt.Errorf("outbox: deleting delivered rows of %s: %w", o.o.table, err))
		}
	}
	return progress, progress && len(rows) >= batch, retryAt
}

// heldRow is a pending row that holds listeners back and that another
// relay's pass holds locked: the claim skipped it.
type heldRow struct {
	seq   int64
	names []string // heldKey names
	until int64    // unix ms: when this relay looks at the listeners again
}

// heldElsewhere converts a row of the claim's second part (PostgreSQL): a
// pending row below the last one claimed that holds listeners back
// (held_for) and that the claim skipped, another relay's pass holding it
// locked, retrying it or holding back for it. Its committed state holds
// those listeners back in this pass too, so that an ordered listener that
// failed gets none of the later events in any relay's pass until the failed
// one is done. A row that is due now (another pass is retrying it) holds
// them back for heldRecheck more. A failure that another pass has not
// committed yet is not seen: until it commits, that pass's rows and this
// one's are delivered side by side (see Databases in the README). ok is
// false for a row that holds nothing back, or whose seq cannot be read.
func heldElsewhere(v *[claimColumns]any, now int64) (h heldRow, ok bool) {
	seq, err := intColumn(v[0])
	if err != nil {
		return h, false
	}
	text, _ := textColumn(v[6], true)
	names := parseHeld(text)
	if len(names) == 0 {
		return h, false
	}
	next, _ := intColumn(v[5]) // unreadable: due now
	return heldRow{seq: seq, names: names, until: max(next, now+heldRecheck.Milliseconds())}, true
}

// heldRecheck is how long a row held back by a row that another relay's
// pass is retrying waits before this relay looks again.
const heldRecheck = 100 * time.Millisecond

func cmpInt(a, b int64) int { return int(min(max(a-b, -1), 1)) }

// execer is a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// claim reads the pass's rows, in table order: on PostgreSQL it locks them
// (the rows another relay's pass has locked are skipped), and returns
// besides, in elsewhere, the held rows among those skipped (see
// heldElsewhere); on SQLite it reads, and elsewhere is nil.
func (o *Outbox[T]) claim(ctx context.Context, ex execer, now int64) (rows []row, elsewhere []heldRow, err error) {
	o.startClaim()
	// Rows delivered but not yet deleted come back (on SQLite, those above
	// the low-water mark): read that many more.
	limit := o.batch + o.undeletedAbove(o.low)
	args := []any{now, limit}
	if !o.q.postgres {
		args = []any{limit, o.low}
	}
	rs, err := ex.QueryContext(ctx, o.q.claim, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rs.Close()
	var unaddressable []string
	for rs.Next() {
		var v [claimColumns]any // converted by rowFrom: a bad value is that row's error alone
		dest := []any{&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]}
		var claimed any = true
		if o.q.postgres {
			dest = append([]any{&claimed}, dest...)
		}
		if err := rs.Scan(dest...); err != nil {
			return nil, nil, err
		}
		if c, _ := claimed.(bool); !c {
			if h, ok := heldElsewhere(&v, now); ok {
				elsewhere = append(elsewhere, h)
			}
			continue
		}
		r, err := rowFrom(&v)
		if err != nil {
			unaddressable = append(unaddressable, err.Error())
			continue
		}
		rows = append(rows, r)
	}
	if err := rs.Err(); err != nil {
		return nil, nil, err
	}
	if unaddressable != nil {
		// Rows the relay cannot even name: skipped (the rows behind them
		// go on), and reported, once per pass.
		o.stats.decodeErrors.Add(uint64(len(unaddressable)))
		o.o.onError(fmt.Errorf("%w: %d row(s) of %s skipped: %s", ErrDecode, len(unaddressable), o.o.table, strings.Join(unaddressable, "; ")))
	}
	slices.SortFunc(rows, func(a, b row) int { return cmpInt(a.seq, b.seq) })
	slices.SortFunc(elsewhere, func(a, b heldRow) int { return cmpInt(a.seq, b.seq) })
	return rows, elsewhere, nil
}

// maxUndeleted bounds the rows delivered and not yet deleted, in batches:
// past it the relay deletes them itself before reading more.
const maxUndeleted = 16

// reaper deletes the rows the relay delivered, apart from it: on SQLite a
// DELETE waits for the transactions that write (the busy timeout), and the
// relay goes on reading and delivering meanwhile. Rows delivered and not yet
// deleted are known to the relay (it does not deliver them again) and to
// Flush (they are done); after a crash they are delivered again.
func (o *Outbox[T]) reaper() {
	defer close(o.reapDone)
	var failing time.Time // when the current streak of failures was last reported
	for {
		select {
		case <-o.reapStop:
			return
		case <-o.reap:
		}
		err := o.deleteDelivered(o.life, o.db)
		switch {
		case err == nil:
			failing = time.Time{}
		case o.life.Err() != nil:
		case failing.IsZero() || time.Since(failing) > time.Minute:
			failing = time.Now()
			o.o.onError(fmt.Errorf("outbox: deleting delivered rows of %s (retried at the next pass): %w", o.o.table, err))
		}
	}
}

func (o *Outbox[T]) undeleted() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.undeletedN
}

// undeletedAbove counts the undeleted rows above low.
func (o *Outbox[T]) undeletedAbove(low int64) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if low == 0 {
		return o.undeletedN
	}
	n := 0
	for s, at := range o.delivered {
		if at == 0 && s > low {
			n++
		}
	}
	return n
}

// startClaim numbers a claim about to start, and forgets the rows deleted
// before the previous claim started: no claim from now on returns them.
func (o *Outbox[T]) startClaim() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.claims++
	for s, at := range o.delivered {
		if at != 0 && at < o.claims-1 {
			delete(o.delivered, s)
		}
	}
}

// deleteDelivered deletes the rows delivered and not yet deleted, BatchSize
// rows per statement, at most maxDeleteArgs. The relay and the reaper may
// both call it: deleting a row twice does nothing.
//
// maxDeleteArgs keeps a statement's parameters under both databases'
// limits (PostgreSQL's protocol allows 65,535, SQLite 32,766 by default):
// with a BatchSize above them, every DELETE failed, so every pass was
// rolled back and its rows delivered again, forever.
func (o *Outbox[T]) deleteDelivered(ctx context.Context, ex execer) error {
	o.mu.Lock()
	seqs := make([]int64, 0, o.undeletedN)
	for s, at := range o.delivered {
		if at == 0 {
			seqs = append(seqs, s)
		}
	}
	o.mu.Unlock()
	for len(seqs) > 0 {
		chunk := seqs[:min(len(seqs), o.o.batch, maxDeleteArgs)]
		seqs = seqs[len(chunk):]
		args := make([]any, len(chunk))
		for i, s := range chunk {
			args[i] = s
		}
		if _, err := ex.ExecContext(ctx, o.q.deleteDone(o.o.table, len(chunk)), args...); err != nil {
			return err
		}
		if ex == execer(o.db) {
			o.deleted(chunk)
		}
	}
	return nil
}

// maxDeleteArgs bounds the rows one DELETE names (see deleteDelivered).
const maxDeleteArgs = 1000

// deleted records rows as deleted.
func (o *Outbox[T]) deleted(seqs []int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range seqs {
		if at, ok := o.delivered[s]; ok && at == 0 {
			o.delivered[s] = o.claims
			o.undeletedN--
		}
	}
}

// deletedAll records every undeleted row as deleted: a PostgreSQL pass
// committed its DELETE.
func (o *Outbox[T]) deletedAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for s, at := range o.delivered {
		if at == 0 {
			o.delivered[s] = o.claims
		}
	}
	o.undeletedN = 0
}

// forgetUndeleted drops the undeleted rows: a PostgreSQL pass that could
// not commit leaves them in the table, unlocked, to be delivered again.
func (o *Outbox[T]) forgetUndeleted() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for s, at := range o.delivered {
		if at == 0 {
			delete(o.delivered, s)
		}
	}
	o.undeletedN = 0
}

func (o *Outbox[T]) markDelivered(seq int64) {
	o.mu.Lock()
	o.delivered[seq] = 0
	o.undeletedN++
	o.mu.Unlock()
	o.stats.delivered.Add(1)
}

func (o *Outbox[T]) isDelivered(seq int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.delivered[seq]
	return ok
}

// outcome is what one attempt of a row came to.
type outcome struct {
	p        progress                  // the row's progress, updated
	failed   []*eventbus.ListenerError // the failures of this attempt, one per listener name
	deferred []string                  // listener names held back by an earlier row (heldKey)
	ordered  []string                  // the failed names that are Ordered (heldKey)
	lis      map[string]*eventbus.Listener
	any      bool // some listener returned nil
	stopped  bool // the EventManager is closed, or Close gave up
}

// attempt delivers r to each listener of ls that has not handled it yet
// (by name, see progress) and is not held back (blocked), with
// EventManager.EmitSyncTo, in ls's order (EmitSync's).
func (o *Outbox[T]) attempt(r row, data T, ls []*eventbus.Listener, blocked map[string]int64) outcome {
	out := outcome{p: parseProgress(r.handled)}
	ctx := context.WithValue(o.life, deliveryKey{}, &delivery{outbox: o, id: r.id})
	for i, l := range ls {
		n := l.Name()
		if slices.ContainsFunc(ls[:i], func(x *eventbus.Listener) bool { return x.Name() == n }) {
			continue // called with the first of its name
		}
		if out.p.done(n) {
			continue
		}
		if _, ok := blocked[heldKey(n)]; ok {
			out.deferred = append(out.deferred, heldKey(n))
			continue
		}
		var lerr *eventbus.ListenerError
		ordered := false
		for _, l := range ls[i:] {
			if l.Name() != n {
				continue
			}
			ordered = ordered || l.Ordered()
			err := o.emitTo(ctx, l, r.name, data)
			le, isFailure := err.(*eventbus.ListenerError) // EmitSyncTo returns it as it is
			switch {
			case err == nil:
			case isFailure:
				if lerr == nil {
					lerr = le
					if out.lis == nil {
						out.lis = map[string]*eventbus.Listener{}
					}
					out.lis[n] = l
				}
			case errors.Is(err, eventbus.ErrUnregistered):
				// Gone since ListenersOf: it needs nothing more.
			default: // ErrClosed, or Close gave up (a cancelled context)
				out.stopped = true
				return out
			}
		}
		if o.life.Err() != nil {
			out.stopped = true
			return out
		}
		if lerr == nil {
			out.p.succeeded(n)
			out.any = true
			continue
		}
		o.stats.failed.Add(1)
		out.failed = append(out.failed, lerr)
		if ordered {
			out.ordered = append(out.ordered, heldKey(n))
		}
	}
	return out
}

// emitTo is EmitSyncTo on a goroutine of its own, which the relay waits
// for: a listener that calls runtime.Goexit (t.FailNow in a test's
// listener) ends that goroutine instead of the relay, and the attempt fails
// with ErrListenerExited. (About a microsecond, against the milliseconds of
// a pass's database work.)
func (o *Outbox[T]) emitTo(ctx context.Context, l *eventbus.Listener, name string, data T) error {
	var err error
	returned := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		err = o.m.EmitSyncTo(ctx, l, name, data)
		returned = true
	}()
	<-done
	if !returned {
		return &eventbus.ListenerError{Event: name, Data: data, Listener: l.Name(), Pattern: l.Pattern(), Attempts: 1, Err: ErrListenerExited, Handle: l}
	}
	return err
}

// record writes the outcome of a row's attempt that left something to do or
// gave something up: the listeners that failed MaxAttempts times are given
// up (their reports are returned, to make once the pass is committed); if
// none is left to do, the row is marked dead; otherwise it waits for its
// retry (a backoff after a failure) or for the rows that hold it back, and
// holds back, in blocked, the later rows of its ordered listeners still to
// do. retryAt is when it is next attempted (zero when it is done).
func (o *Outbox[T]) record(ctx context.Context, ex execer, r row, data T, out outcome, blocked map[string]int64) (retryAt time.Time, reports []func()) {
	attempts := r.attempts
	var msgs []string
	var left []*eventbus.ListenerError // failed and not given up
	for _, lerr := range out.failed {
		msgs = append(msgs, lerr.Error())
		n := lerr.Listener
		k := out.p.failed(n)
		if k < o.o.maxAttempts {
			left = append(left, lerr)
			continue
		}
		out.p.gaveUp(n)
		dl := &DeadLetter{ID: r.id, Name: r.name, Seq: r.seq, Attempts: k, Data: data, Listener: n, Err: lerr}
		l := out.lis[n]
		o.reporting.Add(1) // Flush waits until the report is handed over
		reports = append(reports, func() {
			o.stats.dead.Add(1)
			o.report(r, &eventbus.ListenerError{Event: r.name, Data: data, Listener: n, Pattern: l.Pattern(),
				Attempts: dl.Attempts, Err: dl, Handle: l})
			o.reporting.Add(-1)
		})
	}
	if len(out.failed) > 0 {
		attempts++
	}
	msg := dbText(strings.Join(msgs, "; "))
	if len(left) == 0 && len(out.deferred) == 0 {
		// Nothing left to do, something given up.
		if _, err := ex.ExecContext(ctx, o.q.dead, attempts, msg, out.p.String(), r.seq); err != nil {
			o.reporting.Add(-int64(len(reports)))
			if ctx.Err() == nil {
				o.o.onError(fmt.Errorf("outbox: marking a dead letter in %s: %w", o.o.table, err))
			}
			return time.Now().Add(o.o.poll), nil
		}
		return time.Time{}, reports
	}
	var next int64 // unix ms
	if len(left) > 0 {
		retryAt = time.Now().Add(o.backoff(attempts))
		// Rounded up to the millisecond: never due before the backoff is over.
		next = (retryAt.UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	}
	for _, n := range out.deferred {
		next = max(next, blocked[n]) // with the row holding it back, which comes first
	}
	held := slices.Clone(out.deferred) // ordered listeners only: blocked has nothing else
	for _, n := range out.ordered {
		if !out.p.done(n) && !slices.Contains(held, n) {
			held = append(held, n)
		}
	}
	for _, n := range held {
		blocked[n] = max(blocked[n], next)
	}
	var err error
	if len(out.failed) > 0 {
		_, err = ex.ExecContext(ctx, o.q.fail, attempts, next, formatHeld(held), out.p.String(), msg, r.seq)
	} else {
		_, err = ex.ExecContext(ctx, o.q.wait, next, formatHeld(held), out.p.String(), r.seq)
	}
	if err != nil && ctx.Err() == nil {
		o.o.onError(fmt.Errorf("outbox: recording a failed attempt in %s: %w", o.o.table, err))
	}
	return time.UnixMilli(next), reports
}

// corrupt records a failed decoding of a row: it waits for its retry, or,
// at the attempt limit, is marked dead; then report, to call once the pass
// is committed, reports it. A corrupt row holds nothing back.
func (o *Outbox[T]) corrupt(ctx context.Context, ex execer, r row, cause error) (retryAt time.Time, report func()) {
	attempts := r.attempts + 1
	msg := dbText(cause.Error())
	if attempts >= o.o.maxAttempts {
		if _, err := ex.ExecContext(ctx, o.q.dead, attempts, msg, r.handled, r.seq); err != nil {
			if ctx.Err() == nil {
				o.o.onError(fmt.Errorf("outbox: marking a dead letter in %s: %w", o.o.table, err))
			}
			return time.Now().Add(o.o.poll), nil
		}
		o.reporting.Add(1) // Flush waits until the report is handed over
		return time.Time{}, func() {
			o.stats.dead.Add(1)
			var zero T
			dl := &DeadLetter{ID: r.id, Name: r.name, Seq: r.seq, Attempts: attempts, Err: cause}
			o.report(r, &eventbus.ListenerError{Event: r.name, Data: zero, Listener: DeadLetterListener, Attempts: attempts, Err: dl})
			o.reporting.Add(-1)
		}
	}
	retryAt = time.Now().Add(o.backoff(attempts))
	nextAt := (retryAt.UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	_, err := ex.ExecContext(ctx, o.q.fail, attempts, nextAt, "", r.handled, msg, r.seq)
	if err != nil && ctx.Err() == nil {
		o.o.onError(fmt.Errorf("outbox: recording a failed attempt in %s: %w", o.o.table, err))
	}
	return retryAt, nil
}

// report hands a dead letter to the EventManager's error handler, in the
// relay's goroutine, with a context that carries the event's ID (see
// EventID).
func (o *Outbox[T]) report(r row, lerr *eventbus.ListenerError) {
	ctx := context.WithValue(o.life, deliveryKey{}, &delivery{outbox: o, id: r.id})
	o.m.ReportError(ctx, lerr)
}

// backoff is the wait after the n-th failed attempt: min·2^(n-1), at most
// max, randomised to between half and all of it.
func (o *Outbox[T]) backoff(n int) time.Duration {
	d := o.o.backoffMin
	for i := 1; i < n && d < o.o.backoffMax; i++ {
		d *= 2
	}
	d = min(d, o.o.backoffMax)
	return d/2 + rand.N(d/2+1)
}
