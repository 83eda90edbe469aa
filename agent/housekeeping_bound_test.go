package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/agent/config"
	"github.com/jobrun/jobrun/cache"
)

// TestCachesMayExceed: a sweep can skip the caches' sizes only when the
// filesystem's whole use is within the limit and its free space above
// the floor; any other case may need an eviction.
func TestCachesMayExceed(t *testing.T) {
	const total = 1000
	for _, c := range []struct {
		name          string
		b             config.Budget
		avail, fsUsed int64
		want          bool
	}{
		{"within the limit, free above the floor", config.Budget{Limit: config.Space{Percent: 20}, MinFree: config.Space{Percent: 10}}, 800, 200, false},
		{"no floor", config.Budget{Limit: config.Space{Bytes: 300}}, 0, 300, false},
		{"filesystem use over the limit", config.Budget{Limit: config.Space{Percent: 20}, MinFree: config.Space{Percent: 10}}, 700, 201, true},
		{"free space under the floor", config.Budget{Limit: config.Space{Percent: 90}, MinFree: config.Space{Percent: 10}}, 99, 100, true},
		{"no limit set: keep nothing", config.Budget{}, 900, 1, true},
	} {
		if got := cachesMayExceed(c.b, total, c.avail, c.fsUsed); got != c.want {
			t.Errorf("%s: cachesMayExceed = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestSweepMeasuresStaleSizesOnlyWhenItMayEvict: a released volume's size
// is left stale; a sweep whose budget the whole filesystem fits in does
// not measure it (nothing could be evicted), and one that may evict
// measures it before deciding, and evicts the volume that grew over the
// budget (the positive control).
func TestSweepMeasuresStaleSizesOnlyWhenItMayEvict(t *testing.T) {
	ctx := context.Background()
	m, err := cache.Open(filepath.Join(t.TempDir(), "caches"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := m.Acquire(ctx, cache.Request{Repo: "example.com/app", Name: "grown"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.Path(), "blob"), bytes.Repeat([]byte{1}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := v.Release(ctx, true); err != nil {
		t.Fatal(err)
	}
	metaPath := filepath.Join(m.Dir(), "vols", v.ID(), "meta.json")
	stale := func() bool {
		t.Helper()
		b, err := os.ReadFile(metaPath)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(b), `"size_stale": true`)
	}
	if !stale() {
		t.Fatal("after release: size not stale")
	}
	h := &Housekeeper{Caches: m, CacheBudget: config.Budget{Limit: config.Space{Percent: 100}}}
	if err := h.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if !stale() {
		t.Error("a sweep that could evict nothing measured the volume")
	}
	h.CacheBudget = config.Budget{Limit: config.Space{Bytes: 1 << 19}}
	if err := h.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if vols, err := m.List(); err != nil || len(vols) != 0 {
		t.Errorf("over a 512 KiB budget: %+v, %v left; want the 1 MiB volume evicted", vols, err)
	}
}
