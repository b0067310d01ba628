package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// panel is one bar group of the chart: every library's figure for one
// scenario and unit, and the baseline the ratios are taken against.
type panel struct {
	Title    string
	Unit     string
	Bars     []result
	Baseline string // library name, "" when the panel has none
}

// panels groups results into panels, one per scenario and unit in units
// (in the order the scenarios first appear), and picks each panel's
// baseline: the first library in baselines that the panel holds.
func panels(results []result, units, baselines []string) []panel {
	var out []panel
	index := map[[2]string]int{}
	for _, r := range results {
		if !slices.Contains(units, r.Unit) {
			continue
		}
		k := [2]string{r.Scenario, r.Unit}
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			title := r.Scenario
			if r.Unit != "ns/op" {
				title += " " + r.Unit
			}
			out = append(out, panel{Title: title, Unit: r.Unit})
		}
		out[i].Bars = append(out[i].Bars, r)
	}
	for i := range out {
		for _, b := range baselines {
			if slices.ContainsFunc(out[i].Bars, func(r result) bool { return r.Library == b }) {
				out[i].Baseline = b
				break
			}
		}
	}
	return out
}

// Layout, in SVG user units.
const (
	width      = 960
	labelWidth = 110 // library names, left of the bars
	textWidth  = 260 // value and ratio, right of the bars
	barHeight  = 16
	barGap     = 4
	panelGap   = 18
	titleSize  = 28
	margin     = 16
)

// Colours: the baselines grey, the focus library a strong blue, every other
// library the next colour of palette in order of first appearance.
const (
	baselineColour = "#9e9e9e"
	focusColour    = "#1565c0"
)

var palette = []string{"#ef6c00", "#7cb342", "#8e24aa", "#00897b", "#c62828", "#f9a825"}

// writeSVG draws the panels as horizontal bars, each panel on its own
// logarithmic scale, labelled with the value and its ratio to the panel's
// baseline. Bars of focus stand out in colour.
func writeSVG(w io.Writer, title, focus string, ps []panel) error {
	colours := map[string]string{focus: focusColour}
	for _, p := range ps {
		if p.Baseline != "" {
			colours[p.Baseline] = baselineColour
		}
	}
	height := margin + titleSize
	for _, p := range ps {
		height += titleSize + len(p.Bars)*(barHeight+barGap) + panelGap
		for _, b := range p.Bars {
			if _, ok := colours[b.Library]; !ok {
				colours[b.Library] = palette[(len(colours)-2+len(palette))%len(palette)]
			}
		}
	}
	height += margin

	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&sb, `<text x="%d" y="%d" font-size="16" font-weight="bold">%s</text>`+"\n", margin, margin+16, esc(title))
	y := margin + titleSize
	barMax := float64(width - 2*margin - labelWidth - textWidth)
	for _, p := range ps {
		y += titleSize
		note := ""
		if p.Baseline != "" {
			note = "(ratio to " + p.Baseline + ")"
		}
		fmt.Fprintf(&sb, `<text x="%d" y="%d" font-size="14" font-weight="bold">%s <tspan font-weight="normal" fill="#555555">%s, log scale</tspan></text>`+"\n",
			margin, y-8, esc(p.Title), esc(note))
		var base, lo, hi float64
		for _, b := range p.Bars {
			if b.Value > 0 {
				if lo == 0 || b.Value < lo {
					lo = b.Value
				}
				hi = max(hi, b.Value)
			}
			if p.Baseline != "" && b.Library == p.Baseline {
				base = b.Value
			}
		}
		for _, b := range p.Bars {
			length := scale(b.Value, lo, hi) * barMax
			fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", margin+labelWidth-6, y+barHeight-4, esc(b.Library))
			fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", margin+labelWidth, y, length, barHeight, colours[b.Library])
			label := formatValue(b.Value, b.Unit)
			if base > 0 && b.Library != p.Baseline {
				label += fmt.Sprintf("  (%s×)", formatRatio(b.Value/base))
			}
			fmt.Fprintf(&sb, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(margin+labelWidth)+length+6, y+barHeight-4, esc(label))
			y += barHeight + barGap
		}
		y += panelGap
	}
	sb.WriteString("</svg>\n")
	_, err := io.WriteString(w, sb.String())
	return err
}

// scale maps v onto (0, 1] logarithmically between lo and hi, keeping the
// smallest bar visible.
func scale(v, lo, hi float64) float64 {
	const minFrac = 0.04
	if v <= 0 || lo <= 0 || hi <= lo {
		if v > 0 {
			return 1
		}
		return 0
	}
	// Start the axis a factor of 2 below the smallest value, so that it
	// still has a bar worth seeing.
	f := math.Log(v/(lo/2)) / math.Log(hi/(lo/2))
	return max(f, minFrac)
}

// formatValue prints a value with its unit, switching durations to the
// largest unit that keeps them at one or more.
func formatValue(v float64, unit string) string {
	if unit == "ns/op" || strings.HasSuffix(unit, "-ns") || unit == "ns/event" {
		suffix := strings.TrimPrefix(unit, "ns")
		if strings.HasSuffix(unit, "-ns") {
			suffix = ""
		}
		switch {
		case v >= 1e9:
			return fmt.Sprintf("%.3g s%s", v/1e9, suffix)
		case v >= 1e6:
			return fmt.Sprintf("%.3g ms%s", v/1e6, suffix)
		case v >= 1e3:
			return fmt.Sprintf("%.3g µs%s", v/1e3, suffix)
		default:
			return fmt.Sprintf("%.3g ns%s", v, suffix)
		}
	}
	if unit == "B/op" || strings.HasSuffix(unit, "-B") {
		suffix := strings.TrimPrefix(unit, "B")
		if strings.HasSuffix(unit, "-B") {
			suffix = ""
		}
		switch {
		case v >= 1<<30:
			return fmt.Sprintf("%.3g GiB%s", v/(1<<30), suffix)
		case v >= 1<<20:
			return fmt.Sprintf("%.3g MiB%s", v/(1<<20), suffix)
		case v >= 1<<10:
			return fmt.Sprintf("%.3g KiB%s", v/(1<<10), suffix)
		default:
			return fmt.Sprintf("%.3g B%s", v, suffix)
		}
	}
	if v >= 1000 {
		return groupThousands(int64(math.Round(v))) + " " + unit
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}

// groupThousands prints n with commas between groups of three digits.
func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func formatRatio(r float64) string {
	if r > 0 && r < 0.1 {
		return "1/" + groupThousands(int64(math.Round(1/r)))
	}
	if r >= 10 {
		return groupThousands(int64(math.Round(r)))
	}
	return fmt.Sprintf("%.2f", r)
}

func esc(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '"':
			b.WriteString("&quot;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
