package image

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/idmap/idmaptest"
	"github.com/jobrun/jobrun/internal/leakcheck"
)

// ownerOf is the host uid a/kept shows in root.
func ownerOf(t *testing.T, root string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(root, "a/kept"), &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid
}

// TestSnapshotForKeepsOneViewPerRange: the jobs of one range share one
// read-only idmapped view of the layers, made by the first and kept by
// the store (no mount per job); another range gets its own, never the
// first's mapping; snapshots outlive Close, which takes every view off
// (and a later job makes its range's again).
func TestSnapshotForKeepsOneViewPerRange(t *testing.T) {
	s, state := newStore(t, Options{})
	ctx := context.Background()
	img, err := s.Resolve(ctx, writeLayout(t, whiteoutImage(t), "v1"), "")
	if err != nil {
		t.Fatal(err)
	}
	m1 := idmap.Mapping{UID: 3_200_000_000, GID: 3_200_000_000, Size: 65536}
	m2 := idmap.Mapping{UID: 3_200_065_536, GID: 3_200_065_536, Size: 65536}
	leaks := leakcheck.Take(t, state)
	snap := func(id string, m idmap.Mapping) *Snapshot {
		t.Helper()
		// A namespace per job, as the runner makes them.
		u, err := idmap.NewUserns(m)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		sn, err := s.SnapshotFor(ctx, img, id, u)
		if err != nil {
			t.Fatal(err)
		}
		return sn
	}
	a := snap("job-a", m1)
	one := idmaptest.MountsUnder(t, s.viewsBase())
	if len(one) == 0 {
		t.Fatal("no idmapped view of the layers")
	}
	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	b := snap("job-b", m1)
	c := snap("job-c", m1) // live at once with b
	if got := idmaptest.MountsUnder(t, s.viewsBase()); strings.Join(got, " ") != strings.Join(one, " ") {
		t.Errorf("views after three jobs of one range: %v, want the first's %v", got, one)
	}
	if ownerOf(t, b.Rootfs()) != m1.UID || ownerOf(t, c.Rootfs()) != m1.UID {
		t.Errorf("range 1's jobs see a/kept owned by %d and %d, want %d", ownerOf(t, b.Rootfs()), ownerOf(t, c.Rootfs()), m1.UID)
	}
	d := snap("job-d", m2)
	if got := idmaptest.MountsUnder(t, s.viewsBase()); len(got) != 2*len(one) {
		t.Errorf("views with a second range: %v, want %d", got, 2*len(one))
	}
	if got := ownerOf(t, d.Rootfs()); got != m2.UID {
		t.Errorf("range 2's job sees a/kept owned by %d, want %d", got, m2.UID)
	}
	for _, p := range idmaptest.MountsUnder(t, s.viewsBase()) {
		if err := os.WriteFile(filepath.Join(p, "x"), nil, 0o644); err == nil {
			t.Errorf("a view is writable: %s", p)
		}
	}
	if fi, err := os.Stat(s.viewsBase()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("views dir: %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := idmaptest.MountsUnder(t, s.viewsBase()); len(got) != 0 {
		t.Errorf("views after Close: %v", got)
	}
	// The live snapshots keep their own clones of the views.
	for _, x := range []*Snapshot{b, c, d} {
		if _, err := os.ReadFile(filepath.Join(x.Rootfs(), "a/kept")); err != nil {
			t.Errorf("after Close: %v", err)
		}
		if err := x.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	// Closed, the store makes a range's view again when asked.
	e := snap("job-e", m2)
	if got := idmaptest.MountsUnder(t, s.viewsBase()); len(got) != len(one) || ownerOf(t, e.Rootfs()) != m2.UID {
		t.Errorf("views after Close and a job: %v", got)
	}
	if err := e.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	leaks.Check(t)
}

// TestCleanupRemovesViewsOfKilledProcess: the views a process left
// mounted when it died (its lock free) come off at the next Cleanup,
// while a live store's views stay (the control).
func TestCleanupRemovesViewsOfKilledProcess(t *testing.T) {
	s, state := newStore(t, Options{})
	ctx := context.Background()
	img, err := s.Resolve(ctx, writeLayout(t, whiteoutImage(t), "v1"), "")
	if err != nil {
		t.Fatal(err)
	}
	leaks := leakcheck.Take(t, state)
	u, err := idmap.NewUserns(idmap.Mapping{UID: 3_200_000_000, GID: 3_200_000_000, Size: 65536})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	dead := func() *Store {
		st, err := Open(s.dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		sn, err := st.SnapshotFor(ctx, img, "job-dead", u)
		if err != nil {
			t.Fatal(err)
		}
		if err := sn.Remove(); err != nil {
			t.Fatal(err)
		}
		return st
	}()
	live, err := s.SnapshotFor(ctx, img, "job-live", u)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Remove()
	all := idmaptest.MountsUnder(t, s.viewsBase())
	if len(all) < 2 {
		t.Fatalf("views of two stores: %v", all)
	}
	// The dead process's lock goes with it; its mounts stay.
	dead.views.lock.Release()
	other, err := Open(s.dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	left := idmaptest.MountsUnder(t, s.viewsBase())
	if len(left) != len(all)/2 {
		t.Fatalf("views after Cleanup: %v (of %v)", left, all)
	}
	for _, p := range left {
		if !strings.HasPrefix(p, s.views.dir+"/") {
			t.Errorf("the live store's view went, not the dead one's: %v", left)
		}
	}
	if _, err := os.Stat(dead.views.dir); !os.IsNotExist(err) {
		t.Errorf("dead views dir: %v", err)
	}
	// The live store's snapshot still works, and so does its view.
	if ownerOf(t, live.Rootfs()) != 3_200_000_000 {
		t.Error("live snapshot's owner")
	}
	if err := live.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	leaks.Check(t)
}
