package registry

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeEntry stands for a listener: the registry holds entries without
// knowing what they are.
type fakeEntry struct {
	pattern  string
	priority int
	seq      int
}
