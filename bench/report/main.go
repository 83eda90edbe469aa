// Command report reads the benches' figures (bench/out/*.json, package
// bench/internal/result) and writes the report next to them: REPORT.md
// with a summary of jobrun against each peer and a table per bench,
// report.html with the same and the charts embedded, and one SVG chart per
// metric, drawn with gonum.org/v1/plot. bench/run.sh runs it after the
// benches; `make bench-report` runs it alone.
// usage: report [-in bench/out] [-out DIR] [-failed a,b] [-note TEXT]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"

	"github.com/jobrun/jobrun/bench/internal/result"
)

func main() {
	in := flag.String("in", "bench/out", "directory of the benches' JSON files")
	out := flag.String("out", "", "directory to write the report to (default: -in)")
	failed := flag.String("failed", "", "comma-separated benches that failed in this run")
	note := flag.String("note", "", "a line on the run for the reader (e.g. the machine's load)")
	flag.Parse()
	// Sans-serif for every chart (gonum/plot's default is a serif).
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
	plotter.DefaultFont = plot.DefaultFont
	if *out == "" {
		*out = *in
	}
	if err := run(*in, *out, splitList(*failed), *note); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// order puts the benches whose charts matter most first; others follow
// by name.
var order = []string{"sandbox", "local", "rootless", "image", "trigger", "cache", "network", "dispatch", "artifacts"}

func rank(name string) int {
	if i := slices.Index(order, name); i >= 0 {
		return i
	}
	return len(order)
}

func run(in, out string, failed []string, note string) error {
	paths, err := filepath.Glob(filepath.Join(in, "*.json"))
	if err != nil {
		return err
	}
	if len(paths) == 0 && len(failed) == 0 {
		return fmt.Errorf("no bench results (*.json) in %s: run bench/run.sh first", in)
	}
	var files []*result.File
	for _, p := range paths {
		f, err := result.Read(p)
		if err != nil {
			return err
		}
		if want := strings.TrimSuffix(filepath.Base(p), ".json"); f.Bench != want {
			return fmt.Errorf("%s: holds bench %q, want %q", p, f.Bench, want)
		}
		files = append(files, f)
	}
	slices.SortStableFunc(files, func(a, b *result.File) int {
		if d := rank(a.Bench) - rank(b.Bench); d != 0 {
			return d
		}
		return strings.Compare(a.Bench, b.Bench)
	})
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	// Old charts go: a renamed metric must not leave its chart behind.
	old, _ := filepath.Glob(filepath.Join(out, "*.svg"))
	for _, p := range old {
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	r := &report{files: files, failed: failed, note: note}
	for _, f := range files {
		for _, g := range groups(f) {
			name, err := chart(out, f, g)
			if err != nil {
				return fmt.Errorf("chart of %s %s: %w", f.Bench, g.metric, err)
			}
			r.charts = append(r.charts, chartRef{bench: f.Bench, metric: g.metric, file: name})
		}
	}
	if err := os.WriteFile(filepath.Join(out, "REPORT.md"), []byte(r.markdown()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "report.html"), []byte(r.html()), 0o644)
}

// group is one figure of a bench and every tool's metric on it, in the
// order the bench wrote them.
type group struct {
	metric string
	ms     []*result.Metric
}

func groups(f *result.File) []group {
	var gs []group
	for i := range f.Metrics {
		m := &f.Metrics[i]
		j := slices.IndexFunc(gs, func(g group) bool { return g.metric == m.Metric })
		if j < 0 {
			gs = append(gs, group{metric: m.Metric})
			j = len(gs) - 1
		}
		gs[j].ms = append(gs[j].ms, m)
	}
	return gs
}

// slug makes a file name part of s: lower case letters, digits and dashes.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}
