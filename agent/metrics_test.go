package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jobrun/jobrun/cache"
)

func TestMetricsWatchCaches(t *testing.T) {
	c, err := cache.Open(filepath.Join(t.TempDir(), "caches"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	m.WatchCaches(c)
	scrape := func() (vols, bytes float64) {
		t.Helper()
		fams, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			switch f.GetName() {
			case "jobrun_agent_cache_volumes":
				vols = f.GetMetric()[0].GetGauge().GetValue()
			case "jobrun_agent_cache_bytes":
				bytes = f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return vols, bytes
	}
	if v, b := scrape(); v != 0 || b != 0 {
		t.Fatalf("no volumes yet: %v volumes, %v bytes", v, b)
	}
	ctx := context.Background()
	vol, err := c.Acquire(ctx, cache.Request{Repo: "example.com/app", Name: "deps"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol.Path(), "mod.zip"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := vol.Release(ctx, true); err != nil {
		t.Fatal(err)
	}
	if v, b := scrape(); v != 1 || b < 64<<10 {
		t.Fatalf("after a 64 KiB volume: %v volumes, %v bytes", v, b)
	}
}
