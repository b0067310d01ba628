package eventbus_test

import (
	"context"
	"errors"
	"testing"

	"github.com/eventbus-go/eventbus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A refused emit's error matches its sentinel with errors.Is and says which
// listener refused and why; it is built without formatting (the message is
// made when read), which keeps a refused TryEmit cheap.
func TestRefusedEmitErrorsSayWhatAndWho(t *testing.T) {
	m := eventbus.New[int](eventbus.WithWorkers(1), eventbus.WithQueueSize(1))
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	_, err := m.RegisterListener("job", func(ctx context.Context, e eventbus.Event[int]) error {
		started <- struct{}{}
		<-release
		return nil
	}, eventbus.Ordered())
	require.NoError(t, err)
	require.NoError(t, m.Emit(context.Background(), "job", 1))
	<-started                                                  // the first runs
	require.NoError(t, m.Emit(context.Background(), "job", 2)) // the second fills the backlog of 1

	err = m.TryEmit("job", 3)
	require.ErrorIs(t, err, eventbus.ErrQueueFull)
	assert.Equal(t, `emit "job": eventbus: queue full: listener "job" has 1 deliveries waiting`, err.Error())

	close(release)
	require.NoError(t, m.Close(context.Background()))
	err = m.TryEmit("job", 4)
	require.ErrorIs(t, err, eventbus.ErrClosed)
	assert.Equal(t, `emit "job": `+eventbus.ErrClosed.Error(), err.Error())
	assert.False(t, errors.Is(err, eventbus.ErrQueueFull))
}
