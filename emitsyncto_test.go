package eventbus_test

import (
	"context"
	"errors"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEmitSyncToRunsOneListenerInTheCaller(t *testing.T) {
	m := newManager[int](t)
	type callerKey struct{}
	var got []int
	var names []string
	target, err := m.RegisterListener("topic.*", func(ctx context.Context, e eventbus.Event[int]) error {
		got = append(got, e.Data) // no lock: it must run in the caller's goroutine
		names = append(names, eventbus.ListenerName(ctx))
		if ctx.Value(callerKey{}) != "yes" {
			return errors.New("the caller's context did not arrive")
		}
		if e.Data == 7 {
			return errors.New("seven")
		}
		return nil
	}, eventbus.Name("target"), eventbus.Use(func(next eventbus.Handler[int]) eventbus.Handler[int] {
		return func(ctx context.Context, e eventbus.Event[int]) error {
			e.Data *= 1 // middleware runs
			return next(ctx, e)
		}
	}))
	require.NoError(t, err)
	otherCalls := 0
	_, err = m.RegisterListener("topic.a", func(context.Context, eventbus.Event[int]) error {
		otherCalls++
		return nil
	})
	require.NoError(t, err)

	ctx := context.WithValue(context.Background(), callerKey{}, "yes")
	require.NoError(t, m.EmitSyncTo(ctx, target, "topic.a", 1))
	assert.Equal(t, []int{1}, got, "ran before EmitSyncTo returned")
	assert.Equal(t, []string{"target"}, names)

	err = m.EmitSyncTo(ctx, target, "topic.a", 7)
	var lerr *eventbus.ListenerError
	require.True(t, errors.As(err, &lerr), "a failure is a *ListenerError: %v", err)
	_, direct := err.(*eventbus.ListenerError)
	assert.True(t, direct, "not wrapped")
	assert.Equal(t, "target", lerr.Listener)
	assert.Equal(t, "topic.*", lerr.Pattern)
	assert.Equal(t, "topic.a", lerr.Event)
	assert.Equal(t, 7, lerr.Data)
	assert.Same(t, target, lerr.Handle)
	assert.EqualError(t, lerr.Err, "seven")

	assert.Zero(t, otherCalls, "the other listener of the name is not called")
	st := m.Stats()
	assert.Equal(t, uint64(2), st.Emitted)
	assert.Equal(t, uint64(2), st.Matched)
	assert.Equal(t, uint64(1), st.Delivered)
	assert.Equal(t, uint64(1), st.Failed)
	assert.Equal(t, uint64(1), target.Stats().Failed)
	checkAccounting(t, st)
}

func TestEmitSyncToPanicIsAListenerError(t *testing.T) {
	m := newManager[int](t)
	l, err := m.RegisterListener("p", func(context.Context, eventbus.Event[int]) error { panic("boom") })
	require.NoError(t, err)
	err = m.EmitSyncTo(context.Background(), l, "p", 1)
	var pe *eventbus.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "boom", pe.Value)
	assert.Equal(t, uint64(1), m.Stats().Panicked)
}

func TestEmitSyncToRefusesBadInput(t *testing.T) {
	m := newManager[any](t)
	_, err := eventbus.NewTopic[int](m, "count")
	require.NoError(t, err)
	calls := 0
	l, err := m.RegisterListener("count", func(context.Context, eventbus.Event[any]) error { calls++; return nil })
	require.NoError(t, err)
	bg := context.Background()

	assert.ErrorIs(t, m.EmitSyncTo(bg, nil, "count", 1), eventbus.ErrInvalidOption, "nil listener")
	foreign := newManager[any](t)
	assert.ErrorIs(t, foreign.EmitSyncTo(bg, l, "count", 1), eventbus.ErrInvalidOption, "another manager's listener")
	other := newManager[string](t)
	ls, err := other.RegisterListener("count", func(context.Context, eventbus.Event[string]) error { return nil })
	require.NoError(t, err)
	assert.ErrorIs(t, m.EmitSyncTo(bg, ls, "count", 1), eventbus.ErrInvalidOption, "a listener of another data type")
	assert.ErrorIs(t, m.EmitSyncTo(bg, l, "other", 1), eventbus.ErrInvalidName, "pattern does not match")
	assert.ErrorIs(t, m.EmitSyncTo(bg, l, "count..x", 1), eventbus.ErrInvalidName, "invalid name")
	assert.ErrorIs(t, m.EmitSyncTo(bg, l, "count", "not an int"), eventbus.ErrTypeMismatch)
	done, cancel := context.WithCancel(bg)
	cancel()
	assert.ErrorIs(t, m.EmitSyncTo(done, l, "count", 1), context.Canceled)
	assert.Zero(t, calls, "no refused call ran the handler")

	require.NoError(t, m.EmitSyncTo(bg, l, "count", 1))
	l.Unregister()
	assert.ErrorIs(t, m.EmitSyncTo(bg, l, "count", 2), eventbus.ErrUnregistered)
	assert.Equal(t, 1, calls)
	assert.Equal(t, uint64(1), l.Stats().Skipped)

	once, err := m.RegisterListener("count", func(context.Context, eventbus.Event[any]) error { calls++; return nil }, eventbus.Once())
	require.NoError(t, err)
	require.NoError(t, m.EmitSyncTo(bg, once, "count", 3))
	assert.ErrorIs(t, m.EmitSyncTo(bg, once, "count", 4), eventbus.ErrUnregistered, "a Once listener fires once")
	assert.Equal(t, 2, calls)
	checkAccounting(t, m.Stats())
}

func TestEmitSyncToClosed(t *testing.T) {
	m := newManager[int](t)
	l, err := m.RegisterListener("a", func(context.Context, eventbus.Event[int]) error { return nil })
	require.NoError(t, err)
	require.NoError(t, m.Close(context.Background()))
	assert.ErrorIs(t, m.EmitSyncTo(context.Background(), l, "a", 1), eventbus.ErrClosed)
}

func TestListenerOrdered(t *testing.T) {
	m := newManager[int](t)
	h := func(context.Context, eventbus.Event[int]) error { return nil }
	for _, tc := range []struct {
		name string
		opts []eventbus.ListenerOption
		want bool
	}{
		{"plain", nil, false},
		{"Ordered", []eventbus.ListenerOption{eventbus.Ordered()}, true},
		{"Concurrency(1)", []eventbus.ListenerOption{eventbus.Concurrency(1)}, true},
		{"Concurrency(4)", []eventbus.ListenerOption{eventbus.Concurrency(4)}, false},
		{"OrderedBy", []eventbus.ListenerOption{eventbus.OrderedBy(func(eventbus.Event[int]) string { return "k" })}, true},
		{"OrderedBy+Concurrency(4)", []eventbus.ListenerOption{eventbus.OrderedBy(func(eventbus.Event[int]) string { return "k" }), eventbus.Concurrency(4)}, true},
		{"Retry", []eventbus.ListenerOption{eventbus.Retry(3, 0, 0)}, false},
	} {
		l, err := m.RegisterListener("a", h, tc.opts...)
		require.NoError(t, err)
		assert.Equal(t, tc.want, l.Ordered(), tc.name)
		l.Unregister()
		assert.Equal(t, tc.want, l.Ordered(), "%s: unchanged by Unregister", tc.name)
	}
}

func TestListenersOfIsWhatEmitSyncCalls(t *testing.T) {
	m := newManager[int](t)
	var order []string
	reg := func(pattern, name string, prio int) *eventbus.Listener {
		l, err := m.RegisterListener(pattern, func(ctx context.Context, _ eventbus.Event[int]) error {
			order = append(order, eventbus.ListenerName(ctx))
			return nil
		}, eventbus.Name(name), eventbus.Priority(prio))
		require.NoError(t, err)
		return l
	}
	reg("a.b", "low", 0)
	reg("a.*", "high", 5)
	reg("a.>", "mid", 2)
	reg("x", "unrelated", 9)
	ls, err := m.ListenersOf("a.b")
	require.NoError(t, err)
	var names []string
	for _, l := range ls {
		names = append(names, l.Name())
	}
	require.NoError(t, m.EmitSync(context.Background(), "a.b", 0))
	assert.Equal(t, order, names, "the same listeners in the same order as EmitSync")
	assert.Equal(t, []string{"high", "mid", "low"}, names)

	none, err := m.ListenersOf("nobody")
	require.NoError(t, err)
	assert.Empty(t, none)
	_, err = m.ListenersOf("a.*")
	assert.ErrorIs(t, err, eventbus.ErrInvalidName)
}

func TestReportErrorReachesTheErrorHandler(t *testing.T) {
	type key struct{}
	got := make(chan *eventbus.ListenerError, 1)
	var gotCtx context.Context
	m := newManager[int](t, eventbus.WithErrorHandler(func(ctx context.Context, lerr *eventbus.ListenerError) {
		gotCtx = ctx
		got <- lerr
	}))
	l, err := m.RegisterListener("a", func(context.Context, eventbus.Event[int]) error { return nil }, eventbus.Name("L"))
	require.NoError(t, err)
	want := &eventbus.ListenerError{Event: "a", Data: 3, Listener: "L", Pattern: "a", Attempts: 5, Err: errors.New("gave up"), Handle: l}
	m.ReportError(context.WithValue(context.Background(), key{}, "v"), want)
	select {
	case lerr := <-got:
		assert.Same(t, want, lerr)
	default:
		t.Fatal("the error handler did not run before ReportError returned")
	}
	assert.Equal(t, "v", gotCtx.Value(key{}))
	m.ReportError(context.Background(), nil) // ignored
	assert.Empty(t, got)
	st := m.Stats()
	assert.Zero(t, st.Emitted+st.Failed, "counts nothing")
}
