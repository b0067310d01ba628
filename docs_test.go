package eventbus_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// body returns the lines of the function that starts with sig in src, up to
// its closing brace, without the signature, the closing brace and
// comments.
func body(t *testing.T, src, sig string) string {
	t.Helper()
	i := strings.Index(src, sig)
	require.GreaterOrEqual(t, i, 0, "no %q", sig)
	var out []string
	for _, line := range strings.Split(src[i+len(sig):], "\n")[1:] {
		if line == "}" {
			break
		}
		if c := strings.Index(line, "//"); c >= 0 {
			line = line[:c]
		}
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// The README's first program is Example, whose output go test checks, and
// it defines what it uses.
func TestReadmeFirstProgramIsExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	examples, err := os.ReadFile("example_test.go")
	require.NoError(t, err)
	start := strings.Index(string(readme), "```go\n")
	require.GreaterOrEqual(t, start, 0)
	snippet := string(readme)[start:]
	snippet = snippet[:strings.Index(snippet[6:], "```")+6]
	assert.Contains(t, snippet, "package main")
	assert.Contains(t, snippet, "type OrderCreated struct")
	assert.Contains(t, snippet, `"github.com/eventbus-go/eventbus"`)
	want := body(t, string(examples), "func Example() {")
	assert.Equal(t, want, body(t, snippet, "func main() {"), "comments (Example's Output among them) aside")
}
