package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// EmitSync runs its listeners on a short path while they deliver and hands
// the rest of the call over at the first that does not. Whatever the
// position of a failure or a panic, every other listener runs once, with
// its own name in its context, the failure comes back as the only
// *ListenerError, and Stats adds up.
func TestEmitSyncFailureAtEveryPosition(t *testing.T) {
	const listeners = 5
	type key struct{}
	contexts := map[string]context.Context{
		"background":  context.Background(),
		"with values": context.WithValue(context.Background(), key{}, "v"),
	}
	for _, kind := range []string{"fail", "panic"} {
		for cname, ctx := range contexts {
			for bad := range listeners {
				t.Run(fmt.Sprintf("%s/%s/at %d", kind, cname, bad), func(t *testing.T) {
					m := newManager[int](t)
					boom := errors.New("boom")
					ran := make([]int, listeners)
					for i := range listeners {
						name := fmt.Sprintf("l%d", i)
						_, err := m.RegisterListener("e", func(lctx context.Context, _ eventbus.Event[int]) error {
							ran[i]++
							assert.Equal(t, name, eventbus.ListenerName(lctx), "its own name")
							if cname == "with values" {
								assert.Equal(t, "v", lctx.Value(key{}), "the caller's values")
							}
							if i != bad {
								return nil
							}
							if kind == "panic" {
								panic(boom)
							}
							return boom
						}, eventbus.Name(name), eventbus.Priority(listeners-i))
						require.NoError(t, err)
					}

					err := m.EmitSync(ctx, "e", 7)

					var lerr *eventbus.ListenerError
					require.ErrorAs(t, err, &lerr)
					assert.Equal(t, fmt.Sprintf("l%d", bad), lerr.Listener)
					assert.Equal(t, 7, lerr.Data)
					var perr *eventbus.PanicError
					assert.Equal(t, kind == "panic", errors.As(err, &perr), "a panic is a *PanicError")
					if kind == "fail" {
						assert.ErrorIs(t, err, boom)
					}
					assert.NotContains(t, err.Error(), "\n", "one failure, not a joined list")
					for i, n := range ran {
						assert.Equal(t, 1, n, "listener %d ran once", i)
					}
					s := m.Stats()
					assert.Equal(t, uint64(1), s.Emitted)
					assert.Equal(t, uint64(listeners), s.Matched)
					assert.Equal(t, uint64(listeners-1), s.Delivered)
					assert.Equal(t, uint64(1), s.Failed+s.Panicked)
					checkAccounting(t, s)
				})
			}
		}
	}
}

// Listeners off the short path (Once, unregistered between lookups, after
// a failure) mix with those on it: each is called or skipped as it should
// be, and every outcome is counted once.
func TestEmitSyncMixesShortAndFullPaths(t *testing.T) {
	m := newManager[int](t)
	var plain, once, late int
	_, err := m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { plain++; return nil }, eventbus.Priority(3))
	require.NoError(t, err)
	_, err = m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { once++; return nil }, eventbus.Once(), eventbus.Priority(2))
	require.NoError(t, err)
	failing, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
		return fmt.Errorf("refused %d", e.Data)
	}, eventbus.Priority(1))
	require.NoError(t, err)
	_, err = m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { late++; return nil })
	require.NoError(t, err)

	require.Error(t, m.EmitSync(context.Background(), "e", 1))
	require.Error(t, m.EmitSync(context.Background(), "e", 2))
	failing.Unregister()
	require.NoError(t, m.EmitSync(context.Background(), "e", 3))

	assert.Equal(t, 3, plain)
	assert.Equal(t, 1, once, "a Once listener runs once")
	assert.Equal(t, 3, late, "listeners after a failure still run")
	s := m.Stats()
	assert.Equal(t, uint64(3), s.Emitted)
	assert.Equal(t, uint64(2), s.Failed)
	assert.Equal(t, uint64(3+1+3), s.Delivered)
	checkAccounting(t, s)
}

// A handler that calls runtime.Goexit under EmitSync ends the calling
// goroutine, as a direct call would: the listeners after it do not run,
// and the manager goes on serving other calls.
func TestEmitSyncGoexitEndsTheCaller(t *testing.T) {
	m := newManager[int](t)
	var after int
	_, err := m.RegisterListener("e", func(_ context.Context, e eventbus.Event[int]) error {
		if e.Data == 1 {
			runtime.Goexit()
		}
		return nil
	}, eventbus.Priority(1))
	require.NoError(t, err)
	_, err = m.RegisterListener("e", func(context.Context, eventbus.Event[int]) error { after++; return nil })
	require.NoError(t, err)

	returned := make(chan bool, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		_ = m.EmitSync(context.Background(), "e", 1)
		returned <- true
	}()
	<-ended
	assert.Empty(t, returned, "EmitSync did not return: its goroutine ended")
	assert.Equal(t, 0, after, "nothing ran after the handler that ended the goroutine")

	require.NoError(t, m.EmitSync(context.Background(), "e", 2))
	assert.Equal(t, 1, after)
}

// firstPanicker and secondPanicker are named so that their frames can be
// told apart in a PanicError's stack.
func firstPanicker(context.Context, eventbus.Event[int]) error  { panic("first") }
func secondPanicker(context.Context, eventbus.Event[int]) error { panic("second") }

// Each panic's stack shows its own handler, not the frames of a handler
// that panicked before it in the same EmitSync call.
func TestEmitSyncPanicStacksAreTheirOwn(t *testing.T) {
	m := newManager[int](t)
	_, err := m.RegisterListener("e", firstPanicker, eventbus.Priority(2))
	require.NoError(t, err)
	_, err = m.RegisterListener("e", secondPanicker, eventbus.Priority(1))
	require.NoError(t, err)

	err = m.EmitSync(context.Background(), "e", 0)

	var stacks []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var perr *eventbus.PanicError
		require.ErrorAs(t, e, &perr)
		stacks = append(stacks, string(perr.Stack))
	}
	require.Len(t, stacks, 2)
	assert.Contains(t, stacks[0], "firstPanicker")
	assert.Contains(t, stacks[1], "secondPanicker")
	assert.NotContains(t, stacks[1], "firstPanicker", "the first panic's frames are gone")
}
