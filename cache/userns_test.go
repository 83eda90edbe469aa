package cache

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

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

// bindFor is what the runner's idmapped bind of a shared volume gives a
// job in u's range: the volume's directory seen through the mapping.
func bindFor(t *testing.T, u *idmap.Userns, dir string) string {
	t.Helper()
	at := filepath.Join(t.TempDir(), "bind")
	if err := os.Mkdir(at, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := idmap.Mount(u, dir, at, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mount.Unmount(at); err != nil {
			t.Error(err)
		}
	})
	return at
}

func TestPrivateOverlayForRange(t *testing.T) {
	testenv.RequireRoot(t)
	m, dir := newManager(t, Options{})
	base := Request{Repo: "r", Name: "gomod"}
	v := acquire(t, m, base)
	writeFile(t, filepath.Join(v.Path(), "mod/a.txt"), "trusted")
	writeFile(t, filepath.Join(v.Path(), "user/b.txt"), "user's")
	for _, p := range []string{"user", "user/b.txt"} {
		if err := os.Chown(filepath.Join(v.Path(), p), 5, 5); err != nil {
			t.Fatal(err)
		}
	}
	release(t, v, true)
	data := m.dataDir(v.ID())

	snap := leakcheck.Take(t, dir)
	ua, ub := idmaptest.NewUserns(t, rangeA), idmaptest.NewUserns(t, rangeB)
	for _, req := range []Request{
		{Repo: "r", Name: "gomod", Sharing: Private},
		{Repo: "r", Name: "gomod", Untrusted: true},
	} {
		req.Userns = ua
		pa := acquire(t, m, req)
		reqB := req
		reqB.Userns = ub
		pb := acquire(t, m, reqB)
		if pa.Sharing() != Private || pa.Path() == data {
			t.Fatalf("%+v: mode %s at %s; want a private overlay", req, pa.Sharing(), pa.Path())
		}
		// From the host, the overlay shows the volume's files as the
		// range's ids, and its upper belongs to the range's root.
		idmaptest.WantOwner(t, filepath.Join(pa.Path(), "mod/a.txt"), rangeA.UID)
		idmaptest.WantOwner(t, filepath.Join(pa.Path(), "user/b.txt"), rangeA.UID+5)
		idmaptest.WantOwner(t, filepath.Join(pb.Path(), "mod/a.txt"), rangeB.UID)
		idmaptest.WantOwner(t, filepath.Join(filepath.Dir(pa.Path()), "upper"), rangeA.UID)
		if !mountHasOpts(t, pa.Path(), "nosuid", "nodev") {
			t.Errorf("private overlay %s is not nosuid,nodev", pa.Path())
		}

		// The range's user 5 writes its directory; the range's root
		// changes a root-owned file and makes one.
		idmaptest.MustRunAs(t, rangeA.UID+5, pa.Path(), "echo mine > user/new.txt && echo changed > user/b.txt")
		idmaptest.MustRunAs(t, rangeA.UID, pa.Path(), "echo poisoned > mod/a.txt && echo x > evil")
		upper := filepath.Join(filepath.Dir(pa.Path()), "upper")
		idmaptest.WantOwner(t, filepath.Join(upper, "user/new.txt"), rangeA.UID+5)
		idmaptest.WantOwner(t, filepath.Join(upper, "mod/a.txt"), rangeA.UID)
		// Another range's user 5 is a stranger to range A's files.
		if out, err := idmaptest.RunAs(t, rangeB.UID+5, pa.Path(), "echo x > user/other.txt"); err == nil {
			t.Errorf("range B's user wrote range A's user's directory: %s", out)
		}
		// Range B's view and the volume are untouched.
		if got := readFile(t, filepath.Join(pb.Path(), "mod/a.txt")); got != "trusted" {
			t.Errorf("range B's overlay reads %q", got)
		}
		for p, want := range map[string]string{"mod/a.txt": "trusted\n", "user/b.txt": "user's\n"} {
			if got := readFile(t, filepath.Join(data, p)); got != strings.TrimSuffix(want, "\n") {
				t.Errorf("volume's %s reads %q after a private write", p, got)
			}
		}
		if _, err := os.Stat(filepath.Join(data, "evil")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a private write reached the volume: %v", err)
		}
		idmaptest.WantOwner(t, filepath.Join(data, "mod/a.txt"), 0)
		idmaptest.WantOwner(t, filepath.Join(data, "user/b.txt"), 5)
		release(t, pa, true)
		release(t, pb, true)
	}
	idmaptest.AssertNoRangeIDs(t, dir, rangeA, rangeB)
	snap.Check(t)
}

func mountHasOpts(t *testing.T, target string, opts ...string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || f[4] != target {
			continue
		}
		have := map[string]bool{}
		for _, o := range strings.Split(f[5], ",") {
			have[o] = true
		}
		for _, o := range opts {
			if !have[o] {
				return false
			}
		}
		return true
	}
	t.Fatalf("%s is not mounted", target)
	return false
}

// A cache warmed by one job is hit and extended by a job in another
// range: through each job's idmapped bind, the volume's files are stored
// with the container's ids, never a range's.
func TestSharedVolumeAcrossRanges(t *testing.T) {
	testenv.RequireRoot(t)
	m, dir := newManager(t, Options{})
	ua, ub := idmaptest.NewUserns(t, rangeA), idmaptest.NewUserns(t, rangeB)
	for _, sharing := range []Sharing{Shared, Locked} {
		req := Request{Repo: "r", Name: "deps-" + string(sharing), Sharing: sharing, Userns: ua}
		a := acquire(t, m, req)
		if a.Hit() || a.Path() != m.dataDir(a.ID()) {
			t.Fatalf("%s: first use: hit %v at %s; want a cold volume at its data dir", sharing, a.Hit(), a.Path())
		}
		bind := bindFor(t, ua, a.Path())
		idmaptest.MustRunAs(t, rangeA.UID, bind, "mkdir -p pkg/src && echo v1 > pkg/mod.txt")
		// The job's root gives a directory to its user 5 (a host process
		// without the namespace needs root for that: chown to the host id).
		if err := os.Chown(filepath.Join(bind, "pkg/src"), int(rangeA.UID+5), int(rangeA.GID+5)); err != nil {
			t.Fatal(err)
		}
		idmaptest.MustRunAs(t, rangeA.UID+5, bind, "echo built > pkg/src/out.o")
		idmaptest.WantOwner(t, filepath.Join(a.Path(), "pkg/mod.txt"), 0)
		idmaptest.WantOwner(t, filepath.Join(a.Path(), "pkg/src/out.o"), 5)
		release(t, a, true)

		req.Userns = ub
		b := acquire(t, m, req)
		if !b.Hit() {
			t.Errorf("%s: a cache warmed by range A is cold for range B", sharing)
		}
		bind = bindFor(t, ub, b.Path())
		idmaptest.WantOwner(t, filepath.Join(bind, "pkg/mod.txt"), rangeB.UID)
		idmaptest.WantOwner(t, filepath.Join(bind, "pkg/src/out.o"), rangeB.UID+5)
		if got := idmaptest.MustRunAs(t, rangeB.UID+5, bind, "cat pkg/mod.txt pkg/src/out.o && echo more > pkg/src/more.o"); got != "v1\nbuilt\n" {
			t.Errorf("%s: range B reads %q", sharing, got)
		}
		idmaptest.MustRunAs(t, rangeB.UID, bind, "echo v2 >> pkg/mod.txt")
		idmaptest.WantOwner(t, filepath.Join(b.Path(), "pkg/src/more.o"), 5)
		if got := readFile(t, filepath.Join(b.Path(), "pkg/mod.txt")); got != "v1\nv2\n" {
			t.Errorf("%s: range B's extension reads %q on disk", sharing, got)
		}
		// Positive control for the mapping: outside its range, root's
		// own file is the overflow id and not writable.
		if out, err := idmaptest.RunAs(t, rangeA.UID, bind, "echo x >> pkg/mod.txt"); err == nil {
			t.Errorf("%s: range A's root wrote through range B's bind: %s", sharing, out)
		}
		release(t, b, true)
	}
	idmaptest.AssertNoRangeIDs(t, dir, rangeA, rangeB)
	// The volumes stay, as they should; nothing stays mounted.
	if ms := idmaptest.MountsUnder(t, dir); len(ms) > 0 {
		t.Errorf("mounts left under %s: %v", dir, ms)
	}
}

// TestSetuidInCacheReachableByRootOnly: a job's root that makes a
// root-owned file setuid in a shared volume leaves a setuid-root file on
// the host's disk (its root is the range's root, which the idmapped bind
// stores as 0). No one but root may reach it: the cache directory and
// everything above a volume's data are 0700, even where they were made
// readable before. The bit stays through a release (the volume is not
// rewritten); a restore from the remote drops it (see extract).
func TestSetuidInCacheReachableByRootOnly(t *testing.T) {
	testenv.RequireRoot(t)
	// A state dir anyone may enter, and a cache dir an older jobrun (or
	// a loose umask) made readable.
	state := t.TempDir()
	for p := state; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(state, "caches")
	for _, d := range []string{dir, filepath.Join(dir, "vols"), filepath.Join(dir, "private")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	u := idmaptest.NewUserns(t, rangeA)
	req := Request{Repo: "r", Name: "tools", Userns: u}
	v := acquire(t, m, req)
	tool := filepath.Join(v.Path(), "tool")
	true_, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tool, true_, 0o755); err != nil {
		t.Fatal(err)
	}
	bind := bindFor(t, u, v.Path())
	idmaptest.MustRunAs(t, rangeA.UID, bind, "chmod u+s tool")
	fi, err := os.Stat(tool)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSetuid == 0 {
		t.Fatalf("tool is %s after the job's chmod u+s; the test proves nothing", fi.Mode())
	}
	idmaptest.WantOwner(t, tool, 0) // a setuid-root file on the host's disk
	release(t, v, true)

	// Every directory from the state dir down to the volume's data keeps
	// others out: no listing, no reading, at most passing through.
	for p := filepath.Dir(tool); p != state; p = filepath.Dir(p) {
		if p == filepath.Dir(tool) {
			continue // the data dir is the job's own directory
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o066 != 0 {
			t.Errorf("%s is %s: others may list or write it", p, fi.Mode().Perm())
		}
	}
	// An unprivileged host user can neither reach nor run it; root can
	// (the positive control).
	const nobody = 65534
	for _, args := range [][]string{{"stat", tool}, {tool}} {
		cmd := exec.Command(args[0], args[1:]...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		if err := cmd.Run(); err == nil {
			t.Errorf("nobody ran %v on the setuid file: %s", args, out.String())
		} else if !strings.Contains(out.String()+err.Error(), "ermission denied") {
			t.Errorf("nobody's %v failed, but not for want of permission: %v %s", args, err, out.String())
		}
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Errorf("root's %v: %v %s", args, err, out)
		}
	}
	// The bit stays through the release; the next job's bind is nosuid
	// (sandbox bindOpts), so it gives no one root.
	v = acquire(t, m, Request{Repo: "r", Name: "tools", Userns: idmaptest.NewUserns(t, rangeB)})
	if fi, err := os.Stat(tool); err != nil || fi.Mode()&fs.ModeSetuid == 0 {
		t.Errorf("after a release tool is %v, %v; want it still setuid, as documented", fi.Mode(), err)
	}
	release(t, v, true)
}

// A volume restored from the remote never has setuid or setgid files:
// extract keeps permission bits only.
func TestRestoreDropsSetuid(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	p := filepath.Join(src, "tool")
	if err := os.WriteFile(p, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o755|fs.ModeSetuid|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := archive(context.Background(), src, &buf); err != nil {
		t.Fatal(err)
	}
	if _, err := extract(context.Background(), &buf, dst); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dst, "tool"))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode(); got != 0o755 {
		t.Errorf("restored tool is %s, want %s", got, fs.FileMode(0o755))
	}
}

// Cleanup removes a dead process's private overlay made for a range, and
// an idmapped view of a volume that a crash left mounted half-way through
// making one, without reaching the volume's data through it.
func TestCleanupPrivateForRange(t *testing.T) {
	testenv.RequireRoot(t)
	m, dir := newManager(t, Options{})
	v := acquire(t, m, Request{Repo: "r", Name: "n"})
	writeFile(t, filepath.Join(v.Path(), "keep"), "x")
	release(t, v, true)
	data := m.dataDir(v.ID())
	snap := leakcheck.Take(t, dir)

	h := startHolderEnv(t, dir, []string{"JOBRUN_CACHE_HELPER_USERNS=1"}, "private")
	idmaptest.WantOwner(t, filepath.Join(h.paths[0], "keep"), rangeA.UID)
	idmaptest.MustRunAs(t, rangeA.UID, h.paths[0], "echo x > new")
	// A process killed between mounting the idmapped view and the overlay.
	half := filepath.Join(m.dir, "private", v.ID()+"-half")
	lower := filepath.Join(half, "lower", "0")
	if err := os.MkdirAll(lower, 0o700); err != nil {
		t.Fatal(err)
	}
	// As idmap.MountOverlay makes it: the volume's directory, read-only.
	if err := idmap.Mount(idmaptest.NewUserns(t, rangeB), m.volDir(v.ID()), lower, unix.MOUNT_ATTR_RDONLY); err != nil {
		t.Fatal(err)
	}
	// Its lock file, made first, is no longer held.
	if err := os.WriteFile(half+".lock", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.cmd.Process.Kill()
	h.cmd.Wait()
	if !mount.IsMountpoint(h.paths[0]) {
		t.Fatal("the kill itself removed the mount; the test proves nothing")
	}
	if err := m.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{h.paths[0], lower} {
		if mount.IsMountpoint(p) {
			t.Errorf("%s still mounted after Cleanup", p)
		}
	}
	if got := readFile(t, filepath.Join(data, "keep")); got != "x" {
		t.Errorf("Cleanup reached the volume: keep reads %q", got)
	}
	if _, err := os.Stat(half); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("half-made overlay %s left: %v", half, err)
	}
	idmaptest.AssertNoRangeIDs(t, dir, rangeA, rangeB)
	snap.Check(t)
}
