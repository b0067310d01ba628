package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/perf/benchfmt"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/eventbus-go/eventbus/benchmarks
cpu: AMD EPYC
BenchmarkEmitAsync1/channel-2     	 1000000	       100.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkEmitAsync1/channel-2     	 1000000	       300.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkEmitAsync1/channel-2     	 1000000	       200.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkEmitAsync1/eventbus-2    	 2000000	        50.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkEmitAsync1/eventbus-2    	 2000000	        70.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkLatency/channel-2        	  100000	      2133 ns/op	      1162 p50-ns	      9000 p99-ns	       0 B/op	       0 allocs/op
BenchmarkLatency/my<lib>-2        	  100000	      4000 ns/op	      2324 p50-ns	     18000 p99-ns	       0 B/op	       0 allocs/op
BenchmarkSolo-2                   	  100000	        12 ns/op
--- BENCH: BenchmarkSolo-2
    solo_test.go:12: a log line
PASS
ok  	github.com/eventbus-go/eventbus/benchmarks	2.145s
`

func TestParse(t *testing.T) {
	results, err := parse(strings.NewReader(sample))
	require.NoError(t, err)
	get := func(scenario, library, unit string) result {
		for _, r := range results {
			if r.Scenario == scenario && r.Library == library && r.Unit == unit {
				return r
			}
		}
		require.FailNow(t, "missing result", "%s/%s %s", scenario, library, unit)
		return result{}
	}
	tests := []struct {
		name                    string
		scenario, library, unit string
		want                    float64
		samples                 int
	}{
		{"odd count takes the middle", "EmitAsync1", "channel", "ns/op", 200, 3},
		{"even count averages the middle two", "EmitAsync1", "eventbus", "ns/op", 60, 2},
		{"custom unit", "Latency", "channel", "p99-ns", 9000, 1},
		{"allocs", "EmitAsync1", "eventbus", "allocs/op", 0, 2},
		{"no sub-benchmark", "Solo", "", "ns/op", 12, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := get(tt.scenario, tt.library, tt.unit)
			assert.Equal(t, tt.want, r.Value)
			assert.Equal(t, tt.samples, r.Samples)
		})
	}
}

func TestParseRejectsBrokenLine(t *testing.T) {
	_, err := parse(strings.NewReader("PASS\nBenchmarkX-2 10 5 ns/op 3\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "input:2", "the error names the line")
	_, err = parse(strings.NewReader("BenchmarkX-2 10 five ns/op\n"))
	assert.Error(t, err)
}

func TestParseKeepsTheUnitsAsWritten(t *testing.T) {
	results, err := parse(strings.NewReader("BenchmarkX-2 10 1500 ns/op 3 MB/s 2 peak-heap-MB\n"))
	require.NoError(t, err)
	var units []string
	for _, r := range results {
		units = append(units, fmt.Sprintf("%v %s", r.Value, r.Unit))
	}
	assert.Equal(t, []string{"1500 ns/op", "3 MB/s", "2 peak-heap-MB"}, units)
}

func TestSplitName(t *testing.T) {
	tests := []struct{ give, scenario, library string }{
		{"EmitSync1/eventbus-2", "EmitSync1", "eventbus"},
		{"EmitSync1/eventbus", "EmitSync1", "eventbus"},
		{"A/b/c-16", "A", "b/c"},
		{"A/with-dash-8", "A", "with-dash"},
		{"Solo-2", "Solo", ""},
	}
	for _, tt := range tests {
		s, l := splitName(benchfmt.Name(tt.give))
		assert.Equal(t, tt.scenario, s, tt.give)
		assert.Equal(t, tt.library, l, tt.give)
	}
}

func TestRunWritesWellFormedSVG(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(nil, strings.NewReader(sample), &out))
	svg := out.String()

	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "output is not well-formed XML")
	}
	assert.Contains(t, svg, "EmitAsync1")
	assert.Contains(t, svg, "Latency p99-ns")
	assert.Contains(t, svg, "my&lt;lib&gt;", "names are escaped")
	assert.Contains(t, svg, "0.30×", "eventbus at 60 ns is 0.30× the channel's 200 ns")
	assert.Contains(t, svg, "2.00×", "2324 p50-ns is 2.00× the channel's 1162")
}

func TestRunNoResults(t *testing.T) {
	err := run(nil, strings.NewReader("PASS\n"), io.Discard)
	assert.Error(t, err)
}

func TestRunWritesMarkdownTable(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run([]string{"-format", "md"}, strings.NewReader(sample), &out))
	md := out.String()
	assert.Contains(t, md, "| EmitAsync1 | channel | 200 ns/op | baseline | 0.30× |\n")
	assert.Contains(t, md, "| EmitAsync1 | eventbus | 60 ns/op | 0.30× |  |\n")
	assert.Contains(t, md, "| Latency p50-ns | my<lib> | 2.32 µs | 2.00× |  |\n")
	assert.Contains(t, md, "| Solo |  | 12 ns/op |  |  |\n", "no baseline, no ratio")
}

func TestRunMarkdownColumns(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run([]string{"-format", "md", "-units", "ns/op", "-columns", "allocs/op,B/op"}, strings.NewReader(sample), &out))
	md := out.String()
	assert.Contains(t, md, "| benchmark | library | median | × baseline | eventbus ÷ library | allocs/op | B/op |\n|---|---|--:|--:|--:|--:|--:|\n")
	assert.Contains(t, md, "| EmitAsync1 | eventbus | 60 ns/op | 0.30× |  | 0 allocs/op | 0 B/op |\n")
	assert.Contains(t, md, "| Solo |  | 12 ns/op |  |  |  |  |\n", "no such unit, empty cells")
}

func TestRunRejectsUnknownFormat(t *testing.T) {
	assert.Error(t, run([]string{"-format", "png"}, strings.NewReader(sample), io.Discard))
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{4.4, "ns/op", "4.4 ns/op"},
		{1291, "ns/op", "1.29 µs/op"},
		{1.23e9, "ns/op", "1.23 s/op"},
		{1623, "p99-ns", "1.62 µs"},
		{2, "peak-goroutines", "2 peak-goroutines"},
		{33095, "peak-goroutines", "33,095 peak-goroutines"},
		{1234567, "allocs/op", "1,234,567 allocs/op"},
		{1234567, "B/op", "1.18 MiB/op"},
		{0.00957, "peak-heap-MB", "0.00957 peak-heap-MB"},
		{0, "B/op", "0 B/op"},
		{552, "B/op", "552 B/op"},
		{267.2 * 1024, "B/op", "267 KiB/op"},
		{1.132 * (1 << 30), "peak-heap-B", "1.13 GiB"},
		{61.04 * (1 << 20), "peak-stack-B", "61 MiB"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, formatValue(tt.v, tt.unit))
	}
}

func TestFormatRatio(t *testing.T) {
	tests := []struct {
		give float64
		want string
	}{
		{1, "1.00"},
		{7.142, "7.14"},
		{37.2, "37"},
		{14276.4, "14,276"},
		{0.5, "0.50"},
		{0.08, "1/13"},
		{2.0 / 881268, "1/440,634"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, formatRatio(tt.give), "%v", tt.give)
	}
}
