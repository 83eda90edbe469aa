package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jobrun/jobrun/agent/config"
	"github.com/jobrun/jobrun/cache"
)

// TestHousekeeperEvictsLRUNeverHeldAndCounts: over a 1.5 MiB cache budget,
// a sweep evicts the least recently used idle volumes until the rest fit,
// never the one a job holds, and the metrics count each eviction and its
// bytes.
func TestHousekeeperEvictsLRUNeverHeldAndCounts(t *testing.T) {
	ctx := context.Background()
	m, err := cache.Open(filepath.Join(t.TempDir(), "caches"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fill := func(name string, release bool) *cache.Volume {
		v, err := m.Acquire(ctx, cache.Request{Repo: "example.com/app", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(v.Path(), "blob"), bytes.Repeat([]byte{1}, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		if release {
			if err := v.Release(ctx, true); err != nil {
				t.Fatal(err)
			}
		}
		return v
	}
	// held is the oldest: the first LRU candidate, but a job holds it.
	held := fill("held", false)
	for _, n := range []string{"a", "b", "c", "d"} {
		fill(n, true)
	}
	met := NewMetrics()
	h := &Housekeeper{Caches: m, Metrics: met,
		CacheBudget: config.Budget{Limit: config.Space{Bytes: 1<<20 + 1<<19}}}
	if err := h.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	var names []string
	var total int64
	vols, _ := m.List()
	for _, v := range vols {
		names = append(names, v.Name)
		total += v.Size
	}
	// held (in use) and d (newest) stay; a, b, c go, oldest first.
	if len(names) != 2 || names[0] != "d" || names[1] != "held" {
		t.Errorf("volumes after sweep: %v, want [d held]", names)
	}
	if total > 1<<20+1<<19 {
		t.Errorf("%d bytes kept, over the budget", total)
	}
	if n := testutil.ToFloat64(met.evicts.WithLabelValues("cache")); n != 3 {
		t.Errorf("jobrun_agent_evictions_total{store=cache} = %v, want 3", n)
	}
	if n := testutil.ToFloat64(met.freed.WithLabelValues("cache")); n < 3<<20 {
		t.Errorf("jobrun_agent_evicted_bytes_total{store=cache} = %v, want at least 3 MiB", n)
	}
	// Released, held is measured and the most recently used: now d,
	// the older, is over the budget and goes.
	if err := held.Release(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := h.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if vols, _ := m.List(); len(vols) != 1 || vols[0].Name != "held" {
		t.Errorf("after releasing held: %+v, want only held", vols)
	}
	if n := testutil.ToFloat64(met.evicts.WithLabelValues("cache")); n != 4 {
		t.Errorf("evictions = %v, want 4", n)
	}
}

// TestHousekeeperMinFreeShrinksBelowBudget: when the filesystem has less
// free than min_free, the caches shrink below their budget (here: a
// floor above the filesystem's size empties every idle volume).
func TestHousekeeperMinFreeShrinksBelowBudget(t *testing.T) {
	ctx := context.Background()
	m, err := cache.Open(filepath.Join(t.TempDir(), "caches"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := m.Acquire(ctx, cache.Request{Repo: "example.com/app", Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(v.Path(), "f"), []byte("data"), 0o644)
	if err := v.Release(ctx, true); err != nil {
		t.Fatal(err)
	}
	h := &Housekeeper{Caches: m, CacheBudget: config.Budget{Limit: config.Space{Percent: 100}, MinFree: config.Space{Percent: 100}}}
	// Control: no floor, a 100% budget keeps the volume.
	h.CacheBudget.MinFree = config.Space{}
	if err := h.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if vols, _ := m.List(); len(vols) != 1 {
		t.Fatalf("without min_free: %d volumes, want 1", len(vols))
	}
	h.CacheBudget.MinFree = config.Space{Percent: 100}
	if err := h.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if vols, _ := m.List(); len(vols) != 0 {
		t.Errorf("with min_free 100%%: %d volumes left, want 0", len(vols))
	}
}
