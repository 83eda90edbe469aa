// Package result is the schema of a benchmark's figures: every bench under
// bench/ writes one File as JSON to bench/out/<bench>.json, and
// bench/report reads them all into a report. Go benches use this package
// directly; shell benches use its command, benchresult, so that no bench
// writes the JSON by hand.
//
// A File holds the machine's facts at the bench's start and one Metric per
// tool and figure: its samples (or quantiles alone when only those are
// known), their unit, the ratio of its median to a peer tool's median on
// the same figure, and a target when the project has one.
package result

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// File is one bench's figures.
type File struct {
	Bench   string            `json:"bench"`            // the bench's directory name under bench/
	Title   string            `json:"title"`            // what it compares, one line
	Started time.Time         `json:"started"`          // when it started
	Commit  string            `json:"commit,omitempty"` // jobrun's git describe, when known
	Machine Machine           `json:"machine"`          // facts at the start
	Params  map[string]string `json:"params,omitempty"` // rounds and sizes it ran with
	Metrics []Metric          `json:"metrics"`
}

// Metric is one tool's figure: its samples and what follows from them.
type Metric struct {
	Metric    string             `json:"metric"`              // the figure, e.g. "container life"; tools with the same one are compared
	Tool      string             `json:"tool"`                // who made it: "jobrun", "runc run", ...
	Unit      string             `json:"unit"`                // "ms", "s", "jobs/s", ...
	Samples   []float64          `json:"samples,omitempty"`   // every measurement, in Unit
	Quantiles map[string]float64 `json:"quantiles,omitempty"` // p10, p50, p90, p99 (computed from Samples when there are any)
	Peer      string             `json:"peer,omitempty"`      // the tool this one is compared with, on the same metric
	Ratio     float64            `json:"ratio,omitempty"`     // p50 / the peer's p50
	Target    *Target            `json:"target,omitempty"`
	Chart     string             `json:"chart,omitempty"` // how the report draws the metric: "box", "bars" or "quantiles"
}

// Target is a goal for one of a metric's figures: Of ("ratio" or a
// quantile such as "p50") compared by Op ("<", "<=", ">", ">=") with Value.
type Target struct {
	Of    string  `json:"of"`
	Op    string  `json:"op"`
	Value float64 `json:"value"`
	Met   bool    `json:"met"`
}

// String is the target as written: "ratio <= 0.5".
func (t *Target) String() string {
	return fmt.Sprintf("%s %s %s", t.Of, t.Op, strconv.FormatFloat(t.Value, 'g', -1, 64))
}

// ParseTarget reads a target written as "ratio<=0.5" or "p50 < 300".
func ParseTarget(s string) (*Target, error) {
	s = strings.ReplaceAll(s, " ", "")
	i := strings.IndexAny(s, "<>")
	if i <= 0 {
		return nil, fmt.Errorf("target %q: want FIGURE OP VALUE, e.g. ratio<=0.5 or p50<300", s)
	}
	t := &Target{Of: s[:i], Op: s[i : i+1]}
	rest := s[i+1:]
	if strings.HasPrefix(rest, "=") {
		t.Op += "="
		rest = rest[1:]
	}
	if t.Of != "ratio" && !isQuantile(t.Of) {
		return nil, fmt.Errorf("target %q: %q is neither ratio nor a quantile like p50", s, t.Of)
	}
	v, err := strconv.ParseFloat(rest, 64)
	if err != nil {
		return nil, fmt.Errorf("target %q: value: %w", s, err)
	}
	t.Value = v
	return t, nil
}

func isQuantile(s string) bool {
	q, err := strconv.Atoi(strings.TrimPrefix(s, "p"))
	return strings.HasPrefix(s, "p") && err == nil && q >= 0 && q <= 100
}

// New starts a bench's File, with the machine's facts (load included) as
// they are now.
func New(bench, title string) *File {
	return &File{Bench: bench, Title: title, Started: time.Now().UTC().Truncate(time.Second),
		Commit: os.Getenv("JOBRUN_COMMIT"), Machine: ReadMachine()}
}

// Param records a parameter the bench ran with.
func (f *File) Param(key string, value any) {
	if f.Params == nil {
		f.Params = map[string]string{}
	}
	f.Params[key] = fmt.Sprint(value)
}

// Add appends m and returns it for the caller to set a peer or target on.
func (f *File) Add(m Metric) *Metric {
	f.Metrics = append(f.Metrics, m)
	return &f.Metrics[len(f.Metrics)-1]
}

// Durations adds a metric of durations, in milliseconds.
func (f *File) Durations(metric, tool string, d []time.Duration) *Metric {
	s := make([]float64, len(d))
	for i, v := range d {
		s[i] = float64(v) / float64(time.Millisecond)
	}
	return f.Add(Metric{Metric: metric, Tool: tool, Unit: "ms", Samples: s})
}

// Compare sets every metric of the named figure whose tool is not peer to
// be compared with peer.
func (f *File) Compare(metric, peer string) {
	for i := range f.Metrics {
		if m := &f.Metrics[i]; m.Metric == metric && m.Tool != peer {
			m.Peer = peer
		}
	}
}

// Finish computes the quantiles, ratios and whether targets are met, and
// checks the file: every metric has figures, every peer exists.
func (f *File) Finish() error {
	if f.Bench == "" {
		return errors.New("result: no bench name")
	}
	if len(f.Metrics) == 0 {
		return fmt.Errorf("result %s: no metrics", f.Bench)
	}
	for i := range f.Metrics {
		m := &f.Metrics[i]
		if m.Metric == "" || m.Tool == "" || m.Unit == "" {
			return fmt.Errorf("result %s: metric %d lacks a name, tool or unit: %+v", f.Bench, i, *m)
		}
		for _, v := range m.Samples {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("result %s: %s of %s: sample %v is not a number", f.Bench, m.Metric, m.Tool, v)
			}
		}
		if len(m.Samples) > 0 {
			m.Quantiles = Quantiles(m.Samples)
		}
		if _, ok := m.Quantiles["p50"]; !ok {
			return fmt.Errorf("result %s: %s of %s has neither samples nor a p50", f.Bench, m.Metric, m.Tool)
		}
	}
	for i := range f.Metrics {
		m := &f.Metrics[i]
		if m.Peer != "" {
			p := f.Find(m.Metric, m.Peer)
			if p == nil {
				return fmt.Errorf("result %s: %s of %s is compared with %q, which has no such metric", f.Bench, m.Metric, m.Tool, m.Peer)
			}
			if p.Quantiles["p50"] == 0 {
				return fmt.Errorf("result %s: %s of %s: its peer %s has a median of 0", f.Bench, m.Metric, m.Tool, m.Peer)
			}
			m.Ratio = m.Quantiles["p50"] / p.Quantiles["p50"]
		}
		if t := m.Target; t != nil {
			var v float64
			switch {
			case t.Of == "ratio" && m.Peer == "":
				return fmt.Errorf("result %s: %s of %s has a target on its ratio but no peer", f.Bench, m.Metric, m.Tool)
			case t.Of == "ratio":
				v = m.Ratio
			default:
				q, ok := m.Quantiles[t.Of]
				if !ok {
					q = Quantile(m.Samples, t.Of)
				}
				v = q
			}
			switch t.Op {
			case "<":
				t.Met = v < t.Value
			case "<=":
				t.Met = v <= t.Value
			case ">":
				t.Met = v > t.Value
			case ">=":
				t.Met = v >= t.Value
			default:
				return fmt.Errorf("result %s: %s of %s: target operator %q", f.Bench, m.Metric, m.Tool, t.Op)
			}
		}
		switch m.Chart {
		case "", "box", "bars", "quantiles":
		default:
			return fmt.Errorf("result %s: %s of %s: chart %q is not box, bars or quantiles", f.Bench, m.Metric, m.Tool, m.Chart)
		}
	}
	return nil
}

// Find returns the metric of tool on the named figure, or nil.
func (f *File) Find(metric, tool string) *Metric {
	for i := range f.Metrics {
		if f.Metrics[i].Metric == metric && f.Metrics[i].Tool == tool {
			return &f.Metrics[i]
		}
	}
	return nil
}

// Write finishes f and writes it to path as indented JSON (via a temporary
// file, so a reader never sees half of it).
func (f *File) Write(path string) error {
	if err := f.Finish(); err != nil {
		return err
	}
	return f.Save(path)
}

// Save writes f to path as it is, unchecked: for a File built in steps
// (benchresult add), which Write then finishes.
func (f *File) Save(path string) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("result %s: %w", f.Bench, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("result %s: %w", f.Bench, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("result %s: %w", f.Bench, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("result %s: %w", f.Bench, err)
	}
	return nil
}

// Read reads a File written by Write (or by benchresult) and checks it.
func Read(path string) (*File, error) {
	f, err := Load(path)
	if err != nil {
		return nil, err
	}
	if err := f.Finish(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Load reads a File without checking it: one being built in steps.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &f, nil
}

// Quantiles returns p10, p50, p90 and p99 of samples.
func Quantiles(samples []float64) map[string]float64 {
	q := map[string]float64{}
	for _, p := range []string{"p10", "p50", "p90", "p99"} {
		q[p] = Quantile(samples, p)
	}
	return q
}

// Quantile returns the quantile named p ("p50") of samples, by linear
// interpolation between the closest ranks; 0 without samples.
func Quantile(samples []float64, p string) float64 {
	if len(samples) == 0 {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimPrefix(p, "p"))
	if err != nil {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	pos := float64(len(s)-1) * float64(n) / 100
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}
