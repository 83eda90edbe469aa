package cache

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestEvictLeavesNoGuardLock: evicting a volume removes its guard lock
// file with it, so a host that sees a new key every job does not gather
// one empty file per key forever; a held volume keeps its volume and lock
// (the positive control), and an evicted key can be used again.
func TestEvictLeavesNoGuardLock(t *testing.T) {
	m, dir := newManager(t, Options{})
	ctx := context.Background()
	gone := acquire(t, m, Request{Repo: "r", Name: "gone"})
	writeFile(t, filepath.Join(gone.Path(), "f"), "x")
	goneID := gone.ID()
	release(t, gone, true)
	held := acquire(t, m, Request{Repo: "r", Name: "held"})
	lock := func(id string) bool {
		_, err := os.Stat(filepath.Join(dir, "locks", id+".lock"))
		return err == nil
	}
	if !lock(goneID) || !lock(held.ID()) {
		t.Fatalf("locks before the eviction: %s %v, %s %v; want both", goneID, lock(goneID), held.ID(), lock(held.ID()))
	}
	removed, err := m.Prune(ctx, 0)
	if err != nil || len(removed) != 1 || removed[0].ID != goneID {
		t.Fatalf("Prune removed %v, %v; want %s alone", removed, err, goneID)
	}
	if lock(goneID) {
		t.Errorf("the evicted volume's lock file %s.lock is left behind", goneID)
	}
	if !lock(held.ID()) {
		t.Errorf("the held volume's lock file is gone")
	}
	release(t, held, true)

	// The key again: a new volume, guarded by a new lock file.
	again := acquire(t, m, Request{Repo: "r", Name: "gone"})
	if again.ID() != goneID || !lock(goneID) {
		t.Errorf("reacquired %s (lock %v), want %s with its lock", again.ID(), lock(goneID), goneID)
	}
	if _, err := os.Stat(filepath.Join(again.Path(), "f")); !os.IsNotExist(err) {
		t.Errorf("the reacquired volume has the evicted content: %v", err)
	}
	release(t, again, true)
}
