package workspace

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/idmap/idmaptest"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/mount"
	"github.com/jobrun/jobrun/internal/testenv"
	"golang.org/x/sys/unix"
)

// The two ranges the tests give jobs, as agent/idrange would.
var (
	rangeA = idmap.Mapping{UID: 300000, GID: 300000, Size: 65536}
	rangeB = idmap.Mapping{UID: 400000, GID: 400000, Size: 65536}
)

// newSource is a job file's directory: a root-owned file and a directory
// of the image's user 5.
func newSource(t *testing.T, src string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "own"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(src, "own"), 5, 5); err != nil {
		t.Fatal(err)
	}
}

// checkRangeWorkspace checks what a job in range A sees and writes in w,
// and that src stays as it was.
func checkRangeWorkspace(t *testing.T, w *Workspace, src string) {
	t.Helper()
	idmaptest.WantOwner(t, filepath.Join(w.Path(), "a"), rangeA.UID)
	idmaptest.WantOwner(t, filepath.Join(w.Path(), "own"), rangeA.UID+5)
	idmaptest.WantOwner(t, filepath.Join(w.dir, "upper"), rangeA.UID)
	idmaptest.MustRunAs(t, rangeA.UID+5, w.Path(), "echo built > own/out && chmod 750 own/out")
	idmaptest.MustRunAs(t, rangeA.UID, w.Path(), "echo changed by job > a && mkdir dist && echo bin > dist/app && chmod 755 dist/app")
	idmaptest.WantOwner(t, filepath.Join(w.dir, "upper", "own", "out"), rangeA.UID+5)
	idmaptest.WantOwner(t, filepath.Join(w.dir, "upper", "a"), rangeA.UID)
	if out, err := idmaptest.RunAs(t, rangeB.UID+5, w.Path(), "echo x > own/other"); err == nil {
		t.Errorf("another range's user 5 wrote the job's user's directory: %s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(src, "a")); string(b) != "original" {
		t.Errorf("job's write reached the source: %q", b)
	}
	for _, p := range []string{"own/out", "dist"} {
		if _, err := os.Lstat(filepath.Join(src, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("job's %s reached the source: %v", p, err)
		}
	}
}

// checkArtifacts stores what the job in range A built and fetches it back:
// the files keep their modes and belong, on the host, to whoever fetched
// them, never to a range id.
func checkArtifacts(t *testing.T, ws string) {
	t.Helper()
	ctx := context.Background()
	c, err := artifacts.Collect(ctx, ws, []string{"own/out", "dist/"}, artifacts.CollectOptions{Required: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := artifacts.NewLocal(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	ref := artifacts.Ref{Repo: "example.com/app", Run: "1", Job: "build", Attempt: 1}
	if _, err := artifacts.Upload(ctx, st, ref, c, artifacts.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if _, err := artifacts.Fetch(ctx, st, ref, dst); err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]fs.FileMode{"own/out": 0o750, "dist/app": 0o755} {
		fi, err := os.Stat(filepath.Join(dst, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("artifact %s is %s, want %s", p, fi.Mode().Perm(), mode)
		}
		idmaptest.WantOwner(t, filepath.Join(dst, p), uint32(os.Geteuid()))
	}
	idmaptest.AssertNoRangeIDs(t, dst, rangeA, rangeB)
}

func TestOverlayForRange(t *testing.T) {
	testenv.RequireRoot(t)
	src, base := t.TempDir(), t.TempDir()
	newSource(t, src)
	snap := leakcheck.Take(t, base)
	ua, ub := idmaptest.NewUserns(t, rangeA), idmaptest.NewUserns(t, rangeB)

	wa, err := Overlay(context.Background(), base, "job-a", src, ua)
	if err != nil {
		t.Fatal(err)
	}
	// A job file's directory reached through a symbolic link.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	wb, err := Overlay(context.Background(), base, "job-b", link, ub)
	if err != nil {
		t.Fatal(err)
	}
	// One mount each: the idmapped view of src came off once the overlay
	// held it.
	if m := idmaptest.MountsUnder(t, base); len(m) != 2 {
		t.Fatalf("mounts under %s: %v; want the two overlays", base, m)
	}
	checkRangeWorkspace(t, wa, src)
	idmaptest.WantOwner(t, filepath.Join(wb.Path(), "a"), rangeB.UID)
	if b, _ := os.ReadFile(filepath.Join(wb.Path(), "a")); string(b) != "original" {
		t.Errorf("range B's workspace reads %q", b)
	}
	checkArtifacts(t, wa.Path())
	for _, w := range []*Workspace{wa, wb} {
		if err := w.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	assertGone(t, base)
	idmaptest.AssertNoRangeIDs(t, src, rangeA, rangeB)
	idmaptest.WantOwner(t, filepath.Join(src, "own"), 5)
	snap.Check(t)
}

// Where src cannot be idmapped or stacked on (here: it is on overlayfs,
// as in a container), the workspace is an overlay over an idmapped view
// of a copy of src owned by the host's root: never a chowned copy.
func TestOverlayForRangeOverACopy(t *testing.T) {
	testenv.RequireRoot(t)
	tmp, base := t.TempDir(), t.TempDir()
	src := filepath.Join(tmp, "src")
	for _, d := range []string{"lower", "upper", "work", "src"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := mount.Overlay(src, []string{filepath.Join(tmp, "lower")}, filepath.Join(tmp, "upper"), filepath.Join(tmp, "work"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mount.Unmount(src) })
	newSource(t, src)
	snap := leakcheck.Take(t, base)

	// Positive control: src really cannot be idmapped here.
	probe := filepath.Join(tmp, "probe")
	os.Mkdir(probe, 0o755)
	if err := idmap.Mount(idmaptest.NewUserns(t, rangeA), src, probe, 0); err == nil {
		mount.Unmount(probe)
		t.Fatal("an overlayfs source could be idmapped; the test proves nothing")
	}

	w, err := Overlay(context.Background(), base, "job", src, idmaptest.NewUserns(t, rangeA))
	if err != nil {
		t.Fatal(err)
	}
	if m := idmaptest.MountsUnder(t, base); len(m) != 1 {
		t.Fatalf("mounts under %s: %v; want one overlay over the copy", base, m)
	}
	idmaptest.WantOwner(t, filepath.Join(w.dir, "copy", "a"), 0)
	checkRangeWorkspace(t, w, src)
	idmaptest.WantOwner(t, filepath.Join(w.dir, "copy", "a"), 0) // the copy is a lower: untouched
	checkArtifacts(t, w.Path())
	if err := w.Remove(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, base)
	idmaptest.AssertNoRangeIDs(t, src, rangeA, rangeB)
	snap.Check(t)
}

// Cleanup removes a dead process's range workspace, and the idmapped view
// of src a crash left mounted half-way through making one, without
// reaching src through it.
func TestCleanupRangeWorkspaces(t *testing.T) {
	testenv.RequireRoot(t)
	src, base := t.TempDir(), t.TempDir()
	newSource(t, src)
	u := idmaptest.NewUserns(t, rangeA)
	dead, err := Overlay(context.Background(), base, "dead", src, u)
	if err != nil {
		t.Fatal(err)
	}
	idmaptest.MustRunAs(t, rangeA.UID, dead.Path(), "echo x > new")
	dead.lock.Release() // a killed process drops its lock, not its mounts
	half, err := create(base, "half")
	if err != nil {
		t.Fatal(err)
	}
	// As idmap.MountOverlay makes it: src's directory, read-only.
	lower := filepath.Join(half.dir, "lower", "0")
	if err := os.MkdirAll(lower, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := idmap.Mount(u, filepath.Dir(src), lower, unix.MOUNT_ATTR_RDONLY); err != nil {
		t.Fatal(err)
	}
	half.lock.Release()

	if err := Cleanup(context.Background(), base); err != nil {
		t.Fatal(err)
	}
	assertGone(t, base)
	if b, _ := os.ReadFile(filepath.Join(src, "a")); string(b) != "original" {
		t.Errorf("Cleanup reached the source: a reads %q", b)
	}
	idmaptest.AssertNoRangeIDs(t, src, rangeA, rangeB)
}

// The artifacts of needed jobs, which the agent places in the workspace
// as the host's root, belong to the job's root once adopted: in a range's
// overlay, the job can change and delete them.
func TestAdoptNeededArtifacts(t *testing.T) {
	testenv.RequireRoot(t)
	ctx := context.Background()
	src, base := t.TempDir(), t.TempDir()
	newSource(t, src)
	// What a needed job stored.
	built := t.TempDir()
	if err := os.MkdirAll(filepath.Join(built, "dist/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(built, "dist/bin/app"), []byte("app"), 0o750); err != nil {
		t.Fatal(err)
	}
	c, err := artifacts.Collect(ctx, built, []string{"dist/"}, artifacts.CollectOptions{Required: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := artifacts.NewLocal(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	ref := artifacts.Ref{Repo: "example.com/app", Run: "1", Job: "build", Attempt: 1}
	if _, err := artifacts.Upload(ctx, st, ref, c, artifacts.UploadOptions{}); err != nil {
		t.Fatal(err)
	}

	for _, u := range []*idmap.Userns{nil, idmaptest.NewUserns(t, rangeA)} {
		w, err := Overlay(ctx, base, "job", src, u)
		if err != nil {
			t.Fatal(err)
		}
		m, err := artifacts.Fetch(ctx, st, ref, w.Path())
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, f := range m.Files {
			paths = append(paths, f.Path)
		}
		if u != nil {
			// The negative case: as fetched, the job's root cannot
			// delete them.
			if out, err := idmaptest.RunAs(t, rangeA.UID, w.Path(), "rm -rf dist"); err == nil {
				t.Fatalf("the job's root deleted root's files before Adopt; the test proves nothing: %s", out)
			}
		}
		if err := Adopt(w.Path(), paths); err != nil {
			t.Fatal(err)
		}
		owner := uint32(0)
		if u != nil {
			owner = rangeA.UID
		}
		for _, p := range []string{"dist", "dist/bin", "dist/bin/app"} {
			idmaptest.WantOwner(t, filepath.Join(w.Path(), p), owner)
		}
		idmaptest.WantOwner(t, filepath.Join(w.Path(), "own"), owner+5) // not the agent's: left alone
		if fi, err := os.Stat(filepath.Join(w.Path(), "dist/bin/app")); err != nil || fi.Mode().Perm() != 0o750 {
			t.Errorf("adopted artifact: %v, %v; want mode 0750", fi, err)
		}
		if u != nil {
			idmaptest.MustRunAs(t, rangeA.UID, w.Path(), "echo more >> dist/bin/app && rm -rf dist")
		}
		if err := w.Remove(); err != nil {
			t.Fatal(err)
		}
		assertGone(t, base)
	}
	idmaptest.AssertNoRangeIDs(t, src, rangeA, rangeB)
}
