package watermillbus_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/watermillbus"
	"github.com/stretchr/testify/require"
)

var (
	stressRounds   = flag.Int("stress.rounds", 100, "rounds per joiner and queue size in TestJoinAndLeaveALiveStream")
	stressDeadline = flag.Duration("stress.deadline", 2*time.Minute, "the whole of TestJoinAndLeaveALiveStream must finish by then: a hang fails it")
)

const (
	stressPublishers = 2
	stressJoiners    = 3
)

// TestJoinAndLeaveALiveStream has subscribers with persistence join and
// leave a topic that two publishers feed without pause, under backlogs of
// 1 to 8 and logs of 1 to 16 messages, half of them with a nack delay: each
// round subscribes, reads a few messages (nacking some, leaving some
// unacked at the end) and cancels.
// Every seventh message is published with a context that is already done,
// so it fails when it finds no room: a failed message must reach nobody.
//
// Checked: progress (the whole test has a deadline, -stress.deadline; every
// wait fails past it), and, per subscription and per publisher, that the
// messages come in publish order with nothing missing or repeated between
// the first one and the last one read, none of them failed, and nothing
// missing at the replay seam: the first message received of a publisher is
// at the latest the first it started to publish after Subscribe returned.
// A subscription that stays from the start gets every published message.
func TestJoinAndLeaveALiveStream(t *testing.T) {
	deadline := time.Now().Add(*stressDeadline)
	for q := 1; q <= 8; q++ {
		limit := []int{1, 4, 16}[q%3]
		var nackDelay time.Duration
		if q%2 == 0 {
			nackDelay = 50 * time.Microsecond // a nacked replay or held message comes back through a Retry run
		}
		t.Run(fmt.Sprintf("queue %d log %d nack delay %v", q, limit, nackDelay), func(t *testing.T) {
			runStream(t, deadline, q, limit, nackDelay)
		})
		if t.Failed() {
			return
		}
	}
}

// streamLog is what the publishers did: per publisher, whether each
// message was published (index = message number).
type streamLog struct {
	mu      sync.Mutex
	ok      [stressPublishers][]bool
	started [stressPublishers]atomic.Int64 // Publish calls started
}

// check checks what one subscription received of one publisher (message
// numbers, in order) against the log: nothing missing, repeated or failed
// between the first and the last, and nothing missing before the first
// from seam on (seam < 0: no seam check).
func (l *streamLog) check(pub int, got []int, seam int) error {
	if len(got) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ok := l.ok[pub]
	if got[len(got)-1] >= len(ok) {
		return fmt.Errorf("publisher %d: got message %d, not settled yet (%d are)", pub, got[len(got)-1], len(ok))
	}
	for i := seam; i >= 0 && i < got[0]; i++ {
		if ok[i] {
			return fmt.Errorf("publisher %d: message %d, published after Subscribe returned, missing before %d", pub, i, got[0])
		}
	}
	for j, n := range got {
		if !ok[n] {
			return fmt.Errorf("publisher %d: got message %d, whose Publish failed", pub, n)
		}
		if j == 0 {
			continue
		}
		if n <= got[j-1] {
			return fmt.Errorf("publisher %d: message %d after %d", pub, n, got[j-1])
		}
		for m := got[j-1] + 1; m < n; m++ {
			if ok[m] {
				return fmt.Errorf("publisher %d: message %d missing between %d and %d", pub, m, got[j-1], n)
			}
		}
	}
	return nil
}

func parseID(uuid string) (pub, n int, err error) {
	p, num, found := strings.Cut(uuid, "/")
	if !found {
		return 0, 0, fmt.Errorf("bad UUID %q", uuid)
	}
	if pub, err = strconv.Atoi(p); err != nil {
		return 0, 0, err
	}
	n, err = strconv.Atoi(num)
	return pub, n, err
}

func runStream(t *testing.T, deadline time.Time, queue, limit int, nackDelay time.Duration) {
	ps, err := watermillbus.New(watermillbus.WithPersistence(limit), watermillbus.WithNackDelay(nackDelay),
		watermillbus.WithBusOptions(eventbus.WithQueueSize(queue)))
	require.NoError(t, err)
	defer func() { require.NoError(t, ps.Close()) }()
	expired, cancel := context.WithCancel(context.Background())
	cancel()

	// A subscription from the start gets everything.
	watchCtx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	watched, err := ps.Subscribe(watchCtx, "t")
	require.NoError(t, err)
	var watcher sync.WaitGroup
	var watchedMu sync.Mutex
	var watchedGot [stressPublishers][]int
	var watchedN int
	tick := make(chan struct{}, 1)
	watcher.Go(func() {
		for m := range watched {
			pub, n, err := parseID(m.UUID)
			if err != nil {
				t.Error(err)
				return
			}
			watchedMu.Lock()
			watchedGot[pub] = append(watchedGot[pub], n)
			watchedN++
			watchedMu.Unlock()
			m.Ack()
			select {
			case tick <- struct{}{}:
			default:
			}
		}
	})

	var log streamLog
	stop := make(chan struct{})
	var pubs sync.WaitGroup
	for pub := range stressPublishers {
		pubs.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				m := message.NewMessage(fmt.Sprintf("%d/%d", pub, i), nil)
				if i%7 == 6 {
					m.SetContext(expired) // published only if there is room at once
				}
				log.started[pub].Add(1)
				err := ps.Publish("t", m)
				log.mu.Lock()
				log.ok[pub] = append(log.ok[pub], err == nil)
				log.mu.Unlock()
				if err != nil && !(i%7 == 6 && errors.Is(err, eventbus.ErrQueueFull)) {
					t.Errorf("publisher %d: message %d: %v", pub, i, err)
					return
				}
			}
		})
	}

	var joiners sync.WaitGroup
	var rounds [stressJoiners][]round
	for j := range stressJoiners {
		joiners.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(queue), uint64(j)))
			for i := range *stressRounds {
				r, err := joinRound(ps, &log, rng, deadline)
				if err != nil {
					t.Errorf("joiner %d, round %d: %v", j, i, err)
					return
				}
				rounds[j] = append(rounds[j], r)
			}
		})
	}
	joinersDone := make(chan struct{})
	go func() { joiners.Wait(); close(joinersDone) }()
	select {
	case <-joinersDone:
	case <-time.After(time.Until(deadline)):
		t.Errorf("joiners still running at the deadline (-stress.deadline %v): no progress", *stressDeadline)
		close(stop)
		require.NoError(t, ps.Close()) // releases them
		joiners.Wait()
		pubs.Wait()
		watcher.Wait()
		return
	}
	close(stop)
	pubs.Wait() // the watcher reads on, so every Publish gets room
	total := 0
	for pub := range log.ok {
		for _, ok := range log.ok[pub] {
			if ok {
				total++
			}
		}
	}
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	for {
		watchedMu.Lock()
		n := watchedN
		watchedMu.Unlock()
		if n >= total {
			break
		}
		select {
		case <-tick:
		case <-timeout.C:
			require.FailNow(t, "no progress", "the subscription from the start has %d of %d messages at the deadline", n, total)
		}
	}
	stopWatching()
	watcher.Wait()
	// Every Publish has settled: check what each round got.
	for j := range rounds {
		for i, r := range rounds[j] {
			for pub := range stressPublishers {
				if err := log.check(pub, r.got[pub], r.seam[pub]); err != nil {
					require.NoError(t, err, "joiner %d, round %d", j, i)
				}
			}
		}
	}
	for pub := range stressPublishers {
		got := watchedGot[pub]
		require.NoError(t, log.check(pub, got, 0), "the subscription from the start")
		if len(got) > 0 {
			for i := got[len(got)-1] + 1; i < len(log.ok[pub]); i++ {
				require.False(t, log.ok[pub][i], "publisher %d: message %d missing at the end of the subscription from the start", pub, i)
			}
		}
	}
}

// round is what one subscription got of each publisher, and where its
// seam was: the number of Publish calls each publisher had started when
// Subscribe returned.
type round struct {
	got  [stressPublishers][]int
	seam [stressPublishers]int
}

// joinRound subscribes, reads up to 12 messages, nacking about one in
// eight, and leaves, sometimes with the last message unacked.
func joinRound(ps *watermillbus.PubSub, log *streamLog, rng *rand.Rand, deadline time.Time) (r round, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := ps.Subscribe(ctx, "t")
	if err != nil {
		return r, fmt.Errorf("subscribe: %w", err)
	}
	for pub := range r.seam {
		r.seam[pub] = int(log.started[pub].Load())
	}
	want := rng.IntN(13)
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	var nacked string
	for read := 0; read < want; {
		var m *message.Message
		select {
		case m = <-ch:
			if m == nil {
				return r, fmt.Errorf("channel closed after %d messages", read)
			}
		case <-timeout.C:
			return r, fmt.Errorf("no message at the deadline after %d of %d: no progress", read, want)
		}
		if nacked != "" && m.UUID != nacked {
			return r, fmt.Errorf("got %s where the nacked %s should come again", m.UUID, nacked)
		}
		nacked = ""
		if rng.IntN(8) == 0 {
			nacked = m.UUID
			m.Nack()
			continue
		}
		pub, n, err := parseID(m.UUID)
		if err != nil {
			return r, err
		}
		r.got[pub] = append(r.got[pub], n)
		read++
		if read < want || rng.IntN(2) == 0 {
			m.Ack()
		}
	}
	return r, nil
}
