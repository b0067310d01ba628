package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"
)

// backend is a database the tests run against.
type backend struct {
	name string
	open func(t testing.TB) *sql.DB
}

var backends = []backend{
	{"sqlite", openSQLite},
	{"postgres", openPostgres},
}

// forEachDB runs f once per database, as subtests.
func forEachDB(t *testing.T, f func(t *testing.T, db *sql.DB)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.open(t)) })
	}
}

func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(20000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
}

func openSQLite(t testing.TB) *sql.DB {
	db, err := sql.Open("sqlite", sqliteDSN(filepath.Join(t.TempDir(), "outbox.db")))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

var tableSeq atomic.Int64

// openPostgres connects to the test cluster, in a database of its own for
// this test (dropped afterwards), so tests never see each other's tables.
func openPostgres(t testing.TB) *sql.DB { return openPgx(t, pgDatabase(t)) }

// openPgx opens a pool on dsn (another process's, as far as the outbox
// can tell), closed when the test ends.
func openPgx(t testing.TB, dsn string) *sql.DB {
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// pgDatabase creates a database for this test in the test cluster, dropped
// at its end, and returns its DSN.
func pgDatabase(t testing.TB) string {
	dsn := pgDSN(t)
	admin, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	defer admin.Close()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), tableSeq.Add(1))
	_, err = admin.Exec("CREATE DATABASE " + name)
	require.NoError(t, err)
	t.Cleanup(func() {
		a, err := sql.Open("pgx", dsn)
		if err == nil {
			_, _ = a.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			_ = a.Close()
		}
	})
	return strings.Replace(dsn, "/postgres?", "/"+name+"?", 1)
}

// The PostgreSQL cluster of the test binary: started by the first test
// that needs it, on a free loopback port, in a temporary directory, and
// stopped and removed by TestMain. If it cannot be started (PostgreSQL not
// installed), every PostgreSQL test fails: .ci/run installs it.
var pg struct {
	once sync.Once
	dsn  string
	err  error
	dir  string
	data string
	bin  string
	cred *syscall.Credential
}

func pgDSN(t testing.TB) string {
	t.Helper()
	pg.once.Do(startPostgres)
	if pg.err != nil {
		t.Fatalf("PostgreSQL test cluster: %v (install PostgreSQL: apt-get install postgresql-15; .ci/run does)", pg.err)
	}
	return pg.dsn
}

// pgBin finds initdb and pg_ctl: on PATH, or Debian's
// /usr/lib/postgresql/<version>/bin, newest first.
func pgBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("initdb not found on PATH nor in /usr/lib/postgresql/*/bin")
}

func pgCmd(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(pg.bin, name), args...)
	if pg.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func startPostgres() {
	bin, err := pgBin()
	if err != nil {
		pg.err = err
		return
	}
	pg.bin = bin
	dir, err := os.MkdirTemp("", "outbox-pg-")
	if err != nil {
		pg.err = err
		return
	}
	pg.dir = dir
	pg.data = filepath.Join(dir, "data")
	if os.Geteuid() == 0 { // PostgreSQL refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			pg.err = fmt.Errorf("running as root and no postgres user: %w", err)
			return
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		pg.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			pg.err = err
			return
		}
	}
	if out, err := pgCmd("initdb", "-D", pg.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		pg.err = fmt.Errorf("initdb: %w\n%s", err, out)
		return
	}
	port, err := freePort()
	if err != nil {
		pg.err = err
		return
	}
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c full_page_writes=off -c max_connections=200", port, dir)
	if out, err := pgCmd("pg_ctl", "-D", pg.data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		pg.err = fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, log)
		return
	}
	pg.dsn = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", pg.dsn)
	if err == nil {
		err = db.PingContext(ctx)
		_ = db.Close()
	}
	pg.err = err
}

// stopPostgres stops and removes the cluster, if one was started.
func stopPostgres() {
	if pg.data != "" && pg.dsn != "" {
		_ = pgCmd("pg_ctl", "-D", pg.data, "-m", "immediate", "-w", "stop").Run()
	}
	if pg.dir != "" {
		_ = os.RemoveAll(pg.dir)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
