package eventbustest_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeT is a testing.TB whose failures are recorded rather than reported,
// so that tests can check how the helpers fail. Only the methods the
// helpers call are implemented; Fatalf ends the goroutine, as t.FailNow
// does, so helpers that may fail run inside fakeT.run.
type fakeT struct {
	testing.TB

	mu       sync.Mutex
	failures []string
	fatal    bool
	cleanups []func()
}

func (f *fakeT) Helper() {}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, fmt.Sprintf(format, args...))
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.failures = append(f.failures, fmt.Sprintf(format, args...))
	f.fatal = true
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeT) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func (f *fakeT) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// run calls fn in a goroutine of its own, so that Fatalf can end it, and
// reports whether fn returned normally.
func (f *fakeT) run(fn func()) (returned bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
		returned = true
	}()
	<-done
	return returned
}

// finish runs the cleanups, last first, as the testing package does.
func (f *fakeT) finish() {
	f.mu.Lock()
	cleanups := f.cleanups
	f.cleanups = nil
	f.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		f.run(cleanups[i])
	}
}

// messages returns the failures reported so far, joined.
func (f *fakeT) messages() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.failures, "\n")
}

// run runs a test body with a stand-in testing.TB, as the testing package
// would run a test function, and prints its failures, if any. Examples use
// it because they have no *testing.T.
func run(body func(t testing.TB)) {
	f := &fakeT{}
	f.run(func() { body(f) })
	f.finish()
	if msg := f.messages(); msg != "" {
		fmt.Println("FAIL:", msg)
	}
}

// deadline returns a context that bounds a wait in a test: it ends only if
// what the test waits for never happens.
func deadline(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// expired returns a context that is already done.
func expired() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
