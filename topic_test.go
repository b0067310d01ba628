package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type created struct{ ID int }
type paid struct {
	ID     int
	Amount int
}

func newTopic[T any](t *testing.T, m *eventbus.EventManager[any], name string) *eventbus.Topic[T] {
	t.Helper()
	tp, err := eventbus.NewTopic[T](m, name)
	require.NoError(t, err, "NewTopic(%q)", name)
	return tp
}

func TestNewTopicRefusesInvalidAndWildcardNames(t *testing.T) {
	m := newManager[any](t)
	for _, name := range []string{"", "order..created", "order.*", "order.>", ">", "order created"} {
		tp, err := eventbus.NewTopic[int](m, name)
		assert.ErrorIs(t, err, eventbus.ErrInvalidName, "name %q", name)
		assert.Nil(t, tp, "name %q", name)
	}
	_, err := eventbus.NewTopic[int](nil, "order.created")
	assert.ErrorIs(t, err, eventbus.ErrInvalidOption, "nil manager")
}

func TestNewTopicRedeclaration(t *testing.T) {
	m := newManager[any](t)
	a := newTopic[*created](t, m, "order.created")
	b := newTopic[*created](t, m, "order.created")
	assert.Same(t, a, b, "same name and type: the same Topic")
	assert.Equal(t, "order.created", b.Name())

	other, err := eventbus.NewTopic[paid](m, "order.created")
	require.ErrorIs(t, err, eventbus.ErrTypeMismatch)
	assert.Nil(t, other)
	assert.Contains(t, err.Error(), "*eventbus_test.created", "names the declared type")
	assert.Contains(t, err.Error(), "eventbus_test.paid", "names the other type")
	_, err = eventbus.NewTopic[created](m, "order.created")
	assert.ErrorIs(t, err, eventbus.ErrTypeMismatch, "a value is not its pointer")

	// Another manager has its own declarations.
	m2 := newManager[any](t)
	newTopic[paid](t, m2, "order.created")
}

func TestNewTopicConcurrent(t *testing.T) {
	m := newManager[any](t)
	const n = 16
	topics := make([]*eventbus.Topic[*created], n)
	ints := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tp, err := eventbus.NewTopic[*created](m, "order.created")
			assert.NoError(t, err)
			topics[i] = tp
			_, ints[i] = eventbus.NewTopic[int](m, "order.created")
		}()
	}
	wg.Wait()
	for i := range n {
		assert.Same(t, topics[0], topics[i], "one Topic for every declaration of the same type")
		assert.ErrorIs(t, ints[i], eventbus.ErrTypeMismatch)
	}

	// Racing declarations of different types: exactly one type wins.
	var wins atomic.Int64
	for i := range n {
		name := fmt.Sprintf("race.%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := eventbus.NewTopic[int](m, name); err == nil {
				wins.Add(1)
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := eventbus.NewTopic[string](m, name); err == nil {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(n), wins.Load(), "one declaration per name")
}

// counter is a listener on the manager (Event[any]) that records what it
// receives.
type anyRecorder struct {
	mu   sync.Mutex
	data []any
}

func (r *anyRecorder) handle(_ context.Context, e eventbus.Event[any]) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.data = append(r.data, e.Data)
	return nil
}

func (r *anyRecorder) got() []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]any(nil), r.data...)
}

func TestTypeMismatchAtEveryEntryPoint(t *testing.T) {
	m := newManager[any](t)
	ctx := context.Background()
	newTopic[*created](t, m, "order.created")

	// Before any listener, and with a plain and a wildcard listener.
	for _, listeners := range []bool{false, true} {
		var plain, wild anyRecorder
		if listeners {
			_, err := m.RegisterListener("order.created", plain.handle)
			require.NoError(t, err)
			_, err = m.RegisterListener("order.>", wild.handle)
			require.NoError(t, err)
		}
		for _, bad := range []any{created{ID: 1}, paid{ID: 1}, 7, nil} {
			before := m.Stats().Rejected
			err := m.Emit(ctx, "order.created", bad)
			assert.ErrorIs(t, err, eventbus.ErrTypeMismatch, "Emit %T", bad)
			assert.ErrorContains(t, err, "*eventbus_test.created", "names the declared type")
			assert.ErrorIs(t, m.TryEmit("order.created", bad), eventbus.ErrTypeMismatch, "TryEmit %T", bad)
			assert.ErrorIs(t, m.EmitSync(ctx, "order.created", bad), eventbus.ErrTypeMismatch, "EmitSync %T", bad)
			assert.Equal(t, before+3, m.Stats().Rejected, "each refused emit counted")
		}
		require.NoError(t, m.Flush(ctx))
		assert.Empty(t, plain.got(), "nothing delivered")
		assert.Empty(t, wild.got(), "nothing delivered")

		// The declared type goes through every entry point.
		require.NoError(t, m.Emit(ctx, "order.created", &created{ID: 1}))
		require.NoError(t, m.TryEmit("order.created", &created{ID: 2}))
		require.NoError(t, m.EmitSync(ctx, "order.created", &created{ID: 3}))
		require.NoError(t, m.Flush(ctx))
		if listeners {
			assert.Len(t, plain.got(), 3)
			assert.Len(t, wild.got(), 3)
		}
	}
	// Undeclared names take anything.
	require.NoError(t, m.EmitSync(ctx, "order.paid", 7))
	require.NoError(t, m.EmitSync(ctx, "order.paid", "seven"))
}

func TestTopicOfAnInterfaceType(t *testing.T) {
	m := newManager[any](t)
	ctx := context.Background()
	tp := newTopic[error](t, m, "job.failed")
	var got []error
	_, err := tp.Listen(func(_ context.Context, e eventbus.Event[error]) error {
		got = append(got, e.Data)
		return nil
	})
	require.NoError(t, err)
	boom := errors.New("boom")
	require.NoError(t, m.EmitSync(ctx, "job.failed", boom), "a value that implements the interface")
	require.NoError(t, m.EmitSync(ctx, "job.failed", nil), "nil, as Topic[error].EmitSync(nil) would send")
	require.NoError(t, tp.EmitSync(ctx, nil))
	assert.ErrorIs(t, m.EmitSync(ctx, "job.failed", "not an error"), eventbus.ErrTypeMismatch)
	assert.Equal(t, []error{boom, nil, nil}, got)
}

func TestTopicDeliversTypedAndAnyEvents(t *testing.T) {
	m := newManager[any](t)
	ctx := context.Background()
	orders := newTopic[*created](t, m, "order.created")
	payments := newTopic[paid](t, m, "order.paid")

	var typed []eventbus.Event[*created]
	var mu sync.Mutex
	_, err := orders.Listen(func(_ context.Context, e eventbus.Event[*created]) error {
		mu.Lock()
		defer mu.Unlock()
		typed = append(typed, e)
		return nil
	})
	require.NoError(t, err)
	var payTotal atomic.Int64
	_, err = payments.Listen(func(_ context.Context, e eventbus.Event[paid]) error {
		payTotal.Add(int64(e.Data.Amount))
		return nil
	})
	require.NoError(t, err)
	var audit anyRecorder
	_, err = m.RegisterListener("order.>", audit.handle)
	require.NoError(t, err)

	o := &created{ID: 1}
	require.NoError(t, orders.EmitSync(ctx, o))
	require.NoError(t, orders.Emit(ctx, &created{ID: 2}))
	require.NoError(t, orders.TryEmit(&created{ID: 3}))
	require.NoError(t, payments.Emit(ctx, paid{ID: 1, Amount: 5}))
	require.NoError(t, m.Emit(ctx, "order.paid", paid{ID: 2, Amount: 7}), "the manager's Emit, with the declared type")
	require.NoError(t, m.Flush(ctx))

	mu.Lock()
	require.Len(t, typed, 3)
	assert.Same(t, o, typed[0].Data, "the pointer itself")
	assert.Equal(t, "order.created", typed[0].Name)
	mu.Unlock()
	assert.Equal(t, int64(12), payTotal.Load())
	seen := audit.got()
	assert.Len(t, seen, 5, "the wildcard listener sees both topics")
	assert.Contains(t, seen, any(paid{ID: 1, Amount: 5}), "as Event[any] holding the T")
	assert.Contains(t, seen, any(o))
	s := m.Stats()
	assert.Equal(t, uint64(5), s.Emitted)
	assert.Equal(t, uint64(10), s.Delivered)
	checkAccounting(t, s)
}

func TestTopicEmitsAfterClose(t *testing.T) {
	m := eventbus.New[any]()
	tp, err := eventbus.NewTopic[int](m, "n")
	require.NoError(t, err)
	_, err = tp.Listen(func(context.Context, eventbus.Event[int]) error { return nil })
	require.NoError(t, err)
	require.NoError(t, m.Close(context.Background()))
	ctx := context.Background()
	assert.ErrorIs(t, tp.Emit(ctx, 1), eventbus.ErrClosed)
	assert.ErrorIs(t, tp.TryEmit(1), eventbus.ErrClosed)
	assert.ErrorIs(t, tp.EmitSync(ctx, 1), eventbus.ErrClosed)
	_, err = tp.Listen(func(context.Context, eventbus.Event[int]) error { return nil })
	assert.ErrorIs(t, err, eventbus.ErrClosed)
	late, err := eventbus.NewTopic[int](m, "late")
	require.NoError(t, err, "a declaration after Close")
	assert.ErrorIs(t, late.Emit(ctx, 1), eventbus.ErrClosed, "a topic without listeners is refused too")
	assert.Equal(t, uint64(4), m.Stats().Rejected)
}

func TestTopicEmitChecksItsContext(t *testing.T) {
	m := newManager[any](t)
	tp := newTopic[int](t, m, "n")
	var calls atomic.Int64
	_, err := tp.Listen(func(context.Context, eventbus.Event[int]) error { calls.Add(1); return nil })
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, tp.EmitSync(ctx, 1), context.Canceled)
	assert.Zero(t, calls.Load())
}

// A Topic binds its name's route and must see every listener change that
// returned before its emit started: literal and wildcard listeners, the
// first and the last one, Once listeners that fired.
func TestTopicSurvivesListenerChurn(t *testing.T) {
	m := newManager[any](t)
	ctx := context.Background()
	tp := newTopic[int](t, m, "a.b")
	var got atomic.Int64
	count := func(context.Context, eventbus.Event[int]) error { got.Add(1); return nil }
	countAny := func(context.Context, eventbus.Event[any]) error { got.Add(1); return nil }
	emit := func(want int64, why string) {
		t.Helper()
		got.Store(0)
		require.NoError(t, tp.EmitSync(ctx, 1))
		require.NoError(t, tp.Emit(ctx, 1))
		require.NoError(t, m.Flush(ctx))
		assert.Equal(t, 2*want, got.Load(), why)
	}
	emit(0, "no listener")
	l1, err := tp.Listen(count)
	require.NoError(t, err)
	emit(1, "the first listener")
	w, err := m.RegisterListener("a.*", countAny)
	require.NoError(t, err)
	emit(2, "a wildcard listener")
	l2, err := m.RegisterListener("a.b", countAny)
	require.NoError(t, err)
	emit(3, "a literal listener on the manager")
	l1.Unregister()
	emit(2, "one unregistered")
	w.Unregister()
	emit(1, "the wildcard gone")
	_, err = m.RegisterListener("x.>", countAny)
	require.NoError(t, err)
	emit(1, "a wildcard for other names")
	l2.Unregister()
	emit(0, "the last one gone")
	_, err = tp.Listen(count, eventbus.Once())
	require.NoError(t, err)
	got.Store(0)
	require.NoError(t, tp.EmitSync(ctx, 1))
	require.NoError(t, tp.Emit(ctx, 1))
	require.NoError(t, m.Flush(ctx))
	assert.Equal(t, int64(1), got.Load(), "a Once listener fires once, then leaves the route")
	emit(0, "a Once listener that fired is gone")
}

func TestTopicUnderConcurrentChurn(t *testing.T) {
	m := newManager[any](t)
	ctx := context.Background()
	tp := newTopic[*created](t, m, "order.created")
	var stable atomic.Int64
	_, err := tp.Listen(func(context.Context, eventbus.Event[*created]) error { stable.Add(1); return nil })
	require.NoError(t, err)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			pattern := []string{"order.created", "order.*", "order.>", "other.name"}[i%4]
			l, err := m.RegisterListener(pattern, func(context.Context, eventbus.Event[any]) error { return nil })
			if !assert.NoError(t, err) {
				return
			}
			l.Unregister()
		}
	}()
	const n = 2000
	for i := range n {
		if i%2 == 0 {
			require.NoError(t, tp.EmitSync(ctx, &created{ID: i}))
		} else {
			require.NoError(t, tp.Emit(ctx, &created{ID: i}))
		}
	}
	close(stop)
	wg.Wait()
	require.NoError(t, m.Flush(ctx))
	assert.Equal(t, int64(n), stable.Load(), "the stable listener got every event")
	checkAccounting(t, m.Stats())
}

func TestTopicListenOptions(t *testing.T) {
	m := newManager[any](t, eventbus.WithMiddleware(func(next eventbus.Handler[any]) eventbus.Handler[any] {
		return func(ctx context.Context, e eventbus.Event[any]) error {
			if _, ok := e.Data.(*created); !ok {
				return fmt.Errorf("manager middleware got %T", e.Data)
			}
			return next(ctx, e)
		}
	}))
	ctx := context.Background()
	tp := newTopic[*created](t, m, "order.created")

	// OrderedBy with a key of the topic's type, and Use with typed middleware.
	var mu sync.Mutex
	perKey := map[int][]int{}
	var wrapped atomic.Int64
	_, err := tp.Listen(func(_ context.Context, e eventbus.Event[*created]) error {
		mu.Lock()
		defer mu.Unlock()
		perKey[e.Data.ID%3] = append(perKey[e.Data.ID%3], e.Data.ID)
		return nil
	},
		eventbus.OrderedBy(func(e eventbus.Event[*created]) string { return fmt.Sprint(e.Data.ID % 3) }),
		eventbus.Use(func(next eventbus.Handler[*created]) eventbus.Handler[*created] {
			return func(ctx context.Context, e eventbus.Event[*created]) error {
				wrapped.Add(1)
				return next(ctx, e)
			}
		}),
		eventbus.Concurrency(2))
	require.NoError(t, err)
	// An OrderedBy key made for the manager's type is accepted too.
	_, err = tp.Listen(func(context.Context, eventbus.Event[*created]) error { return nil },
		eventbus.OrderedBy(func(e eventbus.Event[any]) string { return e.Name }))
	require.NoError(t, err)

	for i := range 30 {
		require.NoError(t, tp.Emit(ctx, &created{ID: i}))
	}
	require.NoError(t, m.Flush(ctx))
	assert.Equal(t, int64(30), wrapped.Load(), "the listener's middleware ran")
	mu.Lock()
	for k, ids := range perKey {
		assert.IsIncreasing(t, ids, "key %d in emit order", k)
	}
	mu.Unlock()

	// Retry and Timeout.
	var attempts atomic.Int64
	sink := &errorSink{}
	m2 := newManager[any](t, eventbus.WithErrorHandler(sink.handle))
	tp2 := newTopic[int](t, m2, "job")
	_, err = tp2.Listen(func(ctx context.Context, e eventbus.Event[int]) error {
		if attempts.Add(1) < 3 {
			return errors.New("not yet")
		}
		<-ctx.Done() // only the timeout ends it
		return ctx.Err()
	}, eventbus.Retry(2, time.Millisecond, time.Millisecond), eventbus.Timeout(time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, tp2.Emit(ctx, 1))
	require.NoError(t, m2.Flush(ctx))
	assert.Equal(t, int64(3), attempts.Load())
	errs := sink.all()
	require.Len(t, errs, 1)
	var lerr *eventbus.ListenerError
	require.ErrorAs(t, errs[0], &lerr)
	assert.Equal(t, 3, lerr.Attempts)
	assert.ErrorIs(t, lerr, context.DeadlineExceeded)
	assert.Equal(t, 1, lerr.Data, "the data, as the topic's type")

	// Generic options of another type are refused.
	_, err = tp.Listen(func(context.Context, eventbus.Event[*created]) error { return nil },
		eventbus.OrderedBy(func(eventbus.Event[int]) string { return "" }))
	assert.ErrorIs(t, err, eventbus.ErrInvalidOption)
	_, err = tp.Listen(func(context.Context, eventbus.Event[*created]) error { return nil },
		eventbus.Use(func(next eventbus.Handler[int]) eventbus.Handler[int] { return next }))
	assert.ErrorIs(t, err, eventbus.ErrInvalidOption)
	_, err = tp.Listen(nil)
	assert.ErrorIs(t, err, eventbus.ErrNilHandler)
	_, err = tp.Listen(func(context.Context, eventbus.Event[*created]) error { return nil }, eventbus.Concurrency(0))
	assert.ErrorIs(t, err, eventbus.ErrInvalidOption)
}

func TestTopicPriorityAndStats(t *testing.T) {
	m := newManager[any](t)
	ctx := context.Background()
	tp := newTopic[int](t, m, "n")
	var order []string
	_, err := tp.Listen(func(context.Context, eventbus.Event[int]) error { order = append(order, "low"); return nil })
	require.NoError(t, err)
	_, err = m.RegisterListener("n", func(context.Context, eventbus.Event[any]) error { order = append(order, "high"); return nil }, eventbus.Priority(5))
	require.NoError(t, err)
	l, err := tp.Listen(func(context.Context, eventbus.Event[int]) error { return errors.New("no") }, eventbus.Priority(1))
	require.NoError(t, err)
	err = tp.EmitSync(ctx, 1)
	var lerr *eventbus.ListenerError
	require.ErrorAs(t, err, &lerr)
	assert.Equal(t, []string{"high", "low"}, order)
	assert.Equal(t, uint64(1), l.Stats().Failed)
	s := m.Stats()
	assert.Equal(t, uint64(1), s.Emitted)
	assert.Equal(t, uint64(2), s.Delivered)
	assert.Equal(t, uint64(1), s.Failed)
	checkAccounting(t, s)
}

func TestTopicAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	m := newManager[any](t)
	ctx := context.Background()
	tp := newTopic[*created](t, m, "order.created")
	gate := make(chan struct{})
	_, err := tp.Listen(func(context.Context, eventbus.Event[*created]) error { <-gate; return nil })
	require.NoError(t, err)
	o := &created{ID: 1}
	// Hold the listener while 1001 deliveries queue, so that the pool's
	// queue and record free list grow to that many in flight before the
	// measured runs: how many wait at once otherwise depends on how fast
	// the worker runs, and a slow one made a measured run grow them.
	for range 1001 {
		require.NoError(t, tp.Emit(ctx, o))
	}
	close(gate)
	require.NoError(t, m.Flush(ctx))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = tp.EmitSync(ctx, o) }), "Topic.EmitSync of a pointer")
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = m.EmitSync(ctx, "order.created", o) }), "EmitSync of a declared name")
	allocs := testing.AllocsPerRun(1000, func() { _ = tp.Emit(ctx, o) })
	require.NoError(t, m.Flush(ctx))
	assert.Zero(t, allocs, "Topic.Emit of a pointer")
}

// A name declared after its listeners were registered, and after emits
// cached its route, is checked from then on.
func TestDeclaringANameThatHasListeners(t *testing.T) {
	ctx := context.Background()
	for _, patterns := range [][]string{{"order.created"}, {"order.*"}, {"order.created", "order.>"}} {
		m := newManager[any](t)
		var rec anyRecorder
		for _, p := range patterns {
			_, err := m.RegisterListener(p, rec.handle)
			require.NoError(t, err)
		}
		require.NoError(t, m.EmitSync(ctx, "order.created", 1), "undeclared: anything goes")
		newTopic[string](t, m, "order.created")
		assert.ErrorIs(t, m.EmitSync(ctx, "order.created", 2), eventbus.ErrTypeMismatch, "patterns %v", patterns)
		assert.ErrorIs(t, m.Emit(ctx, "order.created", 3), eventbus.ErrTypeMismatch, "patterns %v", patterns)
		require.NoError(t, m.EmitSync(ctx, "order.created", "four"))
		// Later registrations keep the declaration in the routes they make.
		_, err := m.RegisterListener("order.created", rec.handle)
		require.NoError(t, err)
		_, err = m.RegisterListener("*.created", rec.handle)
		require.NoError(t, err)
		assert.ErrorIs(t, m.EmitSync(ctx, "order.created", 5), eventbus.ErrTypeMismatch, "patterns %v", patterns)
		require.NoError(t, m.Flush(ctx))
		want := []any{}
		for range patterns {
			want = append(want, 1)
		}
		for range patterns {
			want = append(want, "four")
		}
		assert.Equal(t, want, rec.got(), "patterns %v", patterns)
	}
}

func TestDeclaredType(t *testing.T) {
	m := newManager[any](t)
	assert.Nil(t, m.DeclaredType("order.created"))
	newTopic[*created](t, m, "order.created")
	newTopic[error](t, m, "job.failed")
	assert.Equal(t, reflect.TypeFor[*created](), m.DeclaredType("order.created"))
	assert.Equal(t, reflect.TypeFor[error](), m.DeclaredType("job.failed"))
	assert.Nil(t, m.DeclaredType("order.paid"))
	assert.Nil(t, newManager[int](t).DeclaredType("order.created"), "nothing is declared on an EventManager[int]")
}
