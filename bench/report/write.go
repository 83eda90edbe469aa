package main

import (
	"fmt"
	"html"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jobrun/jobrun/bench/internal/result"
)

type chartRef struct{ bench, metric, file string }

type report struct {
	files  []*result.File
	failed []string
	note   string
	charts []chartRef
}

// num formats a figure with three significant digits, without exponent
// for the usual range.
func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100 || v <= -100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10 || v <= -10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1 || v <= -1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func ratio(m *result.Metric) string {
	if m.Peer == "" {
		return ""
	}
	switch {
	case m.Ratio < 0.01:
		return strconv.FormatFloat(m.Ratio, 'g', 2, 64) + "x"
	case m.Ratio < 0.1:
		return strconv.FormatFloat(m.Ratio, 'f', 3, 64) + "x"
	}
	return strconv.FormatFloat(m.Ratio, 'f', 2, 64) + "x"
}

// commit says which commit the benches ran, if known.
func commit(f *result.File) string {
	if f.Commit == "" {
		return ""
	}
	return ", commit " + f.Commit
}

func target(m *result.Metric) (string, string) {
	if m.Target == nil {
		return "", ""
	}
	if m.Target.Met {
		return m.Target.String(), "yes"
	}
	return m.Target.String(), "**no**"
}

func machine(f *result.File) string {
	m := f.Machine
	s := fmt.Sprintf("kernel %s, cgroup %s, %d cores", m.Kernel, m.Cgroup, m.Cores)
	if m.CPU != "" {
		s += " (" + m.CPU + ")"
	}
	return s + fmt.Sprintf(", load %.2f %.2f %.2f at the start, %s", m.Load[0], m.Load[1], m.Load[2], m.Go)
}

func params(f *result.File) string {
	var keys []string
	for k := range f.Params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+f.Params[k])
	}
	return strings.Join(parts, ", ")
}

// summary rows: every metric that has a peer, jobrun's side first.
type row struct {
	f *result.File
	m *result.Metric
}

func (r *report) summary() []row {
	var rows []row
	for _, f := range r.files {
		for i := range f.Metrics {
			if m := &f.Metrics[i]; m.Peer != "" || m.Target != nil {
				rows = append(rows, row{f, m})
			}
		}
	}
	return rows
}

// dates says when the benches ran: one day or a range.
func (r *report) dates() string {
	var first, last time.Time
	for _, f := range r.files {
		if first.IsZero() || f.Started.Before(first) {
			first = f.Started
		}
		if f.Started.After(last) {
			last = f.Started
		}
	}
	if first.IsZero() {
		return "no bench ran"
	}
	a, b := first.Format("2006-01-02 15:04"), last.Format("2006-01-02 15:04 UTC")
	return a + " to " + b
}

func (r *report) chartsOf(bench string) []chartRef {
	var out []chartRef
	for _, c := range r.charts {
		if c.bench == bench {
			out = append(out, c)
		}
	}
	return out
}

func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# jobrun benchmarks\n\n")
	w("Made by `make bench` (bench/run.sh) on %s", r.dates())
	if len(r.files) > 0 {
		w("%s, on: %s.\n", commit(r.files[0]), machine(r.files[0]))
	}
	w("\nEach bench runs jobrun and its peers on the same machine in the same run, alternating, " +
		"so the ratios (jobrun's median / the peer's; below 1 jobrun is faster, for times) matter more than " +
		"the absolute figures, which depend on the machine and its load.\n\n")
	if r.note != "" {
		w("Note: %s\n\n", r.note)
	}
	if len(r.failed) > 0 {
		w("**Failed in this run:** %s (see bench/run.sh's output).\n\n", strings.Join(r.failed, ", "))
	}
	w("## Summary\n\n")
	w("| bench | metric | tool | median | vs | peer's median | ratio | target | met |\n")
	w("|---|---|---|---:|---|---:|---:|---|---|\n")
	for _, x := range r.summary() {
		peer := ""
		if p := x.f.Find(x.m.Metric, x.m.Peer); p != nil {
			peer = num(p.Quantiles["p50"]) + " " + p.Unit
		}
		t, met := target(x.m)
		w("| %s | %s | %s | %s %s | %s | %s | %s | %s | %s |\n", x.f.Bench, x.m.Metric, x.m.Tool,
			num(x.m.Quantiles["p50"]), x.m.Unit, x.m.Peer, peer, ratio(x.m), t, met)
	}
	for _, f := range r.files {
		w("\n## %s\n\n%s\n\n", f.Bench, f.Title)
		w("Ran %s UTC on %s", f.Started.Format("2006-01-02 15:04"), machine(f))
		if p := params(f); p != "" {
			w("; %s", p)
		}
		w(".\n\n")
		w("| metric | tool | N | p10 | median | p90 | p99 | unit | vs | ratio | target | met |\n")
		w("|---|---|---:|---:|---:|---:|---:|---|---|---:|---|---|\n")
		for i := range f.Metrics {
			m := &f.Metrics[i]
			t, met := target(m)
			n := strconv.Itoa(len(m.Samples))
			if len(m.Samples) == 0 {
				n = "-"
			}
			q := m.Quantiles
			w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", m.Metric, m.Tool, n,
				num(q["p10"]), num(q["p50"]), num(q["p90"]), num(q["p99"]), m.Unit, m.Peer, ratio(m), t, met)
		}
		for _, c := range r.chartsOf(f.Bench) {
			w("\n![%s: %s](%s)\n", f.Bench, c.metric, c.file)
		}
	}
	return b.String()
}

func (r *report) html() string {
	var b strings.Builder
	e := html.EscapeString
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>jobrun benchmarks</title>\n")
	w("<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}" +
		"table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em}" +
		"td.n{text-align:right}.no{color:#b00;font-weight:bold}.yes{color:#080}img{max-width:100%%}</style>\n")
	w("</head><body>\n<h1>jobrun benchmarks</h1>\n<p>Made by <code>make bench</code> on %s", e(r.dates()))
	if len(r.files) > 0 {
		w("%s, on: %s.", e(commit(r.files[0])), e(machine(r.files[0])))
	}
	w("</p>\n<p>Ratios are jobrun's median over the peer's, measured in the same run; below 1 jobrun is faster (for times).</p>\n")
	if r.note != "" {
		w("<p>Note: %s</p>\n", e(r.note))
	}
	if len(r.failed) > 0 {
		w("<p class=\"no\">Failed in this run: %s</p>\n", e(strings.Join(r.failed, ", ")))
	}
	met := func(m *result.Metric) string {
		if m.Target == nil {
			return "<td></td><td></td>"
		}
		if m.Target.Met {
			return fmt.Sprintf("<td>%s</td><td class=\"yes\">yes</td>", e(m.Target.String()))
		}
		return fmt.Sprintf("<td>%s</td><td class=\"no\">no</td>", e(m.Target.String()))
	}
	w("<h2>Summary</h2>\n<table><tr><th>bench</th><th>metric</th><th>tool</th><th>median</th><th>vs</th><th>ratio</th><th>target</th><th>met</th></tr>\n")
	for _, x := range r.summary() {
		w("<tr><td>%s</td><td>%s</td><td>%s</td><td class=\"n\">%s %s</td><td>%s</td><td class=\"n\">%s</td>%s</tr>\n",
			e(x.f.Bench), e(x.m.Metric), e(x.m.Tool), num(x.m.Quantiles["p50"]), e(x.m.Unit), e(x.m.Peer), ratio(x.m), met(x.m))
	}
	w("</table>\n")
	for _, f := range r.files {
		w("<h2 id=\"%s\">%s</h2>\n<p>%s</p>\n<p><small>Ran %s UTC on %s", e(f.Bench), e(f.Bench), e(f.Title),
			f.Started.Format("2006-01-02 15:04"), e(machine(f)))
		if p := params(f); p != "" {
			w("; %s", e(p))
		}
		w(".</small></p>\n<table><tr><th>metric</th><th>tool</th><th>N</th><th>p10</th><th>median</th><th>p90</th><th>p99</th><th>unit</th><th>vs</th><th>ratio</th><th>target</th><th>met</th></tr>\n")
		for i := range f.Metrics {
			m := &f.Metrics[i]
			q := m.Quantiles
			w("<tr><td>%s</td><td>%s</td><td class=\"n\">%d</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td>%s</td><td>%s</td><td class=\"n\">%s</td>%s</tr>\n",
				e(m.Metric), e(m.Tool), len(m.Samples), num(q["p10"]), num(q["p50"]), num(q["p90"]), num(q["p99"]),
				e(m.Unit), e(m.Peer), ratio(m), met(m))
		}
		w("</table>\n")
		for _, c := range r.chartsOf(f.Bench) {
			w("<p><img src=\"%s\" alt=\"%s: %s\"></p>\n", e(c.file), e(f.Bench), e(c.metric))
		}
	}
	w("</body></html>\n")
	return b.String()
}
