package result

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFinishComputesRatiosAndTargets(t *testing.T) {
	f := New("x", "a test")
	f.Durations("life", "jobrun", []time.Duration{2 * time.Millisecond, 4 * time.Millisecond, 3 * time.Millisecond})
	f.Add(Metric{Metric: "life", Tool: "runc", Unit: "ms", Samples: []float64{6, 6, 6}})
	f.Add(Metric{Metric: "life", Tool: "slow", Unit: "ms", Samples: []float64{12}})
	f.Compare("life", "runc")
	f.Find("life", "jobrun").Target = &Target{Of: "ratio", Op: "<=", Value: 0.5}
	f.Find("life", "slow").Target = &Target{Of: "p50", Op: "<", Value: 10}
	path := filepath.Join(t.TempDir(), "x.json")
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	g, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	j := g.Find("life", "jobrun")
	if j.Quantiles["p50"] != 3 || j.Ratio != 0.5 || !j.Target.Met {
		t.Errorf("jobrun: p50 %v ratio %v target %+v; want 3, 0.5, met", j.Quantiles["p50"], j.Ratio, j.Target)
	}
	if s := g.Find("life", "slow"); s.Ratio != 2 || s.Target.Met {
		t.Errorf("slow: ratio %v target %+v; want 2, not met", s.Ratio, s.Target)
	}
	if r := g.Find("life", "runc"); r.Peer != "" || r.Ratio != 0 {
		t.Errorf("the peer itself has peer %q ratio %v", r.Peer, r.Ratio)
	}
	if g.Machine.Cores == 0 || g.Machine.Kernel == "" {
		t.Errorf("machine facts: %+v", g.Machine)
	}
}

func TestFinishRejectsBadFiles(t *testing.T) {
	for name, tc := range map[string]struct {
		m    Metric
		want string
	}{
		"unknown peer":     {Metric{Metric: "a", Tool: "t", Unit: "ms", Samples: []float64{1}, Peer: "nobody"}, "has no such metric"},
		"no samples":       {Metric{Metric: "a", Tool: "t", Unit: "ms"}, "neither samples nor a p50"},
		"no unit":          {Metric{Metric: "a", Tool: "t", Samples: []float64{1}}, "lacks a name, tool or unit"},
		"ratio, no peer":   {Metric{Metric: "a", Tool: "t", Unit: "ms", Samples: []float64{1}, Target: &Target{Of: "ratio", Op: "<", Value: 1}}, "no peer"},
		"chart unknown":    {Metric{Metric: "a", Tool: "t", Unit: "ms", Samples: []float64{1}, Chart: "pie"}, "chart"},
		"quantiles given":  {Metric{Metric: "a", Tool: "t", Unit: "ms", Quantiles: map[string]float64{"p50": 1}}, ""},
		"target operator ": {Metric{Metric: "a", Tool: "t", Unit: "ms", Samples: []float64{1}, Target: &Target{Of: "p50", Op: "=", Value: 1}}, "operator"},
	} {
		f := New("x", "t")
		f.Add(tc.m)
		err := f.Finish()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", name, err, tc.want)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]string{"ratio<=0.5": "ratio <= 0.5", "p50 < 300": "p50 < 300", "p99>=1e3": "p99 >= 1000"} {
		tg, err := ParseTarget(in)
		if err != nil || tg.String() != want {
			t.Errorf("ParseTarget(%q) = %v, %v; want %s", in, tg, err, want)
		}
	}
	for _, in := range []string{"", "0.5", "median<1", "ratio<=x", "p101<3"} {
		if tg, err := ParseTarget(in); err == nil {
			t.Errorf("ParseTarget(%q) = %v, want an error", in, tg)
		}
	}
}

func TestQuantile(t *testing.T) {
	s := []float64{4, 1, 3, 2, 5}
	for p, want := range map[string]float64{"p0": 1, "p50": 3, "p100": 5, "p25": 2, "p90": 4.6} {
		if got := Quantile(s, p); got < want-1e-9 || got > want+1e-9 {
			t.Errorf("Quantile(%v, %s) = %v, want %v", s, p, got, want)
		}
	}
}
