// Command benchchart draws an SVG bar chart from `go test -bench` output:
// one group of bars per benchmark (and per extra unit asked for), one bar
// per sub-benchmark, each labelled with its median over every run in the
// input and its ratio to the group's baseline.
//
// Usage:
//
//	go test -run '^$' -bench . -count 6 ./... > new.txt
//	go run ./cmd/benchchart -o chart.svg new.txt
//
// With no file argument it reads standard input; without -o it writes to
// standard output. With -format md it writes the same figures as a
// Markdown table instead, adding how the -focus library compares with each
// of the others. It reads the input with golang.org/x/perf/benchfmt, the reader behind
// benchstat.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchchart:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) (err error) {
	fs := flag.NewFlagSet("benchchart", flag.ContinueOnError)
	out := fs.String("o", "", "write the SVG to this file instead of standard output")
	title := fs.String("title", "eventbus and peers: medians, lower is better", "chart title")
	units := fs.String("units", "ns/op,p50-ns,p99-ns", "comma-separated units to chart, each in its own group of bars")
	baselines := fs.String("baseline", "channel,direct", "comma-separated sub-benchmark names; each group's ratios are to the first one it holds")
	format := fs.String("format", "svg", "output format: svg or md")
	focus := fs.String("focus", "eventbus", "library the md table compares every other one with, and the chart colours apart")
	columns := fs.String("columns", "", "comma-separated units the md table adds as columns, e.g. B/op,allocs/op")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return errors.New("at most one input file")
	}
	if *format != "svg" && *format != "md" {
		return fmt.Errorf("unknown -format %q: want svg or md", *format)
	}

	in := stdin
	if fs.NArg() == 1 {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	results, err := parse(in)
	if err != nil {
		return err
	}
	ps := panels(results, strings.Split(*units, ","), strings.Split(*baselines, ","))
	if len(ps) == 0 {
		return errors.New("no benchmark results with the requested units in the input")
	}

	w := stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}()
		w = f
	}
	if *format == "md" {
		var cols []string
		if *columns != "" {
			cols = strings.Split(*columns, ",")
		}
		return writeTable(w, ps, *focus, results, cols)
	}
	return writeSVG(w, *title, *focus, ps)
}
