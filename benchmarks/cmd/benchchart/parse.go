package main

import (
	"io"
	"slices"
	"sort"
	"strings"

	"golang.org/x/perf/benchfmt"
)

// result is one library's figure in one scenario for one unit: the median
// of every sample the input holds for it.
type result struct {
	Scenario string // benchmark name without "Benchmark" and the -procs suffix
	Library  string // sub-benchmark name
	Unit     string // "ns/op", "p50-ns", ...
	Value    float64
	Samples  int
}

// key identifies a result.
type key struct{ scenario, library, unit string }

// parse reads `go test -bench` output with golang.org/x/perf/benchfmt (the
// reader behind benchstat) and returns the median of each (scenario,
// library, unit), in the order scenarios and libraries first appear in the
// input. Lines that are not benchmark results (configuration, logs, PASS)
// are skipped, so the output of several packages, or of -count runs, may be
// concatenated; a malformed result line is an error that names its line.
// Values keep the unit they were written in ("ns/op", not benchfmt's tidied
// "sec/op"). Benchmarks without a sub-benchmark are reported under the
// library name "".
func parse(r io.Reader) ([]result, error) {
	samples := map[key][]float64{}
	var order []key
	br := benchfmt.NewReader(r, "input")
	for br.Scan() {
		switch rec := br.Result().(type) {
		case *benchfmt.SyntaxError:
			return nil, rec
		case *benchfmt.Result:
			scenario, library := splitName(rec.Name)
			for _, v := range rec.Values {
				value, unit := v.Value, v.Unit
				if v.OrigUnit != "" {
					value, unit = v.OrigValue, v.OrigUnit
				}
				k := key{scenario, library, unit}
				if _, ok := samples[k]; !ok {
					order = append(order, k)
				}
				samples[k] = append(samples[k], value)
			}
		}
	}
	if err := br.Err(); err != nil {
		return nil, err
	}
	out := make([]result, 0, len(order))
	for _, k := range order {
		out = append(out, result{Scenario: k.scenario, Library: k.library, Unit: k.unit, Value: median(samples[k]), Samples: len(samples[k])})
	}
	return out, nil
}

// splitName turns the name "EmitSync1/eventbus-2" (benchfmt drops the
// "Benchmark" prefix) into ("EmitSync1", "eventbus"): the base name, and
// the sub-benchmark parts without the GOMAXPROCS suffix.
func splitName(name benchfmt.Name) (scenario, library string) {
	base, parts := name.Parts()
	var sub []byte
	for _, p := range parts {
		if p[0] == '/' {
			sub = append(sub, p...)
		}
	}
	return string(base), strings.TrimPrefix(string(sub), "/")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
