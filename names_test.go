package eventbus_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestListenerNames(t *testing.T) {
	m := newManager[int](t)
	nop := func(context.Context, eventbus.Event[int]) error { return nil }
	a, err := m.RegisterListener("order.created", nop)
	require.NoError(t, err)
	b, err := m.RegisterListener("order.*", nop)
	require.NoError(t, err)
	c, err := m.RegisterListener("order.created", nop, eventbus.Name("email"))
	require.NoError(t, err)
	d, err := m.RegisterListener("order.created", nop)
	require.NoError(t, err)
	assert.Equal(t, "order.created#1", a.Name(), "pattern and registration number")
	assert.Equal(t, "order.*#2", b.Name())
	assert.Equal(t, "email", c.Name())
	assert.Equal(t, "order.created#4", d.Name(), "numbers count every registration")
	assert.Equal(t, "email", c.Stats().Name)
	a.Unregister()
	assert.Equal(t, "order.created#1", a.Name(), "stable after Unregister")
	e, err := m.RegisterListener("order.created", nop)
	require.NoError(t, err)
	assert.Equal(t, "order.created#5", e.Name(), "numbers are not reused")

	_, err = m.RegisterListener("order.created", nop, eventbus.Name(""))
	assert.ErrorIs(t, err, eventbus.ErrInvalidOption)
	_, err = m.RegisterListener("order.created", nop, eventbus.Name("dup"), eventbus.Name("email"))
	require.NoError(t, err, "names need not be unique; the last Name wins")
}

type nameTestKey struct{}

func TestListenerNameInHandlersAndMiddleware(t *testing.T) {
	type seen struct{ where, name, value string }
	var mu sync.Mutex
	var got []seen
	record := func(where string, ctx context.Context) {
		v, _ := ctx.Value(nameTestKey{}).(string)
		mu.Lock()
		defer mu.Unlock()
		got = append(got, seen{where, eventbus.ListenerName(ctx), v})
	}
	m := newManager[int](t, eventbus.WithMiddleware(func(next eventbus.Handler[int]) eventbus.Handler[int] {
		return func(ctx context.Context, e eventbus.Event[int]) error {
			record("manager middleware", ctx)
			return next(ctx, e)
		}
	}))
	_, err := m.RegisterListener("job", func(ctx context.Context, e eventbus.Event[int]) error {
		record("handler", ctx)
		return nil
	}, eventbus.Name("worker"), eventbus.Use(func(next eventbus.Handler[int]) eventbus.Handler[int] {
		return func(ctx context.Context, e eventbus.Event[int]) error {
			record("listener middleware", ctx)
			return next(ctx, e)
		}
	}))
	require.NoError(t, err)

	bg := context.Background()
	valued := context.WithValue(bg, nameTestKey{}, "v")
	cancellable, cancel := context.WithCancel(valued)
	defer cancel()
	for _, tc := range []struct {
		name  string
		emit  func() error
		value string
	}{
		{"EmitSync, background", func() error { return m.EmitSync(bg, "job", 1) }, ""},
		{"EmitSync, values", func() error { return m.EmitSync(valued, "job", 1) }, "v"},
		{"Emit, background", func() error { return m.Emit(bg, "job", 1) }, ""},
		{"Emit, values and cancellation", func() error { return m.Emit(cancellable, "job", 1) }, "v"},
		{"TryEmit", func() error { return m.TryEmit("job", 1) }, ""},
	} {
		got = nil
		require.NoError(t, tc.emit(), tc.name)
		require.NoError(t, m.Flush(bg))
		mu.Lock()
		assert.Equal(t, []seen{
			{"manager middleware", "worker", tc.value},
			{"listener middleware", "worker", tc.value},
			{"handler", "worker", tc.value},
		}, got, tc.name)
		mu.Unlock()
	}
	assert.Empty(t, eventbus.ListenerName(bg), "not a delivery")
}

func TestListenerNameOfNestedListeners(t *testing.T) {
	m := newManager[int](t)
	var inner, outerAfter string
	_, err := m.RegisterListener("inner", func(ctx context.Context, e eventbus.Event[int]) error {
		inner = eventbus.ListenerName(ctx)
		return nil
	})
	require.NoError(t, err)
	_, err = m.RegisterListener("outer", func(ctx context.Context, e eventbus.Event[int]) error {
		err := m.EmitSync(ctx, "inner", 1)
		outerAfter = eventbus.ListenerName(ctx)
		return err
	}, eventbus.Name("outer-listener"))
	require.NoError(t, err)
	require.NoError(t, m.EmitSync(context.Background(), "outer", 1))
	assert.Equal(t, "inner#1", inner, "the innermost listener")
	assert.Equal(t, "outer-listener", outerAfter)
}

func TestListenerErrorCarriesTheEvent(t *testing.T) {
	type order struct{ ID int }
	sink := &errorSink{}
	m := newManager[order](t, eventbus.WithErrorHandler(sink.handle))
	boom := errors.New("boom")
	email, err := m.RegisterListener("order.created", func(context.Context, eventbus.Event[order]) error { return boom }, eventbus.Name("email"))
	require.NoError(t, err)
	_, err = m.RegisterListener("order.*", func(context.Context, eventbus.Event[order]) error { panic("oops") })
	require.NoError(t, err)
	ctx := context.Background()

	// EmitSync returns them.
	err = m.EmitSync(ctx, "order.created", order{ID: 1})
	var lerr *eventbus.ListenerError
	require.ErrorAs(t, err, &lerr)
	assert.Equal(t, eventbus.ListenerError{Event: "order.created", Data: order{ID: 1}, Listener: "email", Pattern: "order.created", Attempts: 1, Err: boom, Handle: email}, *lerr)
	assert.EqualError(t, lerr, `eventbus: listener "email" (pattern "order.created") on event "order.created": boom`)
	assert.Contains(t, err.Error(), `eventbus: listener "order.*#2" on event "order.created": panic: oops`, "a default name includes the pattern")

	// The error handler gets the pool's.
	require.NoError(t, m.Emit(ctx, "order.created", order{ID: 2}))
	require.NoError(t, m.Flush(ctx))
	errs := sink.all()
	require.Len(t, errs, 2)
	for _, err := range errs {
		require.ErrorAs(t, err, &lerr)
		assert.Equal(t, order{ID: 2}, lerr.Data)
		assert.Equal(t, "order.created", lerr.Event)
		if lerr.Listener == "email" {
			assert.ErrorIs(t, lerr, boom)
		} else {
			assert.Equal(t, "order.*#2", lerr.Listener)
			var perr *eventbus.PanicError
			assert.ErrorAs(t, lerr, &perr)
		}
	}
}

func TestDroppedDeliveryCarriesTheEvent(t *testing.T) {
	sink := &errorSink{}
	m := newManager[int](t, eventbus.WithErrorHandler(sink.handle))
	g := newGate()
	defer g.open()
	_, err := m.RegisterListener("job", g.handler, eventbus.Name("slow"), eventbus.Ordered(),
		eventbus.QueueSize(1), eventbus.OnOverflow(eventbus.OverflowDropNewest))
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, m.Emit(ctx, "job", 1))
	g.waitEntered(t, 1)                       // 1 runs
	require.NoError(t, m.Emit(ctx, "job", 2)) // 2 waits
	require.NoError(t, m.Emit(ctx, "job", 3)) // 3 is dropped
	g.open()
	require.NoError(t, m.Flush(ctx))
	errs := sink.all()
	require.Len(t, errs, 1)
	var lerr *eventbus.ListenerError
	require.ErrorAs(t, errs[0], &lerr)
	assert.ErrorIs(t, lerr, eventbus.ErrDropped)
	assert.Equal(t, 3, lerr.Data, "the dropped event's data")
	assert.Equal(t, "job", lerr.Event)
	assert.Equal(t, "slow", lerr.Listener)
}

// logRecords is a slog.Handler that keeps what it is given.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecords) WithGroup(string) slog.Handler            { return h }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// records returns each record's message and attributes.
func (h *logRecords) records() []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, r := range h.recs {
		m := map[string]string{"msg": r.Message, "level": r.Level.String()}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		out = append(out, m)
	}
	return out
}

func TestWithLogger(t *testing.T) {
	logs := &logRecords{}
	m := newManager[int](t, eventbus.WithLogger(slog.New(logs)))
	_, err := m.RegisterListener("job", func(context.Context, eventbus.Event[int]) error { return errors.New("boom") }, eventbus.Name("failing"))
	require.NoError(t, err)
	_, err = m.RegisterListener("job", func(context.Context, eventbus.Event[int]) error { panic("oops") })
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, m.Emit(ctx, "job", 1))
	require.NoError(t, m.Flush(ctx))
	recs := logs.records()
	require.Len(t, recs, 2)
	byListener := map[string]map[string]string{}
	for _, r := range recs {
		assert.Equal(t, "ERROR", r["level"])
		assert.Equal(t, "job", r["event"])
		assert.Equal(t, "job", r["pattern"])
		assert.Equal(t, "1", r["attempts"])
		byListener[r["listener"]] = r
	}
	require.Contains(t, byListener, "failing")
	assert.Equal(t, "eventbus: listener failed", byListener["failing"]["msg"])
	assert.Equal(t, "boom", byListener["failing"]["err"])
	assert.NotContains(t, byListener["failing"], "stack")
	require.Contains(t, byListener, "job#2")
	assert.Equal(t, "eventbus: listener panicked", byListener["job#2"]["msg"])
	assert.Equal(t, "panic: oops", byListener["job#2"]["err"])
	assert.Contains(t, byListener["job#2"]["stack"], "goroutine ", "the panic's stack")
	assert.Contains(t, byListener["job#2"]["stack"], "TestWithLogger", "down to the handler")
}

func TestWithLoggerGetsThePanicsOfTheErrorHandler(t *testing.T) {
	logs := &logRecords{}
	m := newManager[int](t, eventbus.WithLogger(slog.New(logs)), eventbus.WithLogger(nil), // nil keeps the logger
		eventbus.WithErrorHandler(func(error) { panic("handler bug") }))
	_, err := m.RegisterListener("job", func(context.Context, eventbus.Event[int]) error { return errors.New("boom") })
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "job", 1))
	require.NoError(t, m.Flush(context.Background()))
	recs := logs.records()
	require.Len(t, recs, 1)
	assert.Equal(t, "eventbus: error", recs[0]["msg"])
	assert.Contains(t, recs[0]["err"], "error handler panicked (handler bug)")
	assert.Contains(t, recs[0]["err"], `listener "job#1" on event "job": boom`)
}
