package outbox_test

import (
	"database/sql"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/outbox"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Rows whose columns hold a value of another type, or NULL (a SQLite
// column holds any type; a PostgreSQL table made by hand may allow NULLs)
// concern those rows alone, and the rows behind them are delivered. (Scanned
// into typed fields, one such row failed every pass, and nothing was ever
// delivered again.) A row whose event columns (id, name, payload) cannot be
// read is corrupt: a dead letter (ErrDecode) after MaxAttempts. A row whose
// bookkeeping columns (attempts, next_at, held_for, handled) cannot be read
// is delivered: they read as their defaults.
func TestRowsWithColumnsOfAnotherTypeBlockNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		open  func(testing.TB) *sql.DB
		setup []string
		want  []order // delivered
		bad   int     // dead letters
	}{
		{"SQLite", openSQLite, []string{
			`INSERT INTO eventbus_outbox (id, name, payload, attempts) VALUES ('bad-attempts', 'o.c', '{}', 'many')`,
			`INSERT INTO eventbus_outbox (id, name, payload, next_at) VALUES ('bad-next', 'o.c', '{}', 'soon')`,
			`INSERT INTO eventbus_outbox (id, name, payload) VALUES ('bad-payload', 'o.c', 42)`,
			`INSERT INTO eventbus_outbox (id, name, payload) VALUES ('good', 'o.c', '{"id":7}')`,
		}, []order{{}, {}, {ID: 7}}, 1},
		{"PostgreSQL", openPostgres, []string{
			`DROP TABLE IF EXISTS eventbus_outbox`,
			`CREATE TABLE eventbus_outbox (seq BIGSERIAL PRIMARY KEY, id TEXT, name TEXT, payload BYTEA,
				state SMALLINT DEFAULT 0, attempts INTEGER DEFAULT 0, next_at BIGINT DEFAULT 0, held_for TEXT DEFAULT '',
				last_error TEXT DEFAULT '', handled TEXT DEFAULT '')`,
			`INSERT INTO eventbus_outbox (id, name, payload, attempts) VALUES (NULL, 'o.c', NULL, NULL)`,
			`INSERT INTO eventbus_outbox (id, name, payload, held_for, handled) VALUES ('nulls', 'o.c', '{}', NULL, NULL)`,
			`INSERT INTO eventbus_outbox (id, name, payload) VALUES ('good', 'o.c', '{"id":7}')`,
		}, []order{{}, {ID: 7}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := tc.open(t)
			ctx := testCtx(t)
			if tc.name == "SQLite" { // the outbox makes its table
				pre, err := outbox.New(ctx, db, eventbus.New[order](), outbox.PollInterval(time.Hour))
				require.NoError(t, err)
				require.NoError(t, pre.Close(ctx))
			}
			for _, q := range tc.setup {
				_, err := db.Exec(q)
				require.NoError(t, err, q)
			}
			reported := make(chan error, 16)
			m := eventbus.New[order](eventbus.WithErrorHandler(func(err error) { reported <- err }))
			var r recorder[order]
			listen(t, m, ">", &r)
			ob := newOutbox(t, db, m, append(fast, outbox.MaxAttempts(2))...)
			require.NoError(t, ob.Flush(ctx), "Flush returns: no row holds back the relay")
			assert.ElementsMatch(t, tc.want, r.data(), "every row but the corrupt ones")
			for range tc.bad {
				var err error
				select { // reported before Flush returned
				case err = <-reported:
				default:
					t.Fatal("a corrupt row was not reported")
				}
				var dl *outbox.DeadLetter
				require.ErrorAs(t, err, &dl)
				assert.ErrorIs(t, err, outbox.ErrDecode)
				assert.Equal(t, 2, dl.Attempts)
				t.Log(err)
			}
			assert.Equal(t, uint64(tc.bad), ob.Stats().DeadLetters)
			select {
			case err := <-reported:
				if !errors.Is(err, outbox.ErrDecode) {
					t.Fatalf("unexpected report: %v", err)
				}
			default:
			}
		})
	}
}

// A row whose seq cannot be read as an integer (text, a fraction or NULL:
// a SQLite table made by hand, where a column holds any type) cannot be
// addressed: the relay skips it and reports it at each pass, the rows
// behind it are delivered, and Flush returns once they are. (Flush read
// MAX(seq) into an integer: text sorts above numbers in SQLite, so every
// Flush failed while such a row was in the table; and a NULL seq was never
// claimed, so never reported.)
func TestRowsWithUnreadableSeqBlockNeitherRelayNorFlush(t *testing.T) {
	db := openSQLite(t)
	ctx := testCtx(t)
	for _, q := range []string{
		`CREATE TABLE eventbus_outbox (seq INTEGER, id TEXT NOT NULL, name TEXT NOT NULL, payload BLOB NOT NULL,
			state INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL DEFAULT 0,
			held_for TEXT NOT NULL DEFAULT '', last_error TEXT NOT NULL DEFAULT '', handled TEXT NOT NULL DEFAULT '')`,
		`INSERT INTO eventbus_outbox (seq, id, name, payload) VALUES (1, 'a', 'o.c', '{"id":1}')`,
		`INSERT INTO eventbus_outbox (seq, id, name, payload) VALUES ('x', 'text', 'o.c', '{"id":91}')`,
		`INSERT INTO eventbus_outbox (seq, id, name, payload) VALUES (NULL, 'null', 'o.c', '{"id":92}')`,
		`INSERT INTO eventbus_outbox (seq, id, name, payload) VALUES (2.5, 'fraction', 'o.c', '{"id":93}')`,
		`INSERT INTO eventbus_outbox (seq, id, name, payload) VALUES (3, 'b', 'o.c', '{"id":3}')`,
	} {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
	reported := make(chan error, 64)
	m := eventbus.New[order]()
	var r recorder[order]
	listen(t, m, ">", &r)
	ob := newOutbox(t, db, m, append(fast, outbox.WithErrorHandler(func(err error) {
		select {
		case reported <- err:
		default: // one report a pass: the first ones are enough
		}
	}))...)
	require.NoError(t, ob.Flush(ctx), "Flush returns once every row it can address is delivered")
	assert.ElementsMatch(t, []order{{ID: 1}, {ID: 3}}, r.data(), "the rows behind the unreadable ones are delivered")
	require.NoError(t, ob.Flush(ctx), "and again, with the unreadable rows still in the table")
	var err error
	select {
	case err = <-reported:
	default:
		t.Fatal("the unreadable rows were not reported")
	}
	assert.ErrorIs(t, err, outbox.ErrDecode)
	assert.Contains(t, err.Error(), "3 row(s)", "text, NULL and the fraction")
	assert.GreaterOrEqual(t, ob.Stats().DecodeErrors, uint64(3))
	t.Log(err)
}

// A listener that calls runtime.Goexit (t.FailNow, or a failing require, in
// a test's listener) fails that attempt, as a panic would: the event is
// attempted again, the relay goes on with the next one, and Flush and Close
// return. (It ended the relay's goroutine, silently: nothing was delivered
// again until the next New.)
func TestListenerGoexitFailsTheAttemptOnly(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		reported := make(chan error, 4)
		m := eventbus.New[order](eventbus.WithErrorHandler(func(err error) { reported <- err }))
		var calls atomic.Int32
		var r recorder[order]
		r.fail = func(eventbus.Event[order], int) error {
			if n := calls.Add(1); n == 1 || n >= 4 { // the first attempt, and every attempt of the third event
				runtime.Goexit()
			}
			return nil
		}
		listen(t, m, ">", &r)
		ob := newOutbox(t, db, m, append(fast, outbox.MaxAttempts(2))...)
		for id := 1; id <= 3; id++ {
			inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "o.c", order{ID: id})) })
			require.NoError(t, ob.Flush(ctx), "Flush after a listener's Goexit")
		}
		assert.Equal(t, []order{{ID: 1}, {ID: 1}, {ID: 2}, {ID: 3}, {ID: 3}}, r.data())
		var err error
		select { // the third event, given up, was reported before Flush returned
		case err = <-reported:
		default:
			t.Fatal("no dead letter")
		}
		var dl *outbox.DeadLetter
		require.ErrorAs(t, err, &dl)
		assert.ErrorIs(t, err, outbox.ErrListenerExited)
		assert.Equal(t, order{ID: 3}, dl.Data)
		assert.Equal(t, uint64(1), ob.Stats().DeadLetters)
	})
}
