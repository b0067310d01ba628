package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example's own checks pass, its durations keep their precision, and
// every line of figures is followed by the lines that explain them.
func TestOutputExplainsEveryCount(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(&out, &errOut); code != 0 {
		t.Fatalf("exit code %d: %s\n%s", code, errOut.String(), out.String())
	}
	text := out.String()
	if strings.Contains(text, " in 0s ") || strings.Contains(text, "needed 0s") {
		t.Errorf("a duration printed as 0s:\n%s", text)
	}
	if !regexp.MustCompile(`in \d+(\.\d+)?(ns|µs|ms|s) \(`).MatchString(text) {
		t.Errorf("no duration with its unit:\n%s", text)
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	figures := regexp.MustCompile(`^(isolation|after Close|stats|lifecycle|dead letter):`)
	for i, line := range lines {
		if !figures.MatchString(line) {
			continue
		}
		if i+1 == len(lines) || !strings.HasPrefix(lines[i+1], "  ") {
			t.Errorf("line %q is not followed by its explanation", line)
		}
	}
	for _, want := range []string{"failed=2: receipt on #124", "not shipped: 103 orders", "rejected=1", "replayed to receipt alone"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}
