package natsbus_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/natsbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What Close cancels (issue 21 point 4). Close cancels the context of
// every inbound event, with ErrClosed as its cause. In core mode the events
// run on the EventManager's workers: a listener registered with
// eventbus.CancelWithEmitter sees the cancellation and is released, one
// without it keeps the EventManager's context, which Close does not end.
func TestCloseCancelsCoreListenersTiedToTheEmitter(t *testing.T) {
	for _, outbound := range []bool{false, true} {
		// With an Outbound pattern, Close also flushes the EventManager:
		// it would wait for the tied listener until its ctx ends if the
		// listener were not released.
		t.Run(map[bool]string{false: "inbound only", true: "with outbound"}[outbound], func(t *testing.T) {
			ts := startServer(t)
			nc, raw := connect(t, ts), connect(t, ts)
			m := newManager(t)
			opts := []natsbus.Option{natsbus.Inbound("s.>")}
			if outbound {
				opts = append(opts, natsbus.Outbound("out.>"))
			}
			b := newBridge(t, m, nc, opts...)

			tiedRunning := make(chan struct{})
			tiedEnded := make(chan context.Context, 1)
			_, err := m.RegisterListener("s.>", func(ctx context.Context, _ eventbus.Event[order]) error {
				close(tiedRunning)
				<-ctx.Done()
				tiedEnded <- ctx
				return nil
			}, eventbus.Name("tied"), eventbus.CancelWithEmitter())
			require.NoError(t, err)

			// Without the option: Close leaves the listener's context alone,
			// so it blocks until the test releases it (not before the
			// bridge's Close has returned, in the inbound-only case: Close
			// does not wait for it).
			freeRunning := make(chan context.Context, 1)
			release := make(chan struct{})
			_, err = m.RegisterListener("s.>", func(ctx context.Context, _ eventbus.Event[order]) error {
				freeRunning <- ctx
				select {
				case <-ctx.Done():
				case <-release:
				}
				return nil
			}, eventbus.Name("free"))
			require.NoError(t, err)

			require.NoError(t, raw.Publish("s.1", []byte(`{"id":1}`)))
			receive(t, tiedRunning)
			freeCtx := receive(t, freeRunning)

			closed := make(chan error, 1)
			go func() { closed <- b.Close(ctxTimeout(t, 30*time.Second)) }()
			if outbound {
				// Close's Flush of the EventManager waits for the free
				// listener too: release it once the tied one has ended.
				tctx := receive(t, tiedEnded)
				assert.NoError(t, freeCtx.Err(), "Close does not cancel a listener without CancelWithEmitter")
				close(release)
				require.NoError(t, receive(t, closed), "Close returns without waiting for its deadline")
				tiedEnded <- tctx
			} else {
				require.NoError(t, receive(t, closed), "Close does not wait for the EventManager's workers")
			}

			tctx := receive(t, tiedEnded)
			assert.ErrorIs(t, tctx.Err(), context.Canceled, "Close released the tied listener")
			assert.ErrorIs(t, context.Cause(tctx), natsbus.ErrClosed, "the cause says the bridge closed")
			info, ok := natsbus.InfoFromContext(tctx)
			assert.True(t, ok, "the tied context still carries the message's Info")
			assert.Equal(t, "s.1", info.Subject)

			if !outbound {
				assert.NoError(t, freeCtx.Err(), "Close does not cancel a listener without CancelWithEmitter")
				info, ok = natsbus.InfoFromContext(freeCtx)
				assert.True(t, ok)
				assert.Equal(t, "s.1", info.Subject)
				close(release)
			}
			require.NoError(t, m.Flush(ctxTimeout(t, 10*time.Second)))
			st := m.Stats()
			assert.Equal(t, uint64(2), st.Delivered, "both listeners handled the event, returning nil: %+v", st)
		})
	}
}

// With WithSyncInbound, listeners run in the subscription's callback with
// the inbound context itself: Close cancels every one of them, with or
// without CancelWithEmitter, and waits for them.
func TestCloseCancelsSyncInboundListeners(t *testing.T) {
	ts := startServer(t)
	nc, raw := connect(t, ts), connect(t, ts)
	m := newManager(t)
	b := newBridge(t, m, nc, natsbus.Inbound("s.>"), natsbus.WithSyncInbound())
	running := make(chan struct{})
	ended := make(chan context.Context, 1)
	_, err := m.RegisterListener("s.>", func(ctx context.Context, _ eventbus.Event[order]) error {
		close(running)
		<-ctx.Done()
		ended <- ctx
		return ctx.Err()
	})
	require.NoError(t, err)
	require.NoError(t, raw.Publish("s.1", []byte(`{"id":1}`)))
	receive(t, running)
	require.NoError(t, b.Close(ctxTimeout(t, 30*time.Second)))
	select {
	case ctx := <-ended:
		assert.ErrorIs(t, ctx.Err(), context.Canceled)
		assert.ErrorIs(t, context.Cause(ctx), natsbus.ErrClosed)
	default:
		t.Fatal("Close returned before the listener it cancelled")
	}
}

// In JetStream mode listeners run in the bridge's pull goroutine with the
// inbound context itself: Close cancels them (with or without
// CancelWithEmitter) and waits for them. The message being handled is then
// acknowledged if every listener returned nil, and otherwise handed back
// for redelivery, counted as Naked and not as a listener failure.
func TestCloseCancelsJetStreamListeners(t *testing.T) {
	for _, tt := range []struct {
		name string
		fail bool // the listener returns ctx.Err() once cancelled
		opts []eventbus.ListenerOption
	}{
		{name: "handed back", fail: true},
		{name: "handed back/CancelWithEmitter", fail: true, opts: []eventbus.ListenerOption{eventbus.CancelWithEmitter()}},
		{name: "acknowledged"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, withJetStream(t.TempDir()))
			ncA, ncB := connect(t, ts), connect(t, ts)
			stream := createStream(t, ncA, "S", "s.>")
			// A short AckWait: a message handed back while the consumer
			// stops may go to a pull request nobody reads any more, and
			// then comes back after AckWait.
			cfg := natsbus.JetStreamConfig{Stream: "S", Durable: "d", AckWait: 2 * time.Second}
			mA, mB := newManager(t), newManager(t)
			newBridge(t, mA, ncA, natsbus.Outbound("s.>"), natsbus.WithJetStream(natsbus.JetStreamConfig{Stream: "S"}))
			bB := newBridge(t, mB, ncB, natsbus.Inbound("s.>"), natsbus.WithJetStream(cfg))
			running := make(chan struct{})
			ended := make(chan context.Context, 1)
			var calls atomic.Int32
			_, err := mB.RegisterListener("s.>", func(ctx context.Context, _ eventbus.Event[order]) error {
				if calls.Add(1) > 1 {
					return ctx.Err() // handed back into the closing bridge: the bug
				}
				close(running)
				<-ctx.Done()
				ended <- ctx
				if tt.fail {
					return ctx.Err()
				}
				return nil
			}, tt.opts...)
			require.NoError(t, err)
			require.NoError(t, mA.EmitSync(ctxTimeout(t, 10*time.Second), "s.1", order{ID: 1}))
			receive(t, running)
			require.NoError(t, bB.Close(ctxTimeout(t, 30*time.Second)))
			select {
			case ctx := <-ended:
				assert.ErrorIs(t, ctx.Err(), context.Canceled)
				assert.ErrorIs(t, context.Cause(ctx), natsbus.ErrClosed)
			default:
				t.Fatal("Close returned before the listener it cancelled")
			}
			st := bB.Stats()
			assert.Equal(t, int32(1), calls.Load(), "a message handed back at Close does not come back to the closing bridge: %+v", st)
			assert.Zero(t, st.ListenerErrors, "the bridge's own exit is no listener failure")
			if !tt.fail {
				assert.Equal(t, uint64(1), st.Received)
				assert.Zero(t, st.Naked)
				consumerSettled(t, stream, "d") // acknowledged: nothing pending, nothing to redeliver
				return
			}
			assert.Equal(t, uint64(1), st.Naked, "handed back for redelivery")
			assert.Zero(t, st.Received)

			// The next bridge on the durable gets it again.
			mC := newManager(t)
			ncC := connect(t, ts)
			again := make(chan natsbus.Info, 1)
			_, err = mC.RegisterListener("s.>", func(ctx context.Context, _ eventbus.Event[order]) error {
				info, _ := natsbus.InfoFromContext(ctx)
				again <- info
				return nil
			})
			require.NoError(t, err)
			newBridge(t, mC, ncC, natsbus.Inbound("s.>"), natsbus.WithJetStream(cfg))
			info := receive(t, again)
			assert.Equal(t, "s.1", info.Subject)
			assert.GreaterOrEqual(t, info.Delivered, uint64(2))
			consumerSettled(t, stream, "d")
		})
	}
}

// Drain lets core listeners tied to the emitter finish the messages it
// delivers with live contexts: it flushes the EventManager before it ends
// their contexts, and ends them when its ctx ends.
func TestDrainKeepsTiedCoreListenersUntilDone(t *testing.T) {
	t.Run("finished", func(t *testing.T) {
		ts := startServer(t)
		nc, raw := connect(t, ts), connect(t, ts)
		m := newManager(t)
		b := newBridge(t, m, nc, natsbus.Inbound("s.>"))
		running := make(chan context.Context, 1)
		release := make(chan struct{})
		ended := make(chan error, 1)
		_, err := m.RegisterListener("s.>", func(ctx context.Context, _ eventbus.Event[order]) error {
			running <- ctx
			select {
			case <-ctx.Done():
			case <-release:
			}
			ended <- ctx.Err()
			return nil
		}, eventbus.CancelWithEmitter())
		require.NoError(t, err)
		require.NoError(t, raw.Publish("s.1", []byte(`{"id":1}`)))
		lctx := receive(t, running)

		inboundStopped := make(chan struct{})
		natsbus.SetAfterInboundStopped(b, func() { close(inboundStopped) })
		drained := make(chan error, 1)
		go func() { drained <- b.Drain(ctxTimeout(t, 30*time.Second)) }()
		receive(t, inboundStopped)
		assert.NoError(t, lctx.Err(), "the inbound side has stopped, the listener's context is still live")
		select {
		case err := <-drained:
			t.Fatalf("Drain returned (%v) while the inbound event it delivered was being handled", err)
		default:
		}
		close(release)
		require.NoError(t, receive(t, drained))
		select {
		case err := <-ended:
			assert.NoError(t, err, "Drain did not cancel the listener before it finished")
		default:
			t.Fatal("Drain returned before the inbound event it delivered was handled")
		}
	})
	t.Run("ctx ends", func(t *testing.T) {
		ts := startServer(t)
		nc, raw := connect(t, ts), connect(t, ts)
		m := newManager(t)
		b := newBridge(t, m, nc, natsbus.Inbound("s.>"))
		running := make(chan struct{})
		ended := make(chan context.Context, 1)
		_, err := m.RegisterListener("s.>", func(ctx context.Context, _ eventbus.Event[order]) error {
			close(running)
			<-ctx.Done()
			ended <- ctx
			return nil
		}, eventbus.CancelWithEmitter())
		require.NoError(t, err)
		require.NoError(t, raw.Publish("s.1", []byte(`{"id":1}`)))
		receive(t, running)
		ctx, cancel := context.WithCancel(context.Background())
		drained := make(chan error, 1)
		go func() { drained <- b.Drain(ctx) }()
		cancel()
		assert.ErrorIs(t, receive(t, drained), context.Canceled)
		lctx := receive(t, ended)
		assert.ErrorIs(t, context.Cause(lctx), natsbus.ErrClosed)
	})
}
