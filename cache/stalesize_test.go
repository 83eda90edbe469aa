package cache

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReleaseLeavesSizeStale: a release without an upload does not walk
// the volume (the walk was on the job's way out); it records that the
// size it has is stale.
func TestReleaseLeavesSizeStale(t *testing.T) {
	m, v := usedVolume(t)
	release(t, v, true)
	md, err := m.readMeta(v.ID())
	if err != nil {
		t.Fatal(err)
	}
	if !md.SizeStale || md.Size != 0 {
		t.Fatalf("after release: size %d, stale %v; want 0 (never measured), stale", md.Size, md.SizeStale)
	}
}

// TestEvictionMeasuresStaleSize: an eviction decision measures a size the
// last release left stale before it sums the sizes, so a volume that
// grew over the budget is evicted, and the size measured is recorded;
// one that did not grow over it stays (the positive control).
func TestEvictionMeasuresStaleSize(t *testing.T) {
	m, _ := newManager(t, Options{})
	const keep = 512 << 10
	// Measured at 0 while empty, then grown by a second use whose
	// release leaves the size stale: without measuring again, the
	// decision would read 0 and keep it.
	big := acquire(t, m, Request{Repo: "r", Name: "big"})
	release(t, big, true)
	if _, err := m.List(); err != nil {
		t.Fatal(err)
	}
	if md, _ := m.readMeta(big.ID()); md.SizeStale || md.Size > 8192 {
		t.Fatalf("empty volume measured by List: size %d, stale %v", md.Size, md.SizeStale)
	}
	big = acquire(t, m, Request{Repo: "r", Name: "big"})
	writeFile(t, filepath.Join(big.Path(), "f"), strings.Repeat("x", 2*keep))
	release(t, big, true)
	if md, _ := m.readMeta(big.ID()); !md.SizeStale {
		t.Fatalf("after the second release: size %d not stale", md.Size)
	}
	// Used last, so the least recently used volume is the big one.
	small := acquire(t, m, Request{Repo: "r", Name: "small"})
	writeFile(t, filepath.Join(small.Path(), "f"), "x")
	release(t, small, true)
	removed, err := m.Prune(context.Background(), keep)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].ID != big.ID() || removed[0].Size < 2*keep {
		t.Fatalf("Prune(%d) removed %+v; want the grown volume, measured at %d bytes or more", keep, removed, 2*keep)
	}
	if _, err := os.Stat(m.volDir(big.ID())); !os.IsNotExist(err) {
		t.Fatalf("grown volume still there: %v", err)
	}
	list, err := m.List()
	if err != nil || len(list) != 1 || list[0].ID != small.ID() {
		t.Fatalf("left %+v, %v; want the small volume", list, err)
	}
	if md, _ := m.readMeta(small.ID()); md.SizeStale || md.Size == 0 {
		t.Fatalf("small volume after List: size %d, stale %v; want measured", md.Size, md.SizeStale)
	}
}

// TestStaleSizeKeptIfUsedWhileMeasured: a measurement does not clear the
// stale mark of a volume released after it read the metadata.
func TestStaleSizeKeptIfUsedWhileMeasured(t *testing.T) {
	m, _ := newManager(t, Options{})
	v := acquire(t, m, Request{Repo: "r", Name: "c"})
	release(t, v, true)
	md, err := m.readMeta(v.ID())
	if err != nil {
		t.Fatal(err)
	}
	// Used again between the read and the record.
	v = acquire(t, m, Request{Repo: "r", Name: "c"})
	writeFile(t, filepath.Join(v.Path(), "f"), strings.Repeat("x", 64<<10))
	release(t, v, true)
	if n := m.measureStale(v.ID(), md); n < 64<<10 {
		t.Fatalf("measured %d, want the 64 KiB written", n)
	}
	if now, _ := m.readMeta(v.ID()); !now.SizeStale {
		t.Fatal("a volume used while measured lost its stale mark")
	}
	// A measurement from the current metadata records.
	now, _ := m.readMeta(v.ID())
	m.measureStale(v.ID(), now)
	if now, _ = m.readMeta(v.ID()); now.SizeStale || now.Size < 64<<10 {
		t.Fatalf("after measuring: size %d, stale %v", now.Size, now.SizeStale)
	}
}
