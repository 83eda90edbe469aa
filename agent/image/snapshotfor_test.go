package image

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/mount"
)

// TestSnapshotForShiftsOwnersWithoutChown: a snapshot for a job's range
// shows the image's files owned by the range (root's by its first id),
// with whiteouts applied; writes land in an upper dir the range's root
// owns; the path down to the rootfs is traversable, not listable; the
// layers keep their owners and files; Remove leaves nothing. The plain
// snapshot of the same image (the control) shows them owned by root.
func TestSnapshotForShiftsOwnersWithoutChown(t *testing.T) {
	s, state := newStore(t, Options{})
	ref := writeLayout(t, whiteoutImage(t), "v1")
	img, err := s.Resolve(context.Background(), ref, "")
	if err != nil {
		t.Fatal(err)
	}
	m := idmap.Mapping{UID: 3_200_000_000, GID: 3_200_000_000, Size: 65536}
	u, err := idmap.NewUserns(m)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	leaks := leakcheck.Take(t, state)
	layer := s.layerPath(img.Layers[0].DiffID)
	layerFiles := tree(t, layer)

	sn, err := s.SnapshotFor(context.Background(), img, "job-userns", u)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := s.Snapshot(context.Background(), img, "job-plain")
	if err != nil {
		t.Fatal(err)
	}
	checkWhiteouts(t, sn.Rootfs())
	for _, c := range []struct {
		root string
		uid  uint32
	}{{sn.Rootfs(), m.UID}, {plain.Rootfs(), 0}} {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(c.root, "a/kept"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != c.uid || st.Gid != c.uid {
			t.Errorf("%s: a/kept owned by %d:%d, want %d", c.root, st.Uid, st.Gid, c.uid)
		}
	}
	for p, want := range map[string]os.FileMode{s.snaps: 0o711, filepath.Dir(sn.Rootfs()): 0o711} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode().Perm(), err, want)
		}
	}
	upper := filepath.Join(filepath.Dir(sn.Rootfs()), "upper")
	var st unix.Stat_t
	if err := unix.Stat(upper, &st); err != nil || st.Uid != m.UID || st.Gid != m.GID {
		t.Errorf("upper owned by %d:%d (%v), want the range's root", st.Uid, st.Gid, err)
	}
	if err := os.WriteFile(filepath.Join(sn.Rootfs(), "a/new"), []byte("w"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(sn.Rootfs(), "a/kept")); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*Snapshot{sn, plain} {
		if err := x.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	if got := tree(t, layer); got != layerFiles {
		t.Errorf("layer changed:\n%s\nwas\n%s", got, layerFiles)
	}
	if err := unix.Stat(filepath.Join(layer, "a/kept"), &st); err != nil || st.Uid != 0 {
		t.Errorf("layer's a/kept: owner %d (%v)", st.Uid, err)
	}
	if mount.IsMountpoint(sn.Rootfs()) {
		t.Error("still mounted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	leaks.Check(t)
}
