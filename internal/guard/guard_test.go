package guard_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/eventbus-go/eventbus/internal/guard"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errGone = errors.New("gone")

// The guard's error is found however middleware wraps it, still matches
// the error it holds, and is told from that error made by anyone else.
func TestIsTellsTheGuardsErrorFromTheSameErrorElsewhere(t *testing.T) {
	skip := &guard.Skipped{Err: errGone}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{skip, true},
		{fmt.Errorf("middleware: %w", skip), true},
		{errors.Join(errors.New("other"), fmt.Errorf("x: %w", skip)), true},
		{errGone, false},
		{fmt.Errorf("relay: %w", errGone), false},
		{nil, false},
	} {
		if got := guard.Is(tc.err); got != tc.want {
			t.Errorf("Is(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if !errors.Is(skip, errGone) || skip.Error() != errGone.Error() {
		t.Errorf("the guard's error does not stand for %v", errGone)
	}
}
