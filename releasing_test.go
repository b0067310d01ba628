package eventbus_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkReleasing runs scripts/check-releasing.sh in dir and returns its
// output and whether it passed.
func checkReleasing(t *testing.T, dir string) (string, bool) {
	t.Helper()
	script, err := filepath.Abs("scripts/check-releasing.sh")
	require.NoError(t, err)
	cmd := exec.Command("sh", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("running the script: %v", err)
	}
	return string(out), err == nil
}

func TestReleasingListsEveryModuleInOrder(t *testing.T) {
	out, ok := checkReleasing(t, ".")
	assert.True(t, ok, "this repository's RELEASING.md: %s", out)

	dir := t.TempDir()
	write := func(name, text string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	write("go.mod", "module github.com/eventbus-go/eventbus\n\ngo 1.22\n")
	write("natsbus/go.mod", "module github.com/eventbus-go/eventbus/natsbus\n\nreplace github.com/eventbus-go/eventbus => ../\n\nrequire github.com/eventbus-go/eventbus v0.1.0\n")
	write("otelbus/go.mod", "module github.com/eventbus-go/eventbus/otelbus\n\nrequire (\n\tgithub.com/eventbus-go/eventbus v0.1.0\n\tgithub.com/eventbus-go/eventbus/natsbus v0.1.0\n)\n")
	write("examples/x/go.mod", "module example\n\nrequire github.com/eventbus-go/eventbus/otelbus v0.1.0\n")
	table := func(rows ...string) {
		write("RELEASING.md", "| # | module | directory |\n|---|---|---|\n| 1 | core | `"+strings.Join(rows, "` |\n| n | m | `")+"` |\n")
	}

	table("/", "natsbus/", "otelbus/", "examples/x/")
	out, ok = checkReleasing(t, dir)
	assert.True(t, ok, out)

	table("/", "natsbus/", "otelbus/")
	out, ok = checkReleasing(t, dir)
	assert.False(t, ok)
	assert.Contains(t, out, "no row for the module in `examples/x/`")

	table("/", "otelbus/", "natsbus/", "examples/x/")
	out, ok = checkReleasing(t, dir)
	assert.False(t, ok)
	assert.Contains(t, out, "`otelbus/` requires `natsbus/`, which comes after it")

	table("natsbus/", "/", "otelbus/", "examples/x/")
	out, ok = checkReleasing(t, dir)
	assert.False(t, ok)
	assert.Contains(t, out, "`natsbus/` requires `/`, which comes after it")
}
