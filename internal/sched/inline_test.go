package sched

import (
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// Batch.Next is on the path of every delivery a listener runs itself: it
// must stay within the compiler's inlining budget (see its comment), or
// each delivery pays a call, its prologue and the copy of its results
// again. The compiler says whether it inlines it when it builds this
// package's tests, whose batcher (fake_test.go) calls Next in its loop. (Its
// "can inline" line for Next is no proof: it may be about the small wrapper
// of an instantiation, which calls the shared body.)
func TestBatchNextIsInlined(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to read the compiler's inlining decisions: %v", err)
	}
	cmd := exec.Command(goTool, "test", "-c", "-o", os.DevNull, "-gcflags=-m", ".")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test -c -gcflags=-m: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)fake_test\.go:\d+:\d+: inlining call to \(\*Batch[^\n]*\)\.Next$`).Match(out) {
		t.Errorf("the batcher's call of Batch.Next is not inlined (go build -gcflags=-m=2 . at the module root shows Next's cost against the budget of 80)")
	}
}
