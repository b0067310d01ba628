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

// testTimeout bounds every wait of a test; it is generous on purpose (the
// machine is shared): it only turns a hang into a failure.
const testTimeout = 60 * time.Second

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// fast are options that keep retries short in tests.
var fast = []outbox.Option{outbox.Backoff(time.Millisecond, 5*time.Millisecond)}

func newOutbox[T any](t *testing.T, db *sql.DB, m *eventbus.EventManager[T], opts ...outbox.Option) *outbox.Outbox[T] {
	t.Helper()
	ob, err := outbox.New(testCtx(t), db, m, append(append([]outbox.Option{}, fast...), opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, ob.Close(context.Background()))
		assert.NoError(t, m.Close(context.Background()))
	})
	return ob
}

// inTx runs f in a transaction and commits it (commit) or rolls it back.
func inTx(t *testing.T, db *sql.DB, commit bool, f func(tx *sql.Tx)) {
	t.Helper()
	tx, err := db.BeginTx(testCtx(t), nil)
	require.NoError(t, err)
	f(tx)
	if commit {
		require.NoError(t, tx.Commit())
	} else {
		require.NoError(t, tx.Rollback())
	}
}

type got[T any] struct {
	name string
	id   string
	data T
}

// recorder is a listener that records what it gets.
type recorder[T any] struct {
	mu   sync.Mutex
	evs  []got[T]
	fail func(e eventbus.Event[T], n int) error // n: deliveries of this ID so far, this one included
	seen map[string]int
}

func (r *recorder[T]) handle(ctx context.Context, e eventbus.Event[T]) error {
	id, ok := outbox.EventID(ctx)
	if !ok {
		return errors.New("no EventID in the listener's context")
	}
	r.mu.Lock()
	if r.seen == nil {
		r.seen = map[string]int{}
	}
	r.seen[id]++
	n := r.seen[id]
	r.evs = append(r.evs, got[T]{e.Name, id, e.Data})
	f := r.fail
	r.mu.Unlock()
	if f != nil {
		return f(e, n)
	}
	return nil
}

func (r *recorder[T]) all() []got[T] {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]got[T](nil), r.evs...)
}

func (r *recorder[T]) data() []T {
	var out []T
	for _, g := range r.all() {
		out = append(out, g.data)
	}
	return out
}

func listen[T any](t *testing.T, m *eventbus.EventManager[T], pattern string, r *recorder[T], opts ...eventbus.ListenerOption) {
	t.Helper()
	_, err := m.RegisterListener(pattern, r.handle, opts...)
	require.NoError(t, err)
}

func TestCommittedDeliveredRolledBackNever(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[int]()
		var r recorder[int]
		listen(t, m, "order.>", &r)
		ob := newOutbox(t, db, m)
		for i := range 20 {
			inTx(t, db, i%2 == 0, func(tx *sql.Tx) {
				require.NoError(t, ob.Emit(ctx, tx, "order.created", i))
				require.NoError(t, ob.Emit(ctx, tx, "order.paid", i))
			})
		}
		require.NoError(t, ob.Flush(ctx))
		var want []int
		for i := 0; i < 20; i += 2 {
			want = append(want, i, i)
		}
		assert.Equal(t, want, r.data(), "every committed event once, in commit order; no rolled-back one")
		ids := map[string]bool{}
		for _, g := range r.all() {
			assert.Len(t, g.id, 32)
			assert.False(t, ids[g.id], "IDs differ between events")
			ids[g.id] = true
		}
		st := ob.Stats()
		assert.Equal(t, uint64(40), st.Emitted)
		assert.Equal(t, uint64(20), st.Delivered)
		require.NoError(t, ob.Close(ctx))
		assert.Equal(t, 0, countRows(t, db, "eventbus_outbox"), "delivered rows are deleted")
	})
}

func countRows(t *testing.T, db *sql.DB, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM "+table).Scan(&n))
	return n
}

func TestCommitOrderForOrderedListener(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[int]()
		var r recorder[int]
		listen(t, m, ">", &r, eventbus.Ordered())
		ob := newOutbox(t, db, m, outbox.BatchSize(7)) // many passes
		n := 0
		for tx := range 60 {
			inTx(t, db, true, func(txn *sql.Tx) {
				for range tx%4 + 1 {
					require.NoError(t, ob.Emit(ctx, txn, "seq.n", n))
					n++
				}
			})
		}
		require.NoError(t, ob.Flush(ctx))
		want := make([]int, n)
		for i := range want {
			want[i] = i
		}
		assert.Equal(t, want, r.data())
	})
}

func TestFailedEventRetriedWithSameIDThenDelivered(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[string]()
		flaky := recorder[string]{fail: func(e eventbus.Event[string], n int) error {
			if n < 3 {
				return fmt.Errorf("attempt %d fails", n)
			}
			return nil
		}}
		var other recorder[string]
		listen(t, m, "job.run", &flaky)
		listen(t, m, "job.run", &other)
		ob := newOutbox(t, db, m)
		inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "job.run", "x")) })
		require.NoError(t, ob.Flush(ctx))
		fl, ot := flaky.all(), other.all()
		require.Len(t, fl, 3, "two failures, then success")
		assert.Equal(t, fl[0].id, fl[2].id, "the same EventID on every attempt")
		assert.Len(t, ot, 1, "the listener that succeeded is not called again while another one fails")
		st := ob.Stats()
		assert.Equal(t, uint64(2), st.Failed)
		assert.Equal(t, uint64(1), st.Delivered)
		assert.Equal(t, uint64(0), st.DeadLetters)
	})
}

// The listeners that handled an event are recorded in its row: after Close
// and New (or a crash after the failure was recorded), only the listeners
// still to do get it.
func TestHandledListenersSurviveCloseAndNew(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		register := func(m *eventbus.EventManager[int], ok, flaky *recorder[int]) {
			listen(t, m, "h.h", ok, eventbus.Name("ok"))
			listen(t, m, "h.>", flaky, eventbus.Name("flaky"))
		}
		attempted := make(chan struct{}, 1)
		m1 := eventbus.New[int]()
		var ok1 recorder[int]
		flaky1 := recorder[int]{fail: func(eventbus.Event[int], int) error {
			select {
			case attempted <- struct{}{}:
			default:
			}
			return errors.New("down")
		}}
		register(m1, &ok1, &flaky1)
		ob1, err := outbox.New(ctx, db, m1, outbox.Backoff(time.Hour, time.Hour))
		require.NoError(t, err)
		inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob1.Emit(ctx, tx, "h.h", 1)) })
		<-attempted
		require.NoError(t, ob1.Close(ctx))
		require.NoError(t, m1.Close(ctx))
		var handled string
		require.NoError(t, db.QueryRow("SELECT handled FROM eventbus_outbox").Scan(&handled))
		assert.JSONEq(t, `{"done":["ok"],"fails":{"flaky":1}}`, handled)

		m2 := eventbus.New[int]()
		var ok2, flaky2 recorder[int]
		register(m2, &ok2, &flaky2)
		_, err = db.Exec("UPDATE eventbus_outbox SET next_at = 0")
		require.NoError(t, err)
		ob2 := newOutbox(t, db, m2)
		require.NoError(t, ob2.Flush(ctx))
		assert.Equal(t, []int{1}, flaky2.data(), "the listener still to do gets it")
		assert.Empty(t, ok2.data(), "the listener that handled it does not get it again")
		assert.Equal(t, ok1.all()[0].id, flaky2.all()[0].id)
		require.NoError(t, ob2.Close(ctx))
		assert.Equal(t, 0, countRows(t, db, "eventbus_outbox"))
	})
}

// A listener unregistered while its event waits for a retry is no longer
// waited for: the event is done.
func TestUnregisteredListenerNotWaitedFor(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[int]()
		var ok recorder[int]
		listen(t, m, "u.u", &ok)
		failed := make(chan struct{}, 1)
		gone, err := m.RegisterListener("u.u", func(context.Context, eventbus.Event[int]) error {
			select {
			case failed <- struct{}{}:
			default:
			}
			return errors.New("down")
		})
		require.NoError(t, err)
		ob := newOutbox(t, db, m, outbox.Backoff(50*time.Millisecond, 50*time.Millisecond), outbox.MaxAttempts(1000))
		inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "u.u", 1)) })
		<-failed
		gone.Unregister()
		require.NoError(t, ob.Flush(ctx))
		assert.Equal(t, []int{1}, ok.data())
		st := ob.Stats()
		assert.Equal(t, uint64(1), st.Delivered)
		assert.Zero(t, st.DeadLetters)
	})
}

func TestDeadLetterAfterMaxAttempts(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		reported := make(chan error, 10)
		m := eventbus.New[string](eventbus.WithErrorHandler(func(err error) { reported <- err }))
		boom := errors.New("boom")
		bad := recorder[string]{fail: func(eventbus.Event[string], int) error { return boom }}
		var after recorder[string]
		listen(t, m, "mail.send", &bad, eventbus.Ordered())
		listen(t, m, "mail.sent", &after)
		ob := newOutbox(t, db, m, outbox.MaxAttempts(3))
		inTx(t, db, true, func(tx *sql.Tx) {
			require.NoError(t, ob.Emit(ctx, tx, "mail.send", "a"))
			require.NoError(t, ob.Emit(ctx, tx, "mail.send", "b"))
			require.NoError(t, ob.Emit(ctx, tx, "mail.sent", "c"))
		})
		require.NoError(t, ob.Flush(ctx), "Flush returns once the events are given up")
		assert.Equal(t, []string{"a", "a", "a", "b", "b", "b"}, bad.data(), "b waits until a is given up")
		assert.Equal(t, []string{"c"}, after.data())
		for _, want := range []string{"a", "b"} {
			var err error
			select { // reported before Flush returned
			case err = <-reported:
			default:
				t.Fatal("dead letter not reported")
			}
			var dl *outbox.DeadLetter
			require.ErrorAs(t, err, &dl)
			assert.ErrorIs(t, err, outbox.ErrDeadLetter)
			assert.ErrorIs(t, err, boom)
			assert.Equal(t, "mail.send", dl.Name)
			assert.Equal(t, want, dl.Data)
			assert.Equal(t, 3, dl.Attempts)
			var le *eventbus.ListenerError
			require.ErrorAs(t, err, &le)
			assert.Equal(t, "mail.send#1", le.Listener, "reported as the listener given up")
			assert.Equal(t, "mail.send#1", dl.Listener)
			assert.Equal(t, "mail.send", le.Pattern)
			assert.Equal(t, want, le.Data)
			require.NotNil(t, le.Handle, "the listener, to replay with EmitTo")
			assert.Equal(t, "mail.send#1", le.Handle.Name())
		}
		assert.Equal(t, uint64(2), ob.Stats().DeadLetters)
		st := m.Stats()
		assert.Equal(t, uint64(1+2*3), st.Emitted, "the EventManager counts the deliveries, not the reports")
		var dead int
		require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM eventbus_outbox WHERE state = 2").Scan(&dead))
		assert.Equal(t, 2, dead, "dead letters stay in the table, marked")
	})
}

// A failing listener holds back the later events it listens to (commit order
// for it), but not the events of other listeners: the failing listener only
// succeeds once the other listener has received its later events, which
// could not happen if they were held back.
func TestFailureHoldsBackOnlyItsListener(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[int]()
		bDone := make(chan struct{})
		var b recorder[int]
		b.fail = func(e eventbus.Event[int], _ int) error {
			if e.Data == 4 {
				close(bDone)
			}
			return nil
		}
		a := recorder[int]{fail: func(e eventbus.Event[int], _ int) error {
			if e.Data != 1 {
				return nil
			}
			select {
			case <-bDone:
				return nil
			default:
				return errors.New("not yet")
			}
		}}
		listen(t, m, "a.*", &a, eventbus.Ordered())
		listen(t, m, "b.*", &b, eventbus.Ordered())
		ob := newOutbox(t, db, m, outbox.MaxAttempts(1000))
		for _, ev := range []struct {
			name string
			n    int
		}{{"a.x", 1}, {"a.x", 2}, {"b.x", 3}, {"a.y", 5}, {"b.y", 4}} {
			inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, ev.name, ev.n)) })
		}
		require.NoError(t, ob.Flush(ctx))
		assert.Equal(t, []int{3, 4}, b.data())
		ad := a.data()
		require.GreaterOrEqual(t, len(ad), 4)
		last := ad[len(ad)-3:]
		assert.Equal(t, []int{1, 2, 5}, last, "a gets 1 (after retries), then 2 and 5, in commit order")
		for _, v := range ad[:len(ad)-3] {
			assert.Equal(t, 1, v, "only event 1 is retried")
		}
		assert.Equal(t, uint64(0), ob.Stats().DeadLetters)
	})
}

// An Ordered listener's failure holds back the later events for that
// listener only: another listener of the same events gets them at once,
// once each, in commit order, while the failing one gets them after its
// retry succeeded. The failing listener succeeds only once the other one
// has got the last event, which could not happen if it were held back too.
func TestOrderedFailureHoldsBackOnlyThatListener(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[int]()
		otherDone := make(chan struct{})
		other := recorder[int]{fail: func(e eventbus.Event[int], _ int) error {
			if e.Data == 3 {
				close(otherDone)
			}
			return nil
		}}
		failing := recorder[int]{fail: func(e eventbus.Event[int], _ int) error {
			if e.Data != 1 {
				return nil
			}
			select {
			case <-otherDone:
				return nil
			default:
				return errors.New("not yet")
			}
		}}
		listen(t, m, "o.*", &failing, eventbus.Ordered(), eventbus.Name("failing"))
		listen(t, m, "o.*", &other, eventbus.Ordered(), eventbus.Name("other"))
		ob := newOutbox(t, db, m, outbox.MaxAttempts(1000))
		for i := 1; i <= 3; i++ {
			inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "o.x", i)) })
		}
		require.NoError(t, ob.Flush(ctx))
		assert.Equal(t, []int{1, 2, 3}, other.data(), "not held back, once each")
		fd := failing.data()
		require.GreaterOrEqual(t, len(fd), 4)
		assert.Equal(t, []int{1, 2, 3}, fd[len(fd)-3:], "2 and 3 only after 1 succeeded: commit order")
		for _, v := range fd[:len(fd)-3] {
			assert.Equal(t, 1, v, "only event 1 is retried")
		}
		st := ob.Stats()
		assert.Equal(t, uint64(3), st.Delivered)
		assert.Zero(t, st.DeadLetters)
	})
}

// A plain (not Ordered) listener's failure holds back nobody, not even
// itself: it gets the later events before its failed one is retried, and
// the other listeners get every event once, in commit order.
func TestPlainFailureHoldsBackNobody(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[int]()
		var mu sync.Mutex
		sawLast := false
		plain := recorder[int]{fail: func(e eventbus.Event[int], _ int) error {
			mu.Lock()
			defer mu.Unlock()
			if e.Data == 3 {
				sawLast = true
			}
			if e.Data == 1 && !sawLast {
				return errors.New("not before 3")
			}
			return nil
		}}
		var ordered recorder[int]
		listen(t, m, "p.*", &plain)
		listen(t, m, ">", &ordered, eventbus.Ordered())
		ob := newOutbox(t, db, m, outbox.MaxAttempts(1000))
		inTx(t, db, true, func(tx *sql.Tx) {
			for i := 1; i <= 3; i++ {
				require.NoError(t, ob.Emit(ctx, tx, "p.x", i))
			}
		})
		require.NoError(t, ob.Flush(ctx))
		assert.Equal(t, []int{1, 2, 3}, ordered.data(), "the other listener: once each, in order")
		pd := plain.data()
		require.GreaterOrEqual(t, len(pd), 4)
		assert.Equal(t, []int{1, 2, 3}, pd[:3], "the later events reach the failing plain listener before its retry")
		for _, v := range pd[3:] {
			assert.Equal(t, 1, v, "then only event 1 again")
		}
		assert.Zero(t, ob.Stats().DeadLetters)
	})
}

func TestBadInput(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[any]()
		ob := newOutbox(t, db, m)
		_, err := eventbus.NewTopic[int](m, "typed.n")
		require.NoError(t, err)

		assert.ErrorIs(t, ob.Emit(ctx, nil, "a.b", 1), outbox.ErrNilTx)
		inTx(t, db, true, func(tx *sql.Tx) {
			assert.ErrorIs(t, ob.Emit(ctx, tx, "a..b", 1), eventbus.ErrInvalidName)
			assert.ErrorIs(t, ob.Emit(ctx, tx, "a.*", 1), eventbus.ErrInvalidName)
			assert.ErrorIs(t, ob.Emit(ctx, tx, "a.b", make(chan int)), outbox.ErrEncode)
			assert.ErrorIs(t, ob.Emit(ctx, tx, "typed.n", "not an int"), eventbus.ErrTypeMismatch)
			// The transaction is untouched: still usable.
			_, err := tx.Exec("SELECT 1")
			assert.NoError(t, err)
		})
		assert.Equal(t, 0, countRows(t, db, "eventbus_outbox"), "nothing written")
		assert.Equal(t, uint64(0), ob.Stats().Emitted)

		_, err = outbox.New(ctx, nil, m)
		assert.ErrorIs(t, err, outbox.ErrInvalidOption)
		for _, opt := range []outbox.Option{
			outbox.Table("x; DROP TABLE y"), outbox.Table(""), outbox.MaxAttempts(0), outbox.Backoff(0, 1),
			outbox.Backoff(2, 1), outbox.PollInterval(0), outbox.BatchSize(0), outbox.WithCodec(nil),
		} {
			_, err := outbox.New(ctx, db, eventbus.New[int](), opt)
			assert.ErrorIs(t, err, outbox.ErrInvalidOption)
		}
	})
}

func TestTableOptionAndLayoutCheck(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[int]()
		var r recorder[int]
		listen(t, m, "x.y", &r)
		ob := newOutbox(t, db, m, outbox.Table("my_events"))
		inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "x.y", 7)) })
		require.NoError(t, ob.Flush(ctx))
		assert.Equal(t, []int{7}, r.data())
		require.NoError(t, ob.Close(ctx))
		assert.Equal(t, 0, countRows(t, db, "my_events"))

		_, err := db.Exec("CREATE TABLE other_layout (a INTEGER)")
		require.NoError(t, err)
		_, err = outbox.New(ctx, db, eventbus.New[int](), outbox.Table("other_layout"))
		assert.ErrorIs(t, err, outbox.ErrUnsupported)
	})
}

type order struct {
	ID    int     `json:"id"`
	Total float64 `json:"total"`
}

// For an EventManager[any], a name declared with NewTopic decodes into its
// topic's type; another name decodes as encoding/json decodes into any.
func TestTopicTypeDecoded(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[any]()
		topic, err := eventbus.NewTopic[order](m, "order.created")
		require.NoError(t, err)
		typed := make(chan order, 1)
		_, err = topic.Listen(func(_ context.Context, e eventbus.Event[order]) error { typed <- e.Data; return nil })
		require.NoError(t, err)
		var untyped recorder[any]
		listen(t, m, "note.>", &untyped)
		ob := newOutbox(t, db, m)
		inTx(t, db, true, func(tx *sql.Tx) {
			require.NoError(t, ob.Emit(ctx, tx, "order.created", order{ID: 3, Total: 9.5}))
			require.NoError(t, ob.Emit(ctx, tx, "note.added", map[string]any{"k": "v"}))
		})
		require.NoError(t, ob.Flush(ctx))
		assert.Equal(t, order{ID: 3, Total: 9.5}, <-typed)
		assert.Equal(t, []any{map[string]any{"k": "v"}}, untyped.data())
	})
}

// reverse is a codec that is not JSON: data are strings stored reversed.
type reverse struct{}

func (reverse) Marshal(v any) ([]byte, error) {
	s, ok := v.(string)
	if !ok {
		return nil, errors.New("reverse: strings only")
	}
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return b, nil
}

func (reverse) Unmarshal(data []byte, v any) error {
	s, _ := reverse{}.Marshal(string(data))
	*(v.(*string)) = string(s)
	return nil
}

func TestCustomCodec(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[string]()
		var r recorder[string]
		listen(t, m, "s.s", &r)
		ob := newOutbox(t, db, m, outbox.WithCodec(reverse{}))
		inTx(t, db, true, func(tx *sql.Tx) {
			require.NoError(t, ob.Emit(ctx, tx, "s.s", "abc"))
			var raw []byte
			require.NoError(t, tx.QueryRow("SELECT payload FROM eventbus_outbox").Scan(&raw))
			assert.Equal(t, "cba", string(raw), "stored with the codec")
			assert.ErrorIs(t, ob.Emit(ctx, tx, "s.s", ""), nil)
		})
		require.NoError(t, ob.Flush(ctx))
		assert.Equal(t, []string{"abc", ""}, r.data())
	})
}

// A corrupt row (undecodable payload, invalid name) is reported as a dead
// letter after MaxAttempts and never blocks the rows behind it.
func TestCorruptRowsSkipped(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		reported := make(chan error, 10)
		m := eventbus.New[order](eventbus.WithErrorHandler(func(err error) { reported <- err }))
		var r recorder[order]
		listen(t, m, ">", &r, eventbus.Ordered())
		// Create the table, stopped at once, then write rows by hand.
		pre, err := outbox.New(ctx, db, eventbus.New[order](), outbox.PollInterval(time.Hour))
		require.NoError(t, err)
		require.NoError(t, pre.Close(ctx))
		inTx(t, db, true, func(tx *sql.Tx) {
			for _, q := range []string{
				"INSERT INTO eventbus_outbox (id, name, payload) VALUES ('bad1', 'o.c', 'not json')",
				"INSERT INTO eventbus_outbox (id, name, payload) VALUES ('bad2', 'o..c', '{}')",
				"INSERT INTO eventbus_outbox (id, name, payload) VALUES ('good', 'o.c', '{\"id\":1}')",
			} {
				_, err := tx.Exec(q)
				require.NoError(t, err)
			}
		})
		ob := newOutbox(t, db, m, outbox.MaxAttempts(4))
		require.NoError(t, ob.Flush(ctx))
		require.NoError(t, m.Flush(ctx))
		assert.Equal(t, []order{{ID: 1}}, r.data())
		for range 2 {
			err := <-reported
			var dl *outbox.DeadLetter
			require.ErrorAs(t, err, &dl)
			assert.ErrorIs(t, err, outbox.ErrDecode)
			assert.Equal(t, 4, dl.Attempts)
			assert.Nil(t, dl.Data)
		}
		st := ob.Stats()
		assert.Equal(t, uint64(8), st.DecodeErrors)
		assert.Equal(t, uint64(2), st.DeadLetters)
	})
}

// Close leaves undelivered events in the table; the next New delivers them
// with the same EventID. Emit and Flush fail with ErrClosed after Close.
func TestCloseThenNewDeliversLeftoversSameID(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m1 := eventbus.New[int]()
		attempted := make(chan struct{}, 1)
		failing := recorder[int]{fail: func(eventbus.Event[int], int) error {
			select {
			case attempted <- struct{}{}:
			default:
			}
			return errors.New("down")
		}}
		listen(t, m1, "n.n", &failing)
		ob1, err := outbox.New(ctx, db, m1, outbox.Backoff(time.Hour, time.Hour))
		require.NoError(t, err)
		inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob1.Emit(ctx, tx, "n.n", 1)) })
		<-attempted // the first attempt failed; the next one is an hour away
		require.NoError(t, ob1.Close(ctx))
		require.NoError(t, ob1.Close(ctx), "idempotent")
		inTx(t, db, true, func(tx *sql.Tx) { assert.ErrorIs(t, ob1.Emit(ctx, tx, "n.n", 2), outbox.ErrClosed) })
		assert.ErrorIs(t, ob1.Flush(ctx), outbox.ErrClosed)
		require.NoError(t, m1.Close(ctx))
		assert.Equal(t, 1, countRows(t, db, "eventbus_outbox"), "left in the table")

		m2 := eventbus.New[int]()
		var ok recorder[int]
		listen(t, m2, "n.n", &ok)
		// Retries keep their time across New: make this one due now.
		_, err = db.Exec("UPDATE eventbus_outbox SET next_at = 0")
		require.NoError(t, err)
		ob2 := newOutbox(t, db, m2)
		require.NoError(t, ob2.Flush(ctx))
		require.Len(t, ok.all(), 1)
		assert.Equal(t, failing.all()[0].id, ok.all()[0].id, "the same EventID across Close and New")
	})
}

// Flush does not wait for events of transactions still open.
func TestFlushIgnoresOpenTransactions(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[int]()
		var r recorder[int]
		listen(t, m, "f.f", &r)
		ob := newOutbox(t, db, m)
		inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "f.f", 1)) })
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, ob.Emit(ctx, tx, "f.f", 2))
		require.NoError(t, ob.Flush(ctx), "returns with a transaction open")
		assert.Equal(t, []int{1}, r.data())
		require.NoError(t, tx.Commit())
		require.NoError(t, ob.Flush(ctx))
		assert.Equal(t, []int{1, 2}, r.data())
	})
}

func TestReentrantFlushAndClose(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[int]()
		var ob *outbox.Outbox[int]
		errs := make(chan error, 2)
		_, err := m.RegisterListener("r.r", func(ctx context.Context, e eventbus.Event[int]) error {
			errs <- ob.Flush(ctx)
			errs <- ob.Close(ctx)
			return nil
		})
		require.NoError(t, err)
		ob = newOutbox(t, db, m)
		inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "r.r", 1)) })
		assert.ErrorIs(t, <-errs, eventbus.ErrReentrant)
		assert.ErrorIs(t, <-errs, eventbus.ErrReentrant)
		require.NoError(t, ob.Close(ctx), "the relay stopped")
	})
}

// Close whose context ends first cancels the running listener's context.
func TestCloseGivesUp(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[int]()
		entered := make(chan struct{})
		_, err := m.RegisterListener("s.s", func(ctx context.Context, e eventbus.Event[int]) error {
			close(entered)
			<-ctx.Done()
			return ctx.Err()
		})
		require.NoError(t, err)
		ob := newOutbox(t, db, m)
		inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "s.s", 1)) })
		<-entered
		short, cancel := context.WithCancel(ctx)
		cancel()
		assert.ErrorIs(t, ob.Close(short), context.Canceled)
		require.NoError(t, ob.Close(ctx), "then exits")
		assert.Equal(t, 1, countRows(t, db, "eventbus_outbox"), "not delivered: left in the table")
	})
}

// A failed event waits out its backoff (between half and all of it) before
// the next attempt. The durations are the point here.
func TestRetryWaitsBackoff(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[int]()
		var mu sync.Mutex
		var at []time.Time
		_, err := m.RegisterListener("b.b", func(context.Context, eventbus.Event[int]) error {
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Now())
			if len(at) < 3 {
				return errors.New("fail")
			}
			return nil
		})
		require.NoError(t, err)
		ob := newOutbox(t, db, m, outbox.Backoff(60*time.Millisecond, 120*time.Millisecond))
		inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "b.b", 1)) })
		require.NoError(t, ob.Flush(ctx))
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, at, 3)
		assert.GreaterOrEqual(t, at[1].Sub(at[0]), 30*time.Millisecond, "first backoff: half of 60ms at least")
		assert.GreaterOrEqual(t, at[2].Sub(at[1]), 60*time.Millisecond, "second backoff: half of 120ms at least")
	})
}

// A corrupt row waiting for its next attempt is not forgotten while the rows
// after it are delivered (on SQLite, the relay reads above what it has
// delivered): it is still given up and reported, and Flush returns.
func TestCorruptRowNotSkippedByLaterDeliveries(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		reported := make(chan error, 10)
		m := eventbus.New[int](eventbus.WithErrorHandler(func(err error) { reported <- err }))
		var r recorder[int]
		listen(t, m, "g.g", &r)
		pre, err := outbox.New(ctx, db, eventbus.New[int](), outbox.PollInterval(time.Hour))
		require.NoError(t, err)
		require.NoError(t, pre.Close(ctx))
		_, err = db.Exec("INSERT INTO eventbus_outbox (id, name, payload) VALUES ('bad', 'g.g', 'not json')")
		require.NoError(t, err)
		ob := newOutbox(t, db, m, outbox.MaxAttempts(3), outbox.Backoff(30*time.Millisecond, 30*time.Millisecond))
		for i := range 20 { // many passes while the corrupt row waits
			inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "g.g", i)) })
			time.Sleep(time.Millisecond)
		}
		require.NoError(t, ob.Flush(ctx))
		assert.Len(t, r.data(), 20)
		require.NoError(t, m.Flush(ctx))
		select { // ob.Flush waited for the report to be handed over, m.Flush for the handler
		case err := <-reported:
			assert.ErrorIs(t, err, outbox.ErrDecode)
		default:
			t.Fatal("the corrupt row was not reported")
		}
		assert.Equal(t, uint64(1), ob.Stats().DeadLetters)
	})
}

// A table made by the previous version (no column handled) is migrated by
// New: the column is added, and its pending rows count as handled by
// nobody, so every listener gets them.
func TestOldTableMigrated(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		seq, blob := "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"
		if db.QueryRow("SELECT sqlite_version()").Scan(new(string)) != nil {
			seq, blob = "BIGSERIAL PRIMARY KEY", "BYTEA"
		}
		_, err := db.Exec(`CREATE TABLE old_outbox (
	seq ` + seq + `,
	id TEXT NOT NULL,
	name TEXT NOT NULL,
	payload ` + blob + ` NOT NULL,
	state SMALLINT NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_at BIGINT NOT NULL DEFAULT 0,
	held_for TEXT NOT NULL DEFAULT '',
	last_error TEXT NOT NULL DEFAULT '')`)
		require.NoError(t, err)
		_, err = db.Exec(`INSERT INTO old_outbox (id, name, payload, attempts, held_for, last_error)
	VALUES ('old1', 'm.m', '5', 1, 'm.m#1` + "\t" + `m.m', 'an old failure')`)
		require.NoError(t, err)
		m := eventbus.New[int]()
		var a, b recorder[int]
		listen(t, m, "m.m", &a)
		listen(t, m, "m.>", &b)
		ob := newOutbox(t, db, m, outbox.Table("old_outbox"))
		inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "m.m", 6)) })
		require.NoError(t, ob.Flush(ctx))
		assert.Equal(t, []int{5, 6}, a.data())
		assert.Equal(t, []int{5, 6}, b.data())
		assert.Equal(t, "old1", a.all()[0].id)
		require.NoError(t, ob.Close(ctx))
		assert.Equal(t, 0, countRows(t, db, "old_outbox"))
		var n int
		require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM old_outbox WHERE handled = ''").Scan(&n), "the column exists")
	})
}

// Listeners sharing a name count as one: when one of them fails, both get
// the event again; it is done once both returned nil in one attempt.
func TestListenersSharingANameCountAsOne(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB) {
		ctx := testCtx(t)
		m := eventbus.New[int]()
		var ok recorder[int]
		flaky := recorder[int]{fail: func(_ eventbus.Event[int], n int) error {
			if n == 1 {
				return errors.New("first attempt fails")
			}
			return nil
		}}
		listen(t, m, "s.s", &ok, eventbus.Name("same"))
		listen(t, m, "s.*", &flaky, eventbus.Name("same"))
		ob := newOutbox(t, db, m)
		inTx(t, db, true, func(tx *sql.Tx) { require.NoError(t, ob.Emit(ctx, tx, "s.s", 1)) })
		require.NoError(t, ob.Flush(ctx))
		assert.Equal(t, []int{1, 1}, ok.data(), "called again with the one of its name that failed")
		assert.Equal(t, []int{1, 1}, flaky.data())
		st := ob.Stats()
		assert.Equal(t, uint64(1), st.Failed)
		assert.Equal(t, uint64(1), st.Delivered)
	})
}
