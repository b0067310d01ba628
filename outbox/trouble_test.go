package outbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/outbox"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Close that gives up on a running listener leaves for the next New only
// what was not delivered: the event being delivered. The pass's 99 earlier
// events had returned nil; their rows are deleted (and, on PostgreSQL, the
// pass committed), instead of being delivered again by the next New. The
// relay used to settle the pass with the context that Close cancels.
func TestCloseThatGivesUpKeepsWhatWasDelivered(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		const n = 100
		ctx := testCtx(t)
		var mu sync.Mutex
		count := map[int]int{}
		last := make(chan struct{})
		handler := func(block bool) func(context.Context, eventbus.Event[int]) error {
			return func(lctx context.Context, e eventbus.Event[int]) error {
				if block && e.Data == n-1 {
					close(last) // the 99 before it have returned nil
					<-lctx.Done()
					return lctx.Err()
				}
				mu.Lock()
				count[e.Data]++
				mu.Unlock()
				return nil
			}
		}
		m := eventbus.New[int]()
		_, err := m.RegisterListener("k.*", handler(true), eventbus.Name("l"))
		require.NoError(t, err)
		ob, err := outbox.New(ctx, db, m, outbox.PollInterval(time.Hour))
		require.NoError(t, err)
		inTx(t, db, true, func(tx *sql.Tx) {
			for i := range n {
				require.NoError(t, ob.Emit(ctx, tx, "k.x", i))
			}
		})
		<-last
		gone, cancel := context.WithCancel(ctx)
		cancel()
		require.ErrorIs(t, ob.Close(gone), context.Canceled)
		require.NoError(t, ob.Close(ctx), "the relay exits once the listener returns")
		require.NoError(t, m.Close(ctx))
		assert.Equal(t, 1, countRows(t, db, "eventbus_outbox"), "only the event being delivered is left")

		m2 := eventbus.New[int]()
		_, err = m2.RegisterListener("k.*", handler(false), eventbus.Name("l"))
		require.NoError(t, err)
		ob2 := newOutbox(t, db, m2)
		require.NoError(t, ob2.Flush(ctx))
		mu.Lock()
		defer mu.Unlock()
		for i := range n {
			assert.Equal(t, 1, count[i], "event %d", i)
		}
	})
}

// partition is a TCP proxy to PostgreSQL that, once cut, forwards nothing
// more, and neither refuses nor resets: a network partition.
type partition struct {
	ln    net.Listener
	cut   atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newPartition(t *testing.T, target string) *partition {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &partition{ln: ln}
	keep := func(c net.Conn) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.conns = append(p.conns, c)
	}
	pipe := func(dst, src net.Conn) {
		defer p.wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if err != nil {
				return
			}
			if p.cut.Load() {
				continue // swallowed: never answered
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			keep(c)
			if p.cut.Load() {
				continue // accepted, never answered
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			keep(s)
			p.wg.Add(2)
			go pipe(s, c)
			go pipe(c, s)
		}
	}()
	t.Cleanup(p.heal)
	return p
}

// partitionedDB opens a pool on a fresh PostgreSQL database through a
// partition, still whole.
func partitionedDB(t *testing.T) (*partition, *sql.DB) {
	u, err := url.Parse(pgDatabase(t))
	require.NoError(t, err)
	p := newPartition(t, u.Host)
	u.Host = p.ln.Addr().String()
	return p, openPgx(t, u.String())
}

// heal ends the partition by resetting every connection, and waits for the
// proxy's goroutines.
func (p *partition) heal() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Close does not wait for a database that stopped answering while the
// relay polls: the pass had claimed nothing, so Close abandons it. It used
// to wait, with context.Background(), until the connections were reset.
func TestCloseDoesNotWaitForAnUnansweringDatabase(t *testing.T) {
	p, db := partitionedDB(t)
	ctx := testCtx(t)
	m := eventbus.New[int]()
	var r recorder[int]
	listen(t, m, "p.*", &r)
	ob, err := outbox.New(ctx, db, m, outbox.PollInterval(10*time.Millisecond))
	require.NoError(t, err)
	inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "p.x", 1)) })
	require.NoError(t, ob.Flush(ctx))
	p.cut.Store(true)
	// A pass that starts from now on waits for an answer that never comes:
	// wait for one to start, or, if none starts within a second although
	// the relay polls every 10 ms, it is the one already waiting.
	quiet := time.Now().Add(time.Second)
	for scans := ob.Stats().Scans; ob.Stats().Scans == scans && time.Now().Before(quiet); {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- ob.Close(context.Background()) }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-ctx.Done():
		p.heal()
		t.Fatalf("Close(context.Background()) did not return while the database did not answer (it returned %v once the connections were reset)", <-closed)
	}
	require.NoError(t, m.Close(ctx))
	assert.Equal(t, []int{1}, r.data())
}

// A pass whose commit is refused every time (here a trigger refuses the
// DELETE; a role without DELETE does the same) is as a crash: its events
// are delivered again, but the relay backs off as from an idle pass, and
// each refusal is reported. It used to count as progress, and so polled
// again at once: some 350 passes a second, each delivering its batch again.
func TestRefusedCommitBacksOff(t *testing.T) {
	db := openPostgres(t)
	ctx := testCtx(t)
	var calls atomic.Int64
	reports := make(chan error, 100)
	m := eventbus.New[int]()
	_, err := m.RegisterListener("z.*", func(context.Context, eventbus.Event[int]) error { calls.Add(1); return nil })
	require.NoError(t, err)
	ob := newOutbox(t, db, m, outbox.PollInterval(time.Hour), outbox.WithErrorHandler(func(err error) {
		select {
		case reports <- err:
		default:
		}
	}))
	for _, q := range []string{
		`CREATE FUNCTION nodel() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no delete'; END $$`,
		`CREATE TRIGGER nodel BEFORE DELETE ON eventbus_outbox FOR EACH ROW EXECUTE FUNCTION nodel()`,
	} {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err)
	}
	inTx(t, db, true, func(tx *sql.Tx) {
		for i := range 10 {
			require.NoError(t, ob.Emit(ctx, tx, "z.x", i))
		}
	})
	err = <-reports
	assert.ErrorContains(t, err, "no delete")
	before := ob.Stats().Scans
	// The duration is the point: after a refused commit the relay waits
	// 250 µs, then twice as long after each pass that makes no progress,
	// up to PollInterval (an hour): about 13 passes in 2 s. It used to make
	// some 700.
	time.Sleep(2 * time.Second)
	passes := ob.Stats().Scans - before
	assert.Less(t, passes, uint64(60), "passes in 2 s after a refused commit")
	assert.LessOrEqual(t, calls.Load(), int64(10*(passes+1)), "each pass delivers its batch again, no more")
	assert.Equal(t, 10, countRows(t, db, "eventbus_outbox"))
}

// A pass that outlasts the server's idle_in_transaction_session_timeout
// (listeners run inside it: 32 rows of 20 ms against 300 ms) is ended by the
// server, and its commit fails. The relay then claims half as many rows, so
// that a pass gets short enough to commit, and every event is delivered. It
// used to claim the same batch again and again: the first 32 events were
// delivered over and over and the 32 behind them never.
func TestPassEndedByTheServerShrinksUntilItCommits(t *testing.T) {
	dsn := pgDatabase(t)
	admin := openPgx(t, dsn)
	ctx := testCtx(t)
	name := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	_, err := admin.ExecContext(ctx, "ALTER DATABASE "+name+" SET idle_in_transaction_session_timeout = '300ms'")
	require.NoError(t, err)
	db := openPgx(t, dsn) // its sessions start after the ALTER
	var mu sync.Mutex
	count := map[int]int{}
	var ended atomic.Int64
	m := eventbus.New[int]()
	_, err = m.RegisterListener("i.*", func(_ context.Context, e eventbus.Event[int]) error {
		time.Sleep(20 * time.Millisecond) // the duration is the point
		mu.Lock()
		count[e.Data]++
		mu.Unlock()
		return nil
	}, eventbus.Name("slow"))
	require.NoError(t, err)
	ob := newOutbox(t, db, m, outbox.BatchSize(32), outbox.PollInterval(50*time.Millisecond),
		outbox.WithErrorHandler(func(err error) {
			if strings.Contains(err.Error(), "committing a pass") {
				ended.Add(1)
			}
		}))
	inTx(t, db, true, func(tx *sql.Tx) {
		for i := range 64 {
			require.NoError(t, ob.Emit(ctx, tx, "i.x", i))
		}
	})
	require.NoError(t, ob.Flush(ctx))
	// Flush counts rows delivered by a pass not yet committed as done:
	// should the server end that pass, they are delivered again.
	require.Eventually(t, func() bool { return countRows(t, admin, "eventbus_outbox") == 0 }, 30*time.Second, 10*time.Millisecond)
	assert.Positive(t, ended.Load(), "the server ended a pass at least once")
	mu.Lock()
	defer mu.Unlock()
	for i := range 64 {
		assert.Positive(t, count[i], "event %d", i)
	}
}

// The database stops answering while the pass records a listener's failure,
// after Close has started: the relay gives that work finishGrace (5 s) from
// the listener's return, then exits, leaving the row to the next relay.
// Between the claim and the end of the row loop nothing bounded it: the
// relay waited until the connection died.
func TestCloseBoundsAPassWhoseDatabaseStopsAnswering(t *testing.T) {
	p, db := partitionedDB(t)
	ctx := testCtx(t)
	m := eventbus.New[int]()
	var ob *outbox.Outbox[int]
	returning := make(chan struct{})
	_, err := m.RegisterListener("p.*", func(lctx context.Context, _ eventbus.Event[int]) error {
		p.cut.Store(true)
		// From a listener Close cannot wait for its caller: it stops the
		// relay and returns at once.
		assert.ErrorIs(t, ob.Close(lctx), eventbus.ErrReentrant)
		close(returning)
		return errors.New("fail") // recorded through the cut connection
	}, eventbus.Name("l"))
	require.NoError(t, err)
	ob, err = outbox.New(ctx, db, m, outbox.PollInterval(10*time.Millisecond))
	require.NoError(t, err)
	inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "p.x", 1)) })
	<-returning
	require.NoError(t, ob.Close(ctx), "the relay exits within the grace")
	require.NoError(t, m.Close(ctx))
}

// slowCodec decodes like JSON, but its first decoding signals decoding and
// takes 300 ms: Close starts then, between the relay's check for Close and
// the listener call.
type slowCodec struct {
	once     sync.Once
	decoding chan struct{}
}

func (c *slowCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }
func (c *slowCodec) Unmarshal(b []byte, v any) error {
	c.once.Do(func() { close(c.decoding); time.Sleep(300 * time.Millisecond) })
	return json.Unmarshal(b, v)
}

// A Close that starts while the relay decodes a row, just before the
// listener call, either keeps the call from starting (the row stays) or
// waits for it to return before the 5 s grace starts (the row is deleted):
// never both a call and its row left. The grace used to start there, and a
// listener taking longer than it lost its pass: delivered, and delivered
// again by the next relay.
func TestCloseStartingBeforeAListenerCallDoesNotCutItsPass(t *testing.T) {
	db := openPostgres(t)
	ctx := testCtx(t)
	m := eventbus.New[int]()
	var calls atomic.Int32
	_, err := m.RegisterListener("p.*", func(context.Context, eventbus.Event[int]) error {
		calls.Add(1)
		time.Sleep(6 * time.Second) // the duration is the point: longer than the grace
		return nil
	}, eventbus.Name("l"))
	require.NoError(t, err)
	c := &slowCodec{decoding: make(chan struct{})}
	ob, err := outbox.New(ctx, db, m, outbox.PollInterval(10*time.Millisecond), outbox.WithCodec(c))
	require.NoError(t, err)
	inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "p.x", 1)) })
	<-c.decoding
	require.NoError(t, ob.Close(ctx))
	require.NoError(t, m.Close(ctx))
	assert.Equal(t, 1, int(calls.Load())+countRows(t, db, "eventbus_outbox"), "a call and its row are never both there")
}
