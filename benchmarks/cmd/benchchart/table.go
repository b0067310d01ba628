package main

import (
	"fmt"
	"io"
	"strings"
)

// writeTable writes the panels as one Markdown table: each library's
// median, its ratio to the panel's baseline and, when the panel holds
// focus, focus's value divided by the library's (below 1 means focus is
// faster, or smaller). Each unit of columns adds a column with the
// library's median in that unit in the same scenario, taken from results.
func writeTable(w io.Writer, ps []panel, focus string, results []result, columns []string) error {
	extra := map[key]float64{}
	for _, r := range results {
		extra[key{r.Scenario, r.Library, r.Unit}] = r.Value
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "| benchmark | library | median | × baseline | %s ÷ library |", focus)
	for _, c := range columns {
		fmt.Fprintf(&sb, " %s |", c)
	}
	sb.WriteString("\n|---|---|--:|--:|--:|")
	sb.WriteString(strings.Repeat("--:|", len(columns)))
	sb.WriteString("\n")
	for _, p := range ps {
		var base, mine float64
		for _, b := range p.Bars {
			if p.Baseline != "" && b.Library == p.Baseline {
				base = b.Value
			}
			if b.Library == focus {
				mine = b.Value
			}
		}
		for _, b := range p.Bars {
			ratio, vsFocus := "", ""
			if base > 0 {
				ratio = formatRatio(b.Value/base) + "×"
				if b.Library == p.Baseline {
					ratio = "baseline"
				}
			}
			if mine > 0 && b.Value > 0 && b.Library != focus {
				vsFocus = formatRatio(mine/b.Value) + "×"
			}
			fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s |", p.Title, b.Library, formatValue(b.Value, b.Unit), ratio, vsFocus)
			for _, c := range columns {
				cell := ""
				if v, ok := extra[key{b.Scenario, b.Library, c}]; ok {
					cell = formatValue(v, c)
				}
				fmt.Fprintf(&sb, " %s |", cell)
			}
			sb.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
