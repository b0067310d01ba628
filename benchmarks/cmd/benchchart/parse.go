package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
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

// parse reads `go test -bench` output and returns the median of each
// (scenario, library, unit), in the order scenarios and libraries first
// appear in the input. Lines that are not benchmark results are skipped,
// so the output of several packages, or of -count runs, may be
// concatenated. Benchmarks without a sub-benchmark are reported under the
// library name "".
func parse(r io.Reader) ([]result, error) {
	samples := map[key][]float64{}
	var order []key
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(fields[1]); err != nil {
			continue // a benchmark's log line, not its result
		}
		if len(fields)%2 != 0 {
			return nil, fmt.Errorf("line %d: odd number of value/unit fields: %q", line, sc.Text())
		}
		scenario, library := splitName(fields[0])
		for i := 2; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: value %q: %v", line, fields[i], err)
			}
			k := key{scenario, library, fields[i+1]}
			if _, ok := samples[k]; !ok {
				order = append(order, k)
			}
			samples[k] = append(samples[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out := make([]result, 0, len(order))
	for _, k := range order {
		out = append(out, result{Scenario: k.scenario, Library: k.library, Unit: k.unit, Value: median(samples[k]), Samples: len(samples[k])})
	}
	return out, nil
}

// splitName turns "BenchmarkEmitSync1/eventbus-2" into ("EmitSync1",
// "eventbus").
func splitName(name string) (scenario, library string) {
	name = strings.TrimPrefix(name, "Benchmark")
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	scenario, library, _ = strings.Cut(name, "/")
	return scenario, library
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
