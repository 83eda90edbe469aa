package main

import (
	"bytes"
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/jobrun/jobrun/bench/internal/result"
)

// A colour per tool slot; jobrun's own tools come first in every bench, in
// blue.
var palette = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, {0x2c, 0xa0, 0x2c, 0xff}, {0xff, 0x7f, 0x0e, 0xff},
	{0xd6, 0x27, 0x28, 0xff}, {0x94, 0x67, 0xbd, 0xff}, {0x8c, 0x56, 0x4b, 0xff},
	{0xe3, 0x77, 0xc2, 0xff}, {0x7f, 0x7f, 0x7f, 0xff},
}

// kind is how a group is drawn: as asked by its first metric, else a box
// plot when every tool has at least 10 samples and bars of the medians
// otherwise.
func kind(g group) string {
	if c := g.ms[0].Chart; c != "" {
		return c
	}
	for _, m := range g.ms {
		if len(m.Samples) < 10 {
			return "bars"
		}
	}
	return "box"
}

// chart draws g as an SVG file in dir and returns its name.
func chart(dir string, f *result.File, g group) (string, error) {
	p := plot.New()
	p.Title.Text = f.Bench + ": " + g.metric
	unit := g.ms[0].Unit
	names := make([]string, len(g.ms))
	for i, m := range g.ms {
		names[i] = m.Tool
		if m.Unit != unit {
			return "", fmt.Errorf("tools %s and %s measure it in %s and %s", g.ms[0].Tool, m.Tool, unit, m.Unit)
		}
	}
	// Tools run down the page, the first on top.
	rev := func(i int) float64 { return float64(len(g.ms) - 1 - i) }
	// Leading spaces: room for a browser's font a little wider than the
	// one the plot measured with (SVG does not draw them).
	rows := make([]string, len(names))
	for i, n := range names {
		rows[len(names)-1-i] = "   " + n
	}
	height := vg.Length(1.2+0.45*float64(len(g.ms))) * vg.Inch
	switch k := kind(g); k {
	case "box":
		p.X.Label.Text = unit + " (box: quartiles; whiskers: 1.5 IQR; dots: outliers)"
		for i, m := range g.ms {
			b, err := plotter.NewBoxPlot(vg.Points(14), rev(i), plotter.Values(m.Samples))
			if err != nil {
				return "", err
			}
			b.Horizontal = true
			b.FillColor = palette[i%len(palette)]
			b.MedianStyle.Width = vg.Points(2)
			p.Add(b)
		}
		p.NominalY(rows...)
		p.X.Min = 0
	case "bars":
		p.X.Label.Text = unit + " (median)"
		for i, m := range g.ms {
			// One bar chart per tool, so each has its colour.
			vals := make(plotter.Values, len(g.ms))
			vals[len(g.ms)-1-i] = m.Quantiles["p50"]
			b, err := plotter.NewBarChart(vals, vg.Points(14))
			if err != nil {
				return "", err
			}
			b.Horizontal = true
			b.Color = palette[i%len(palette)]
			b.LineStyle.Width = 0
			p.Add(b)
		}
		p.NominalY(rows...)
		p.X.Min = 0
	case "quantiles":
		p.X.Label.Text = unit
		qs := []string{"p50", "p90", "p99"}
		w := vg.Points(8)
		for j, q := range qs {
			vals := make(plotter.Values, len(g.ms))
			for i, m := range g.ms {
				vals[len(g.ms)-1-i] = m.Quantiles[q]
			}
			b, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return "", err
			}
			b.Horizontal = true
			b.Color = palette[j%len(palette)]
			b.LineStyle.Width = 0
			b.Offset = w * vg.Length(1-j)
			p.Add(b)
			p.Legend.Add(q, b)
		}
		p.NominalY(rows...)
		p.X.Min = 0
		// Room on the right for the legend.
		var top float64
		for _, m := range g.ms {
			top = max(top, m.Quantiles["p99"])
		}
		p.X.Max = top * 1.3
		p.Legend.Top = true
		height += vg.Length(0.2*float64(len(g.ms))) * vg.Inch
	default:
		return "", fmt.Errorf("chart kind %q", k)
	}
	p.Add(plotter.NewGrid())
	name := slug(f.Bench) + "-" + slug(g.metric) + ".svg"
	wt, err := p.WriterTo(7*vg.Inch, height, "svg")
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return "", err
	}
	// The SVG names Liberation Sans without embedding it (that would add
	// some 400 KB a chart); Arial and Helvetica have its metrics, so a
	// browser without it still fits the labels where the plot put them.
	b := bytes.ReplaceAll(buf.Bytes(), []byte("font-family:Liberation Sans;"), []byte("font-family:Liberation Sans,Arial,Helvetica,sans-serif;"))
	return name, os.WriteFile(filepath.Join(dir, name), b, 0o644)
}
