package cache

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jobrun/jobrun/internal/lockfile"
)

// TestCleanupRemovesStaleGuards: at start-up, Cleanup removes the guard
// lock files of volumes that are gone and that no live process holds (an
// older agent's, never removed at eviction; one an eviction killed midway
// left); a held guard of a missing volume stays until its holder lets go,
// and so do the guards of volumes that exist, in use or not.
func TestCleanupRemovesStaleGuards(t *testing.T) {
	m, dir := newManager(t, Options{})
	ctx := context.Background()
	guard := func(id string) string { return filepath.Join(dir, "locks", id+".lock") }
	exists := func(p string) bool {
		_, err := os.Lstat(p)
		return err == nil
	}

	kept := acquire(t, m, Request{Repo: "r", Name: "kept"})
	writeFile(t, filepath.Join(kept.Path(), "f"), "x")
	release(t, kept, true)
	inUse := acquire(t, m, Request{Repo: "r", Name: "in-use"})
	defer release(t, inUse, true)

	// An older agent's guard of an evicted key.
	stale := VolumeID("r", "old", "k")
	if err := os.WriteFile(guard(stale), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// An eviction killed between the rename and the removal.
	evicting := VolumeID("r", "evicting", "k")
	writeFile(t, filepath.Join(dir, "vols", evicting+".evicting", "data", "f"), "x")
	if err := os.WriteFile(guard(evicting), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A guard a live holder has, its volume not made yet.
	making := VolumeID("r", "making", "k")
	held, err := lockfile.TryAcquire(guard(making))
	if err != nil {
		t.Fatal(err)
	}

	if err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{stale, evicting} {
		if exists(guard(id)) {
			t.Errorf("the stale guard %s.lock is left", id)
		}
	}
	if exists(filepath.Join(dir, "vols", evicting+".evicting")) {
		t.Errorf("the interrupted eviction's volume is left")
	}
	for _, id := range []string{kept.ID(), inUse.ID(), making} {
		if !exists(guard(id)) {
			t.Errorf("the guard %s.lock of a volume that exists or is held was removed", id)
		}
	}
	if v := acquire(t, m, Request{Repo: "r", Name: "kept"}); !v.Hit() {
		t.Errorf("the kept volume is cold after Cleanup")
	} else {
		release(t, v, true)
	}

	// Once its holder lets go without making the volume, it is stale too.
	if err := held.Release(); err != nil {
		t.Fatal(err)
	}
	if err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if exists(guard(making)) {
		t.Errorf("the guard %s.lock is left after its holder let go", making)
	}
	if !exists(guard(kept.ID())) {
		t.Errorf("the kept volume's guard is gone")
	}
}
