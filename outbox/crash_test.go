package outbox_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/outbox"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The crash test: a child process (this test binary, run again with
// crashChildEnv set) opens the database, starts an Outbox whose listener
// appends every delivery to a log file, and emits events in transactions,
// one in five rolled back, until it is killed with SIGKILL at a random
// moment. Each transaction also writes its events' keys into crash_truth,
// so the database itself says which events were committed. After many kills
// a last Outbox, in the test process, delivers what is left; then every
// committed key must be in the log at least once (lost = 0) and no key that
// is not committed may be (phantom = 0, rolled-back events included).
const (
	crashChildEnv = "OUTBOX_CRASH_CHILD" // the driver: "sqlite" or "pgx"
	crashDSNEnv   = "OUTBOX_CRASH_DSN"
	crashLogEnv   = "OUTBOX_CRASH_LOG"
	crashRoundEnv = "OUTBOX_CRASH_ROUND"
)

func crashOptions() []outbox.Option {
	return []outbox.Option{
		outbox.Table("crash_outbox"),
		outbox.Backoff(time.Millisecond, 10*time.Millisecond),
		outbox.MaxAttempts(1000),
		outbox.PollInterval(50 * time.Millisecond),
	}
}

// crashListener appends "key id" to the log, one write per delivery (a
// SIGKILL cannot tear a write(2) to a regular file). It fails one delivery
// in fifty, so that retries happen too.
func crashListener(f *os.File, rnd *rand.Rand) eventbus.Handler[string] {
	return func(ctx context.Context, e eventbus.Event[string]) error {
		if rnd != nil && rnd.IntN(50) == 0 {
			return fmt.Errorf("random failure")
		}
		id, _ := outbox.EventID(ctx)
		_, err := f.WriteString(e.Data + " " + id + "\n")
		return err
	}
}

func crashChild() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	driver := os.Getenv(crashChildEnv)
	db, err := sql.Open(driver, os.Getenv(crashDSNEnv))
	if err != nil {
		fail(err)
	}
	f, err := os.OpenFile(os.Getenv(crashLogEnv), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fail(err)
	}
	round, _ := strconv.Atoi(os.Getenv(crashRoundEnv))
	rnd := rand.New(rand.NewPCG(uint64(round), 42))
	m := eventbus.New[string]()
	if _, err := m.RegisterListener("crash.>", crashListener(f, rand.New(rand.NewPCG(uint64(round), 7)))); err != nil {
		fail(err)
	}
	ctx := context.Background()
	ob, err := outbox.New(ctx, db, m, crashOptions()...)
	if err != nil {
		fail(err)
	}
	ph := "?"
	if driver == "pgx" {
		ph = "$1"
	}
	rb, err := os.OpenFile(os.Getenv(crashLogEnv)+".rolledback", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fail(err)
	}
	fmt.Println("ready")
	for i := 0; ; i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			fail(err)
		}
		commit := rnd.IntN(5) != 0
		var keys []string
		for j := range 1 + rnd.IntN(8) {
			key := fmt.Sprintf("%d-%d-%d", round, i, j)
			keys = append(keys, key)
			if _, err := tx.Exec("INSERT INTO crash_truth (k) VALUES ("+ph+")", key); err != nil {
				fail(err)
			}
			if err := ob.Emit(ctx, tx, "crash.event", key); err != nil {
				fail(err)
			}
		}
		if commit {
			if err := tx.Commit(); err != nil {
				fail(err)
			}
			fmt.Println("committed")
		} else {
			if err := tx.Rollback(); err != nil {
				fail(err)
			}
			_, _ = rb.WriteString(strings.Join(keys, "\n") + "\n")
		}
	}
}

type crashDB struct {
	driver, dsn string
	db          *sql.DB
}

func TestCrash(t *testing.T) {
	const rounds = 10
	dbs := map[string]func(t *testing.T) crashDB{
		"sqlite": func(t *testing.T) crashDB {
			dsn := sqliteDSN(filepath.Join(t.TempDir(), "crash.db"))
			db, err := sql.Open("sqlite", dsn)
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			return crashDB{"sqlite", dsn, db}
		},
		"postgres": func(t *testing.T) crashDB {
			dsn := pgDatabase(t)
			db := openPgx(t, dsn)
			return crashDB{"pgx", dsn, db}
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			c := dbs[name](t)
			_, err := c.db.Exec("CREATE TABLE crash_truth (k TEXT PRIMARY KEY)")
			require.NoError(t, err)
			logPath := filepath.Join(t.TempDir(), "delivered.log")
			rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
			for round := range rounds {
				runCrashChild(t, c, logPath, round, 30+rnd.IntN(90), time.Duration(rnd.IntN(20))*time.Millisecond)
			}
			// Recovery: one more Outbox, in this process, delivers the rest.
			f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			require.NoError(t, err)
			defer f.Close()
			m := eventbus.New[string]()
			_, err = m.RegisterListener("crash.>", crashListener(f, nil))
			require.NoError(t, err)
			ctx := testCtx(t)
			ob, err := outbox.New(ctx, c.db, m, crashOptions()...)
			require.NoError(t, err)
			require.NoError(t, ob.Flush(ctx))
			require.NoError(t, ob.Close(ctx))
			require.NoError(t, m.Close(ctx))

			truth := map[string]bool{}
			rows, err := c.db.Query("SELECT k FROM crash_truth")
			require.NoError(t, err)
			for rows.Next() {
				var k string
				require.NoError(t, rows.Scan(&k))
				truth[k] = true
			}
			require.NoError(t, rows.Err())
			delivered, ids := readLog(t, logPath)
			rolledBack, _ := readLog(t, logPath+".rolledback")
			var total, dups, phantom, lost, rbDelivered, idChanged int
			for k, n := range delivered {
				total += n
				dups += n - 1
				if !truth[k] {
					phantom++
				}
				if len(ids[k]) > 1 {
					idChanged++
				}
			}
			for k := range truth {
				if delivered[k] == 0 {
					lost++
				}
			}
			for k := range rolledBack {
				if delivered[k] > 0 {
					rbDelivered++
				}
			}
			t.Logf("crash %s: kills=%d committed=%d rolled-back(logged)=%d delivered=%d duplicates=%d phantom=%d lost=%d",
				name, rounds, len(truth), len(rolledBack), total, dups, phantom, lost)
			assert.Greater(t, len(truth), 1000, "thousands of committed events")
			assert.Greater(t, len(rolledBack), 100, "rolled-back transactions happened")
			assert.Zero(t, phantom, "no delivered event that was not committed")
			assert.Zero(t, rbDelivered, "no rolled-back event delivered")
			assert.Zero(t, lost, "every committed event delivered")
			assert.Zero(t, idChanged, "an event keeps its ID across redeliveries")
		})
	}
}

// runCrashChild starts a child, waits until it has committed commits
// transactions, lets it run for after more (a random moment: the duration is
// the point), and kills it.
func runCrashChild(t *testing.T, c crashDB, logPath string, round, commits int, after time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		crashChildEnv+"="+c.driver, crashDSNEnv+"="+c.dsn, crashLogEnv+"="+logPath,
		crashRoundEnv+"="+strconv.Itoa(round))
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("crash child did not start: %q %v\n%s", line, err, stderr.String())
	}
	for range commits {
		if line, err := out.ReadString('\n'); err != nil || line != "committed\n" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("crash child: %q %v\n%s", line, err, stderr.String())
		}
	}
	drained := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, out); close(drained) }() // keep it writing
	time.Sleep(after)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	<-drained // the pipe ends with the process
	err = cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "child killed, not exited: %v\n%s", err, stderr.String())
}

// readLog counts the keys of a log and collects the IDs each came with.
func readLog(t *testing.T, path string) (count map[string]int, ids map[string]map[string]bool) {
	count, ids = map[string]int{}, map[string]map[string]bool{}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return
	}
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(data), "\n") {
		if line == "" {
			continue
		}
		k, id, _ := strings.Cut(line, " ")
		count[k]++
		if id != "" {
			if ids[k] == nil {
				ids[k] = map[string]bool{}
			}
			ids[k][id] = true
		}
	}
	return
}
