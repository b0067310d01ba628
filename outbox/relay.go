package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
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
// has not yet, waits for the dead-letter reports it made, and removes the
// dead-letter listener. It bounds its database work to a few seconds: rows
// left delivered but not deleted are delivered again by the next relay.
func (o *Outbox[T]) exit() {
	close(o.reapStop)
	<-o.reapDone
	ctx, cancel := context.WithTimeout(o.life, 5*time.Second)
	defer cancel()
	if err := o.deleteDelivered(ctx, o.db); err != nil && o.life.Err() == nil {
		o.o.onError(fmt.Errorf("outbox: deleting delivered rows of %s: %w", o.o.table, err))
	}
	waited := make(chan struct{})
	go func() { o.dlWait.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
	}
	o.dl.Unregister()
	o.lifeCancel()
}

// scan makes one pass: it claims up to BatchSize rows in table order and
// delivers those due, holding back as the Outbox's doc says. progress: some
// row was delivered or given up; more: the batch was full and progress made;
// retryAt: the earliest retry among the rows claimed, if any.
func (o *Outbox[T]) scan() (progress, more bool, retryAt time.Time) {
	o.stats.scans.Add(1)
	ctx := o.life
	now := time.Now().UnixMilli()
	var first sql.NullInt64
	if err := o.db.QueryRowContext(ctx, o.q.due).Scan(&first); err != nil {
		if ctx.Err() == nil {
			o.o.onError(fmt.Errorf("outbox: reading table %s: %w", o.o.table, err))
		}
		return false, false, time.Time{}
	}
	if !first.Valid {
		return false, false, time.Time{} // nothing pending
	}
	if first.Int64 > now {
		return false, false, time.UnixMilli(first.Int64) // only retries, not yet due
	}
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
	rows, err := o.claim(ctx, ex, now)
	if err != nil {
		if ctx.Err() == nil {
			o.o.onError(fmt.Errorf("outbox: claiming rows of %s: %w", o.o.table, err))
		}
		return false, false, time.Time{}
	}
	var dead []func() // dead-letter reports, made once the pass is committed
	var (
		blocked   []failing // listeners failing on an earlier row, waiting for its retry
		holdAll   bool      // a row was held back for a listener we cannot name: every later one is too
		delivered bool
	)
	for _, r := range rows {
		if o.stop.Err() != nil {
			break
		}
		if r.nextAt > now { // waiting for its retry
			blocked = append(blocked, parseHeld(r.heldFor)...)
			if t := time.UnixMilli(r.nextAt); retryAt.IsZero() || t.Before(retryAt) {
				retryAt = t
			}
			continue
		}
		if holdAll || o.isDelivered(r.seq) {
			continue
		}
		if k := matching(blocked, r.name); k > 0 {
			// Held back for the failing listeners that match it. If it
			// has other listeners too, they must not see the rows
			// after it first: hold back everything after it.
			if o.m.ListenerCount(r.name) > k {
				holdAll = true
			}
			continue
		}
		data, err := o.decodeRow(r)
		if err != nil {
			o.stats.decodeErrors.Add(1)
			if t, report := o.failed(ctx, ex, r, nil, err, nil); report != nil {
				progress = true
				dead = append(dead, report)
			} else if retryAt.IsZero() || t.Before(retryAt) {
				retryAt = t
			}
			continue
		}
		err = o.deliver(r, data)
		switch {
		case err == nil:
			o.markDelivered(r.seq)
			delivered = true
		case errors.Is(err, eventbus.ErrClosed) || o.life.Err() != nil:
			// The EventManager is closed, or Close gave up: not an
			// attempt. The row stays for a later pass or process.
			holdAll = true
		default:
			o.stats.failed.Add(1)
			fl := failingListeners(err)
			t, report := o.failed(ctx, ex, r, fl, err, &data)
			if report != nil {
				progress = true
				dead = append(dead, report)
				break
			}
			if retryAt.IsZero() || t.Before(retryAt) {
				retryAt = t
			}
			if len(fl) == 0 {
				holdAll = true // failed for no listener we can name: keep order for all
			}
			blocked = append(blocked, fl...)
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
			// dead marks are undone too.
			o.forgetUndeleted()
			o.reporting.Add(-int64(len(dead)))
			if ctx.Err() == nil {
				o.o.onError(fmt.Errorf("outbox: committing a pass over %s: %w", o.o.table, err))
			}
			return delivered, false, retryAt
		}
		o.deletedAll()
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
	return progress, progress && len(rows) >= o.o.batch, retryAt
}

// execer is a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (o *Outbox[T]) claim(ctx context.Context, ex execer, now int64) ([]row, error) {
	o.startClaim()
	// Rows delivered but not yet deleted come back (on SQLite, those above
	// the low-water mark): read that many more.
	limit := o.o.batch + o.undeletedAbove(o.low)
	args := []any{now, limit}
	if !o.q.postgres {
		args = []any{limit, o.low}
	}
	rs, err := ex.QueryContext(ctx, o.q.claim, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var rows []row
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.seq, &r.id, &r.name, &r.payload, &r.attempts, &r.nextAt, &r.heldFor); err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	if err := rs.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(rows, func(a, b row) int { return int(min(max(a.seq-b.seq, -1), 1)) })
	return rows, nil
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
// rows per statement. The relay and the reaper may both call it: deleting a
// row twice does nothing.
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
		chunk := seqs[:min(len(seqs), o.o.batch)]
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

// deliver runs every listener of the event in the relay's goroutine.
func (o *Outbox[T]) deliver(r row, data T) error {
	ctx := context.WithValue(o.life, deliveryKey{}, &delivery{outbox: o, id: r.id})
	return o.m.EmitSync(ctx, r.name, data)
}

// failed records a failed attempt: the row waits for its retry, or, at the
// attempt limit, is marked dead; then report, to call once the pass is
// committed, reports it. data is nil for a corrupt row.
func (o *Outbox[T]) failed(ctx context.Context, ex execer, r row, fl []failing, cause error, data *T) (retryAt time.Time, report func()) {
	attempts := r.attempts + 1
	msg := cause.Error()
	if attempts >= o.o.maxAttempts {
		if _, err := ex.ExecContext(ctx, o.q.dead, attempts, msg, r.seq); err != nil {
			if ctx.Err() == nil {
				o.o.onError(fmt.Errorf("outbox: marking a dead letter in %s: %w", o.o.table, err))
			}
			return time.Now().Add(o.o.poll), nil
		}
		o.reporting.Add(1) // Flush waits until the report is handed over
		return time.Time{}, func() {
			o.stats.dead.Add(1)
			o.reportDead(r, attempts, cause, data)
			o.reporting.Add(-1)
		}
	}
	retryAt = time.Now().Add(o.backoff(attempts))
	// Rounded up to the millisecond: never due before the backoff is over.
	nextAt := (retryAt.UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	_, err := ex.ExecContext(ctx, o.q.fail, attempts, nextAt, formatHeld(fl), msg, r.seq)
	if err != nil && ctx.Err() == nil {
		o.o.onError(fmt.Errorf("outbox: recording a failed attempt in %s: %w", o.o.table, err))
	}
	return retryAt, nil
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

// failing is a listener that failed on a row, as its *eventbus.ListenerError
// names it; stored in the row's held_for column, one "name\tpattern" line
// each, so that a restarted relay holds back the same rows.
type failing struct{ name, pattern string }

// failingListeners returns the listeners whose *eventbus.ListenerError is in
// err (EmitSync joins them), each once.
func failingListeners(err error) []failing {
	var out []failing
	var walk func(error)
	walk = func(e error) {
		if le, ok := e.(*eventbus.ListenerError); ok {
			f := failing{le.Listener, le.Pattern}
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				walk(x)
			}
		}
	}
	walk(err)
	return out
}

func formatHeld(fl []failing) string {
	var b strings.Builder
	for i, f := range fl {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strings.ReplaceAll(f.name, "\n", " "))
		b.WriteByte('\t')
		b.WriteString(f.pattern)
	}
	return b.String()
}

func parseHeld(s string) []failing {
	if s == "" {
		return nil
	}
	var out []failing
	for line := range strings.SplitSeq(s, "\n") {
		name, pattern, ok := strings.Cut(line, "\t")
		if !ok {
			pattern, name = line, line
		}
		out = append(out, failing{name, pattern})
	}
	return out
}

// matching counts the distinct failing listeners whose pattern matches name.
func matching(blocked []failing, name string) int {
	n := 0
	for i, f := range blocked {
		if eventbus.MatchPattern(f.pattern, name) && !slices.Contains(blocked[:i], f) {
			n++
		}
	}
	return n
}

type deadKey struct{}

// reportDead hands a dead letter to the EventManager's error handler: it is
// emitted to the internal listener alone (EmitTo), which fails with it.
func (o *Outbox[T]) reportDead(r row, attempts int, cause error, data *T) {
	dl := &DeadLetter{ID: r.id, Name: r.name, Seq: r.seq, Attempts: attempts, Err: cause}
	var v T
	if data != nil {
		v = *data
		dl.Data = v
	}
	o.dlWait.Add(1)
	ctx := context.WithValue(o.life, deadKey{}, dl)
	if err := o.m.EmitTo(ctx, o.dl, DeadLetterEvent, v); err != nil {
		o.dlWait.Done()
		o.o.onError(fmt.Errorf("outbox: cannot report to the EventManager (%w): %w", err, dl))
	}
}

// deadLetterHandler is the internal listener: it fails with the dead letter
// its context carries, which the EventManager reports to its error handler.
func (o *Outbox[T]) deadLetterHandler(ctx context.Context, _ eventbus.Event[T]) error {
	dl, _ := ctx.Value(deadKey{}).(*DeadLetter)
	if dl == nil {
		return nil // someone else emitted the internal event
	}
	defer o.dlWait.Done()
	return dl
}
