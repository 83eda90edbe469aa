package idrange

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/idmap/idmaptest"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestTwoJobsRootsOnOneLayer: two live jobs' ranges, each with a root
// built on the same layer through its own mapping. Each job's root owns
// its root's files and its writes land as its range's ids; neither can
// write the other's.
func TestTwoJobsRootsOnOneLayer(t *testing.T) {
	testenv.RequireRoot(t)
	o := testRoot(t, "jobrun:200000:131072\n", "jobrun:400000:131072\n")
	p := open(t, o)
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	l := filepath.Join(dir, "layers", "l0")
	if err := os.MkdirAll(filepath.Join(l, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l, "etc", "motd"), []byte("image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	snap := leakcheck.Take(t, dir)
	var roots []*idmap.Overlay
	var leases []*Lease
	for _, job := range []string{"a", "b"} {
		lease := allocate(t, p)
		u, err := idmap.NewUserns(lease.Mapping())
		if err != nil {
			t.Fatal(err)
		}
		r, err := idmap.NewOverlay(u, []string{l}, filepath.Join(dir, job))
		u.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Remove()
		roots, leases = append(roots, r), append(leases, lease)
	}
	for i, lease := range leases {
		if _, err := idmaptest.AsRoot(lease.Range.Mapping(), "echo job >> "+filepath.Join(roots[i].Rootfs(), "etc/motd")); err != nil {
			t.Fatalf("job %d writing its own root: %v", i, err)
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(roots[i].Upper(), "etc/motd"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != lease.UID || st.Gid != lease.GID {
			t.Errorf("job %d's write: owned by %d:%d, want its range's root %d:%d", i, st.Uid, st.Gid, lease.UID, lease.GID)
		}
		other := roots[1-i].Rootfs()
		if out, err := idmaptest.AsRoot(lease.Range.Mapping(), "echo evil >> "+filepath.Join(other, "etc/motd")); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("job %d writing the other job's root: %v: %s", i, err, out)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(l, "etc/motd")); string(b) != "image\n" {
		t.Errorf("layer changed: %q", b)
	}
	for _, r := range roots {
		if err := r.Remove(); err != nil {
			t.Error(err)
		}
	}
	snap.Check(t)
}
