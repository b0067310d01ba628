package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/outbox"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A listener error carrying bytes that PostgreSQL refuses in a TEXT column
// (NUL, invalid UTF-8) is recorded like any other: the attempt counts, the
// event is given up on after MaxAttempts, and the other listeners get each
// event once, one of them named with such bytes. (The UPDATE recording the
// failure failed, aborting the pass: every event of it was delivered again
// and again, the attempt never counted, and nothing was ever given up on.
// And a listener whose name has an invalid byte was never found done in
// the JSON progress, so it got every event again and again.)
func TestListenerErrorWithBytesTextRefusesIsRecorded(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(testing.TB) *sql.DB
	}{{"PostgreSQL", openPostgres}, {"SQLite", openSQLite}} {
		t.Run(tc.name, func(t *testing.T) {
			db := tc.open(t)
			ctx := testCtx(t)
			reported := make(chan error, 16)
			m := eventbus.New[int](eventbus.WithErrorHandler(func(err error) { reported <- err }))
			var good, bad, odd recorder[int]
			bad.fail = func(e eventbus.Event[int], _ int) error {
				switch e.Data {
				case 1:
					return fmt.Errorf("NUL: %s", []byte{'x', 0x00, 'y'})
				case 2:
					return fmt.Errorf("invalid UTF-8: %s", []byte{0xff, 0xfe})
				}
				return nil
			}
			listen(t, m, "p.*", &bad, eventbus.Name("bad"))
			listen(t, m, "p.*", &good, eventbus.Name("good"))
			// A name the columns cannot hold as it is: JSON (handled) turns
			// its invalid byte into U+FFFD, which it must still be known by.
			listen(t, m, "p.*", &odd, eventbus.Name("odd\x00\xff\n"))
			ob := newOutbox(t, db, m, outbox.MaxAttempts(3))
			inTx(t, db, true, func(tx *sql.Tx) {
				for i := range 3 {
					require.NoError(t, ob.Emit(ctx, tx, "p.x", i))
				}
			})
			require.NoError(t, ob.Flush(ctx))
			assert.Equal(t, []int{0, 1, 2}, good.data(), "each event once to the other listener")
			assert.Equal(t, []int{0, 1, 2}, odd.data(), "and once to the oddly named one")
			tries := map[int]int{}
			for _, v := range bad.data() {
				tries[v]++
			}
			assert.Equal(t, map[int]int{0: 1, 1: 3, 2: 3}, tries, "MaxAttempts each, no more")
			assert.Len(t, reported, 2, "two dead letters")
			assert.Equal(t, uint64(2), ob.Stats().DeadLetters)
		})
	}
}

// A row whose next_at is NULL (a table made by hand) is due now, on
// PostgreSQL as on SQLite, as the README says. (PostgreSQL's claim compared
// NULL with now and never took the row; with only such rows pending, the
// relay saw nothing due, and Flush waited for its ctx.)
func TestNullNextAtIsDueNow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		open  func(testing.TB) *sql.DB
		table string
	}{
		{"PostgreSQL", openPostgres, `CREATE TABLE eventbus_outbox (seq BIGSERIAL PRIMARY KEY, id TEXT, name TEXT, payload BYTEA,
			state SMALLINT DEFAULT 0, attempts INTEGER DEFAULT 0, next_at BIGINT DEFAULT 0, held_for TEXT DEFAULT '',
			last_error TEXT DEFAULT '', handled TEXT DEFAULT '')`},
		{"SQLite", openSQLite, `CREATE TABLE eventbus_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, name TEXT, payload BLOB,
			state INTEGER DEFAULT 0, attempts INTEGER DEFAULT 0, next_at INTEGER DEFAULT 0, held_for TEXT DEFAULT '',
			last_error TEXT DEFAULT '', handled TEXT DEFAULT '')`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := tc.open(t)
			ctx := testCtx(t)
			for _, q := range []string{
				`DROP TABLE IF EXISTS eventbus_outbox`,
				tc.table,
				`INSERT INTO eventbus_outbox (id, name, payload, next_at) VALUES ('null-next', 'o.c', '1', NULL)`,
				`INSERT INTO eventbus_outbox (id, name, payload, next_at, held_for) VALUES ('null-next-held', 'o.c', '2', NULL, NULL)`,
			} {
				_, err := db.Exec(q)
				require.NoError(t, err, q)
			}
			m := eventbus.New[int]()
			var r recorder[int]
			listen(t, m, ">", &r)
			ob := newOutbox(t, db, m)
			require.NoError(t, ob.Flush(ctx))
			assert.ElementsMatch(t, []int{1, 2}, r.data())
		})
	}
}

// Flush notices rows that another process's relay delivered without
// waiting for its own relay's next pass: with PollInterval an hour, relay
// a's Flush returns once relay b has delivered and deleted the only row.
// (It waited for a's next pass, so for its ctx.)
func TestFlushNoticesAnotherRelaysDeliveries(t *testing.T) {
	dsn := pgDatabase(t)
	ctx := testCtx(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	started := make(chan int, 2)
	var obs [2]*outbox.Outbox[int]
	var dbs [2]*sql.DB
	for i := range 2 {
		db := openPgx(t, dsn)
		dbs[i] = db
		m := eventbus.New[int]()
		_, err := m.RegisterListener("f.*", func(context.Context, eventbus.Event[int]) error {
			started <- i
			<-release
			return nil
		}, eventbus.Name("l"))
		require.NoError(t, err)
		obs[i] = newOutbox(t, db, m, outbox.PollInterval(time.Hour))
	}
	// After newOutbox's cleanups, so that it runs before their Close.
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	inTx(t, dbs[0], true, func(tx *sql.Tx) { require.NoError(t, obs[0].Emit(ctx, tx, "f.x", 1)) })
	b := <-started // b's pass holds the row
	a := 1 - b
	looks := outbox.FlushLooks(obs[a])
	fctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	flushed := make(chan error, 1)
	go func() { flushed <- obs[a].Flush(fctx) }()
	for outbox.FlushLooks(obs[a]) == looks { // a's Flush found the row still to do, and waits
		time.Sleep(time.Millisecond)
	}
	releaseOnce.Do(func() { close(release) })
	require.NoError(t, obs[b].Flush(ctx)) // b has delivered and deleted it
	assert.NoError(t, <-flushed, "a's Flush sees the table empty")
}

// New on a table in use takes no table lock: it neither waits for a
// relay's pass in another process nor makes every writer wait behind it.
// (ALTER TABLE ... ADD COLUMN IF NOT EXISTS and CREATE INDEX IF NOT EXISTS
// lock the table before finding nothing to do: New waited for the pass,
// and an Emit in a third process waited behind New.)
func TestNewOnATableInUseWaitsForNoPass(t *testing.T) {
	dsn := pgDatabase(t)
	ctx := testCtx(t)
	dbB, dbA, dbApp := openPgx(t, dsn), openPgx(t, dsn), openPgx(t, dsn)
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	mB := eventbus.New[int]()
	_, err := mB.RegisterListener("f.*", func(context.Context, eventbus.Event[int]) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return nil
	}, eventbus.Name("l"))
	require.NoError(t, err)
	obB := newOutbox(t, dbB, mB)
	// After newOutbox's cleanup, so that it runs before its Close.
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	inTx(t, dbB, true, func(tx *sql.Tx) { require.NoError(t, obB.Emit(ctx, tx, "f.x", 1)) })
	<-started // b's pass is open, its row locked

	// Generous bounds: the point is that neither waits for b's pass,
	// which lasts until release.
	nctx, ncancel := context.WithTimeout(ctx, 5*time.Second)
	defer ncancel()
	obA, err := outbox.New(nctx, dbA, eventbus.New[int]())
	require.NoError(t, err, "New while another relay's pass runs")
	require.NoError(t, obA.Close(ctx))
	ectx, ecancel := context.WithTimeout(ctx, 5*time.Second)
	defer ecancel()
	inTx(t, dbApp, true, func(tx *sql.Tx) { require.NoError(t, obB.Emit(ectx, tx, "g.x", 2)) })
	releaseOnce.Do(func() { close(release) })
	require.NoError(t, obB.Flush(ctx))
}

// A BatchSize above the databases' limit on a statement's parameters
// (PostgreSQL's protocol: 65,535) still deletes the delivered rows, in
// several statements. (One DELETE named every row of the pass: it failed,
// the pass was rolled back, and every row was delivered again, forever.)
func TestHugeBatchSizeDeletesInChunks(t *testing.T) {
	if testing.Short() {
		t.Skip("70,000 rows")
	}
	const n = 70_000
	db := openPostgres(t)
	ctx := testCtx(t)
	var calls atomic.Int64
	m := eventbus.New[int]()
	_, err := m.RegisterListener("b.>", func(context.Context, eventbus.Event[int]) error {
		calls.Add(1)
		return nil
	})
	require.NoError(t, err)
	ob := newOutbox(t, db, m, outbox.BatchSize(n))
	_, err = db.ExecContext(ctx, `INSERT INTO eventbus_outbox (id, name, payload)
		SELECT 'burst' || g, 'b.x', convert_to(g::text, 'UTF8') FROM generate_series(1, $1::int) g`, n)
	require.NoError(t, err)
	require.NoError(t, ob.Flush(ctx))
	assert.Equal(t, int64(n), calls.Load(), "each row once")
	var left int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM eventbus_outbox").Scan(&left))
	assert.Zero(t, left)
}

// New makes the table in the current schema when another schema of the
// search_path has one (a schema per tenant, and public): it looks for the
// table, and its indexes, where CREATE would make them. (A look through
// the whole search_path found public's table, and the tenant's outbox
// relayed public's rows.)
func TestNewMakesTheTableInTheCurrentSchema(t *testing.T) {
	dsn := pgDatabase(t)
	ctx := testCtx(t)
	public := openPgx(t, dsn)
	obPublic := newOutbox(t, public, eventbus.New[int]())
	require.NoError(t, obPublic.Close(ctx))
	_, err := public.ExecContext(ctx, "CREATE SCHEMA tenant1")
	require.NoError(t, err)

	tenant := openPgx(t, dsn+"&search_path=tenant1,public")
	m := eventbus.New[int]()
	var r recorder[int]
	listen(t, m, "t.*", &r)
	ob := newOutbox(t, tenant, m)
	inTx(t, tenant, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "t.x", 7)) })
	require.NoError(t, ob.Flush(ctx))
	assert.Equal(t, []int{7}, r.data())
	var tables int
	require.NoError(t, public.QueryRowContext(ctx,
		"SELECT COUNT(*) FROM pg_tables WHERE tablename = 'eventbus_outbox' AND schemaname IN ('public', 'tenant1')").Scan(&tables))
	assert.Equal(t, 2, tables, "one table in each schema")
	var indexes int
	require.NoError(t, public.QueryRowContext(ctx,
		"SELECT COUNT(*) FROM pg_indexes WHERE schemaname = 'tenant1' AND tablename = 'eventbus_outbox'").Scan(&indexes))
	assert.Equal(t, 3, indexes, "the tenant's table has its key and both indexes")
}
