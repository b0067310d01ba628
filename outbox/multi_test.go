package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/outbox"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Several processes (here: two Outboxes, each with its own EventManager and
// its own connection pool) relaying one PostgreSQL table deliver each event
// once: each pass claims its rows with FOR UPDATE SKIP LOCKED.
func TestPostgresSeveralRelaysDeliverOnce(t *testing.T) {
	dsn := pgDatabase(t)
	ctx := testCtx(t)
	var mu sync.Mutex
	count := map[int]int{}
	by := [2]int{}
	var obs [2]*outbox.Outbox[int]
	var dbs [2]*sql.DB
	for i := range 2 {
		db := openPgx(t, dsn)
		dbs[i] = db
		m := eventbus.New[int]()
		_, err := m.RegisterListener("job.>", func(_ context.Context, e eventbus.Event[int]) error {
			mu.Lock()
			count[e.Data]++
			by[i]++
			mu.Unlock()
			return nil
		})
		require.NoError(t, err)
		obs[i] = newOutbox(t, db, m, outbox.BatchSize(16))
	}
	const n = 600
	for k := range n {
		i := k % 2
		inTx(t, dbs[i], true, func(tx *sql.Tx) { require.NoError(t, obs[i].Emit(ctx, tx, "job.run", k)) })
	}
	require.NoError(t, obs[0].Flush(ctx))
	require.NoError(t, obs[1].Flush(ctx))
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, count, n, "every event delivered")
	for k, c := range count {
		if c != 1 {
			t.Errorf("event %d delivered %d times", k, c)
		}
	}
	t.Logf("relay 0 delivered %d, relay 1 delivered %d", by[0], by[1])
}

// Events written by another process reach the relay: on PostgreSQL through
// LISTEN/NOTIFY (the relay here never polls), on SQLite by polling.
func TestEventsOfOtherProcesses(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			ctx := testCtx(t)
			m := eventbus.New[int]()
			var r recorder[int]
			listen(t, m, "x.>", &r)
			poll := 20 * time.Millisecond
			if b.name == "postgres" {
				poll = time.Hour
			}
			ob := newOutbox(t, db, m, outbox.PollInterval(poll))
			if b.name == "postgres" {
				for !ob.Stats().Listening {
					require.NoError(t, ctx.Err())
					time.Sleep(time.Millisecond)
				}
			}
			// Another process: a plain INSERT, no Emit of this Outbox.
			for i := range 3 {
				_, err := db.ExecContext(ctx, fmt.Sprintf(
					"INSERT INTO eventbus_outbox (id, name, payload) VALUES ('other%d', 'x.y', '%d')", i, i))
				require.NoError(t, err)
			}
			// No Flush: it would wake the relay itself.
			deadline := time.After(testTimeout)
			for len(r.all()) < 3 {
				select {
				case <-deadline:
					t.Fatalf("got %v", r.data())
				case <-time.After(time.Millisecond):
				}
			}
			assert.Equal(t, []int{0, 1, 2}, r.data())
			assert.Equal(t, "other0", r.all()[0].id)
			if b.name == "postgres" {
				assert.NotZero(t, ob.Stats().Notifications)
			}
		})
	}
}

// An Ordered listener that failed an event gets none of the later events
// before it, with several relays on one PostgreSQL table too: a relay's
// pass holds back for it the rows behind a failed row that another relay's
// pass holds locked (retrying it, or holding back for it), which its claim
// skips. Two relays (each its own pool and EventManager: two processes),
// an Ordered listener named "L" in each; event 1 fails its first 3
// attempts, wherever it runs. A relay's L used to get up to 22 later
// events between failing event 1 and event 1's success.
func TestPostgresOrderedHoldBackAcrossRelays(t *testing.T) {
	const relays, events = 2, 60
	dsn := pgDatabase(t)
	ctx := testCtx(t)
	type call struct {
		relay, ev int
		ok        bool
	}
	var mu sync.Mutex
	var calls []call
	fails := 0
	var obs [relays]*outbox.Outbox[int]
	var dbs [relays]*sql.DB
	for i := range relays {
		dbs[i] = openPgx(t, dsn)
		m := eventbus.New[int]()
		_, err := m.RegisterListener("o.*", func(_ context.Context, e eventbus.Event[int]) error {
			time.Sleep(time.Millisecond) // passes overlap
			mu.Lock()
			defer mu.Unlock()
			if e.Data == 1 && fails < 3 {
				fails++
				calls = append(calls, call{i, e.Data, false})
				return errors.New("fail")
			}
			calls = append(calls, call{i, e.Data, true})
			return nil
		}, eventbus.Ordered(), eventbus.Name("L"))
		require.NoError(t, err)
		obs[i] = newOutbox(t, dbs[i], m, outbox.BatchSize(4), outbox.PollInterval(5*time.Millisecond),
			outbox.Backoff(20*time.Millisecond, 40*time.Millisecond), outbox.MaxAttempts(100))
	}
	for k := 1; k <= events; k++ {
		i := k % relays
		inTx(t, dbs[i], true, func(tx *sql.Tx) { require.NoError(t, obs[i].Emit(ctx, tx, "o.x", k)) })
	}
	for i := range relays {
		require.NoError(t, obs[i].Flush(ctx))
	}
	mu.Lock()
	defer mu.Unlock()
	failed := [relays]bool{} // the relay's L has failed event 1
	var after [relays][]int  // later events its L got since, before event 1 succeeded
	seen := map[int]int{}
	succeeded := false
	for _, c := range calls {
		switch {
		case c.ev == 1 && c.ok:
			succeeded = true
		case c.ev == 1:
			failed[c.relay] = true
		case failed[c.relay] && !succeeded:
			after[c.relay] = append(after[c.relay], c.ev)
		}
		if c.ok {
			seen[c.ev]++
		}
	}
	assert.Equal(t, 3, fails)
	for r := range relays {
		assert.Empty(t, after[r], "relay %d: events its L got after failing event 1, before event 1 succeeded", r)
	}
	for k := 1; k <= events; k++ {
		assert.Equal(t, 1, seen[k], "event %d delivered once", k)
	}
}

// The held rows another relay's pass has locked still hold listeners back
// when the claim also takes a row whose seq is NULL (a table made by hand):
// the claim's second part excluded the claimed rows with NOT IN, which a
// NULL in the list makes false for every row.
func TestPostgresHeldElsewhereSurvivesANullSeq(t *testing.T) {
	db := openPostgres(t)
	ctx := testCtx(t)
	far := time.Now().Add(time.Hour).UnixMilli()
	for _, q := range []string{
		`CREATE TABLE eventbus_outbox (seq BIGINT, id TEXT NOT NULL, name TEXT NOT NULL, payload BYTEA NOT NULL,
	state SMALLINT NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, next_at BIGINT NOT NULL DEFAULT 0,
	held_for TEXT NOT NULL DEFAULT '', last_error TEXT NOT NULL DEFAULT '', handled TEXT NOT NULL DEFAULT '')`,
		fmt.Sprintf(`INSERT INTO eventbus_outbox (seq, id, name, payload, held_for, next_at, attempts) VALUES (1, 'a', 'o.c', '1', 'l', %d, 1)`, far),
		`INSERT INTO eventbus_outbox (seq, id, name, payload) VALUES (2, 'b', 'o.c', '1')`,
		`INSERT INTO eventbus_outbox (seq, id, name, payload) VALUES (NULL, 'n', 'o.c', '1')`,
	} {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
	other, err := db.BeginTx(ctx, nil) // another relay's pass, holding row 1
	require.NoError(t, err)
	defer func() { _ = other.Rollback() }()
	_, err = other.ExecContext(ctx, `SELECT seq FROM eventbus_outbox WHERE seq = 1 FOR UPDATE`)
	require.NoError(t, err)
	m := eventbus.New[int]()
	var mu sync.Mutex
	var got []string
	_, err = m.RegisterListener("o.*", func(ctx context.Context, _ eventbus.Event[int]) error {
		id, _ := outbox.EventID(ctx)
		mu.Lock()
		got = append(got, id)
		mu.Unlock()
		return nil
	}, eventbus.Name("l"), eventbus.Ordered())
	require.NoError(t, err)
	ob := newOutbox(t, db, m, outbox.PollInterval(10*time.Millisecond), outbox.WithErrorHandler(func(error) {}))
	require.Eventually(t, func() bool { return ob.Stats().Scans >= 5 }, 10*time.Second, time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.NotContains(t, got, "b", "row 2 reached l while row 1, held elsewhere, holds l back")
}
