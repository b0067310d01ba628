package main

import (
	"fmt"
	"io"
	"strings"
)

// writeTable writes the panels as one Markdown table: each library's
// median, its ratio to the panel's baseline and, when the panel holds
// focus, focus's value divided by the library's (below 1 means focus is
// faster).
func writeTable(w io.Writer, ps []panel, focus string) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "| benchmark | library | median | × baseline | %s ÷ library |\n", focus)
	sb.WriteString("|---|---|--:|--:|--:|\n")
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
			fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s |\n", p.Title, b.Library, formatValue(b.Value, b.Unit), ratio, vsFocus)
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
