package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// queries holds the SQL of one table in one dialect, built once by New.
type queries struct {
	postgres bool
	insert   string // id, name, payload
	due      string // the earliest next_at of a pending row
	claim    string // PostgreSQL: now, limit; SQLite: limit, low
	fail     string // attempts, nextAt, heldFor, handled, lastError, seq
	wait     string // nextAt, heldFor, handled, seq
	dead     string // attempts, lastError, handled, seq
	maxSeq   string
	pending  string // seq
}

func newQueries(postgres bool, t string) queries {
	ph := func(i int) string { return "?" + strconv.Itoa(i) }
	if postgres {
		ph = func(i int) string { return "$" + strconv.Itoa(i) }
	}
	q := queries{
		postgres: postgres,
		insert:   fmt.Sprintf("INSERT INTO %s (id, name, payload) VALUES (%s, %s, %s)", t, ph(1), ph(2), ph(3)),
		// A NULL next_at (a table made by hand) reads as 0: due now.
		due: fmt.Sprintf("SELECT MIN(COALESCE(next_at, 0)) FROM %s WHERE state = 0", t),
		// Rows due now, and rows waiting for a retry that hold back others
		// (held_for), in table order. SQLite has no row locks: its relay
		// reads, it claims nothing.
		claim: fmt.Sprintf("SELECT seq, id, name, payload, attempts, next_at, held_for, handled FROM %s "+
			"WHERE state = 0 AND (next_at <= %s OR next_at IS NULL OR held_for <> '') ORDER BY seq LIMIT %s", t, ph(1), ph(2)),
		fail: fmt.Sprintf("UPDATE %s SET attempts = %s, next_at = %s, held_for = %s, handled = %s, last_error = %s WHERE seq = %s",
			t, ph(1), ph(2), ph(3), ph(4), ph(5), ph(6)),
		wait: fmt.Sprintf("UPDATE %s SET next_at = %s, held_for = %s, handled = %s WHERE seq = %s",
			t, ph(1), ph(2), ph(3), ph(4)),
		dead: fmt.Sprintf("UPDATE %s SET state = 2, attempts = %s, last_error = %s, held_for = '', handled = %s WHERE seq = %s",
			t, ph(1), ph(2), ph(3), ph(4)),
		maxSeq:  fmt.Sprintf("SELECT COALESCE(MAX(seq), 0) FROM %s", t),
		pending: fmt.Sprintf("SELECT seq FROM %s WHERE state = 0 AND seq <= %s ORDER BY seq LIMIT %d", t, ph(1), flushWindow),
	}
	if !postgres {
		// Every pending row above the relay's low-water mark, those
		// waiting for a retry included, so that the mark never passes a
		// pending row: every row up to it is delivered, or dead. (SQLite
		// commits in seq order, so no row can appear below it later.)
		// A SQLite column holds any type: a row whose seq is text, a
		// fraction or NULL (a table made by hand) cannot be addressed. It
		// is claimed too, last, so that the relay reports it at each pass
		// (text sorts after numbers; NULLS LAST puts NULL after both);
		// Flush looks at whole numbers only, and waits for no such row.
		q.claim = fmt.Sprintf("SELECT seq, id, name, payload, attempts, next_at, held_for, handled FROM %s "+
			"WHERE state = 0 AND (seq > %s OR seq IS NULL) ORDER BY seq NULLS LAST LIMIT %s", t, ph(2), ph(1))
		q.maxSeq = fmt.Sprintf("SELECT COALESCE(MAX(CAST(seq AS INTEGER)), 0) FROM %s WHERE typeof(seq) IN ('integer', 'real')", t)
		q.pending = fmt.Sprintf("SELECT seq FROM %s WHERE state = 0 AND typeof(seq) IN ('integer', 'real') AND seq <= %s ORDER BY seq LIMIT %d",
			t, ph(1), flushWindow)
	}
	if postgres {
		// Locked until the relay's transaction ends: other relays skip
		// them; a crash ends the transaction and frees them at once.
		q.claim += " FOR UPDATE SKIP LOCKED"
		// In the same statement (one round trip), and without locking:
		// the rows below the last one claimed that hold listeners back
		// and that the claim skipped, another relay's pass holding them
		// (see heldElsewhere). The first column tells them apart.
		q.claim = fmt.Sprintf("WITH c AS (%s) "+
			"SELECT true, seq, id, name, payload, attempts, next_at, held_for, handled FROM c "+
			"UNION ALL SELECT false, h.seq, NULL, NULL, NULL, NULL, h.next_at, h.held_for, NULL FROM %s h "+
			"WHERE h.state = 0 AND h.held_for <> '' AND h.seq < (SELECT MAX(seq) FROM c) "+
			"AND NOT EXISTS (SELECT 1 FROM c WHERE c.seq = h.seq)", // not NOT IN: a NULL seq (a table made by hand) would hide every row
			q.claim, t)
	}
	return q
}

// flushWindow: how many pending rows Flush reads at once to check them
// against the rows delivered and not yet deleted.
const flushWindow = 512

// deleteDone returns the statement deleting n delivered rows by seq.
func (q *queries) deleteDone(t string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "DELETE FROM %s WHERE seq IN (", t)
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		if q.postgres {
			b.WriteString("$" + strconv.Itoa(i))
		} else {
			b.WriteString("?" + strconv.Itoa(i))
		}
	}
	b.WriteByte(')')
	return b.String()
}

// detect tells SQLite from PostgreSQL by asking the database.
func detect(ctx context.Context, db *sql.DB) (postgres bool, err error) {
	var v string
	if err := db.QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&v); err == nil {
		return false, nil
	}
	if err := db.QueryRowContext(ctx, "SELECT version()").Scan(&v); err == nil && strings.Contains(v, "PostgreSQL") {
		return true, nil
	}
	if err := db.PingContext(ctx); err != nil {
		return false, fmt.Errorf("outbox: cannot reach the database: %w", err)
	}
	return false, fmt.Errorf("%w: neither SQLite nor PostgreSQL", ErrUnsupported)
}

// createSchema creates the table, its index and, on PostgreSQL, the trigger
// that notifies the relays of every commit that inserted rows, if missing.
// On PostgreSQL it holds an advisory lock meanwhile, so that processes
// starting together do not race on CREATE ... IF NOT EXISTS.
func createSchema(ctx context.Context, db *sql.DB, postgres bool, t string) error {
	// Each statement names the relation it makes, if any. On PostgreSQL,
	// DDL on a table that exists is not free even with IF NOT EXISTS:
	// CREATE INDEX takes a SHARE lock and ALTER TABLE an ACCESS EXCLUSIVE
	// one before finding there is nothing to do, and so waits for every
	// transaction that wrote rows (a relay's pass, an application's Emit)
	// while every later writer waits behind it. So a statement runs there
	// only if its relation is missing: a New on a table in use takes no
	// table lock.
	type ddl struct{ sql, makes string }
	var stmts []ddl
	if postgres {
		stmts = []ddl{
			{fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	seq BIGSERIAL PRIMARY KEY,
	id TEXT NOT NULL,
	name TEXT NOT NULL,
	payload BYTEA NOT NULL,
	state SMALLINT NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_at BIGINT NOT NULL DEFAULT 0,
	held_for TEXT NOT NULL DEFAULT '',
	last_error TEXT NOT NULL DEFAULT '',
	handled TEXT NOT NULL DEFAULT '')`, t), t},
			{fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s_state_seq ON %s (state, seq)", t, t), t + "_state_seq"},
			{fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s_state_next ON %s (state, next_at)", t, t), t + "_state_next"},
			{fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('%s', ''); RETURN NULL; END $$`, t, strings.ToLower(t)), ""},
		}
	} else {
		stmts = []ddl{
			{fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	id TEXT NOT NULL,
	name TEXT NOT NULL,
	payload BLOB NOT NULL,
	state INTEGER NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_at INTEGER NOT NULL DEFAULT 0,
	held_for TEXT NOT NULL DEFAULT '',
	last_error TEXT NOT NULL DEFAULT '',
	handled TEXT NOT NULL DEFAULT '')`, t), t},
			{fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s_state_seq ON %s (state, seq)", t, t), t + "_state_seq"},
			{fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s_state_next ON %s (state, next_at)", t, t), t + "_state_next"},
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("outbox: creating table %s: %w", t, err)
	}
	defer func() { _ = tx.Rollback() }()
	if postgres {
		h := fnv.New64a()
		_, _ = h.Write([]byte("eventbus-outbox:" + strings.ToLower(t)))
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(h.Sum64())); err != nil {
			return fmt.Errorf("outbox: creating table %s: %w", t, err)
		}
	}
	for i, s := range stmts {
		skip := false
		if postgres && s.makes != "" {
			var err error
			if skip, err = pgRelationExists(ctx, tx, s.makes); err != nil {
				return fmt.Errorf("outbox: creating table %s: %w", t, err)
			}
		}
		if !skip {
			if _, err := tx.ExecContext(ctx, s.sql); err != nil {
				return fmt.Errorf("outbox: creating table %s: %w", t, err)
			}
		}
		if i == 0 {
			// The table may have existed with another layout.
			probe := fmt.Sprintf("SELECT seq, id, name, payload, state, attempts, next_at, held_for, last_error FROM %s WHERE 1 = 0", t)
			rows, err := tx.QueryContext(ctx, probe)
			if err != nil {
				return fmt.Errorf("%w: table %s exists without the outbox's columns: %w", ErrUnsupported, t, err)
			}
			_ = rows.Close()
			if err := addHandled(ctx, tx, postgres, t); err != nil {
				return fmt.Errorf("outbox: adding the column handled to table %s: %w", t, err)
			}
		}
	}
	if postgres {
		var n int
		err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM pg_trigger WHERE tgname = $1 AND tgrelid = $2::regclass",
			strings.ToLower(t)+"_notify", t).Scan(&n)
		if err != nil {
			return fmt.Errorf("outbox: creating table %s: %w", t, err)
		}
		if n == 0 {
			s := fmt.Sprintf("CREATE TRIGGER %[1]s_notify AFTER INSERT ON %[1]s FOR EACH STATEMENT EXECUTE FUNCTION %[1]s_notify()", t)
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("outbox: creating table %s: %w", t, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("outbox: creating table %s: %w", t, err)
	}
	return nil
}

// pgRelationExists reports whether the relation that CREATE ... IF NOT
// EXISTS name would make exists already: a schema-qualified name as it
// says; an unqualified one in the current schema, where CREATE makes it
// (to_regclass would find it in any schema of the search_path, and New
// would then skip making the table of a tenant's schema because public
// has one).
func pgRelationExists(ctx context.Context, tx *sql.Tx, name string) (bool, error) {
	var ok bool
	if strings.Contains(name, ".") {
		err := tx.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok)
		return ok, err
	}
	err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relname = $1)`, strings.ToLower(name)).Scan(&ok)
	return ok, err
}

// addHandled adds the column handled (see progress) to a table made by an
// older version, which lacks it: its rows then count as handled by nobody.
func addHandled(ctx context.Context, tx *sql.Tx, postgres bool, t string) error {
	if postgres {
		// Only if missing: ALTER TABLE locks the table whatever IF NOT
		// EXISTS finds (see createSchema).
		var n int
		err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'handled' AND NOT attisdropped", t).Scan(&n)
		if err != nil || n > 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS handled TEXT NOT NULL DEFAULT ''", t))
		return err
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = 'handled'", t).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN handled TEXT NOT NULL DEFAULT ''", t))
	return err
}
