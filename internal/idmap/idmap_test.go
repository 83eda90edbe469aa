package idmap_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/idmap/idmaptest"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
	"golang.org/x/sys/unix"
)

// testMap is a range no test process or file on the host uses.
var testMap = idmap.Mapping{UID: 3_000_000_000, GID: 3_000_100_000, Size: 65536}

// stateDir is a temp dir whose path the ids of a range can traverse, as
// the store's will have to be (0711).
func stateDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// file is one entry of a test layer.
type file struct {
	path     string
	uid, gid int
	mode     os.FileMode // with os.ModeDir for a directory
	data     string
}

func layer(t *testing.T, dir string, files ...file) string {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if f.mode.IsDir() {
			err = os.Mkdir(p, f.mode.Perm())
		} else {
			err = os.WriteFile(p, []byte(f.data), f.mode.Perm())
		}
		if err == nil {
			err = os.Lchown(p, f.uid, f.gid)
		}
		if err == nil {
			// Chown clears setuid; set the mode last, with its bits.
			err = os.Chmod(p, f.mode&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// owner is the host owner and mode of p.
func owner(t *testing.T, p string) (uid, gid uint32, mode uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid, st.Mode
}

func TestMountShiftsOwners(t *testing.T) {
	testenv.RequireRoot(t)
	dir := stateDir(t)
	l := layer(t, filepath.Join(dir, "layer"),
		file{path: "etc/passwd", mode: 0o644, data: "root:x:0:0::/root:/bin/sh\n"},
		file{path: "home/u", uid: 1000, gid: 1001, mode: os.ModeDir | 0o750},
		file{path: "usr/bin/sudo", mode: os.ModeSetuid | 0o755, data: "#!/bin/sh\n"},
		file{path: "big", uid: 70000, gid: 70000, mode: 0o644},
	)
	target := filepath.Join(dir, "mapped")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	snap := leakcheck.Take(t, dir)
	u := idmaptest.NewUserns(t, testMap)
	if err := idmap.Mount(u, l, target, unix.MOUNT_ATTR_RDONLY); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Unmount(target, 0); err != nil {
			t.Error(err)
		}
		u.Close()
		snap.Check(t)
	}()
	// The namespace's process is gone; the mount keeps the namespace.
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path     string
		uid, gid uint32
		mode     uint32
	}{
		{"etc/passwd", testMap.UID, testMap.GID, unix.S_IFREG | 0o644},
		{"home/u", testMap.UID + 1000, testMap.GID + 1001, unix.S_IFDIR | 0o750},
		{"usr/bin/sudo", testMap.UID, testMap.GID, unix.S_IFREG | unix.S_ISUID | 0o755},
		{"big", 65534, 65534, unix.S_IFREG | 0o644}, // outside the mapping: overflow id
	} {
		uid, gid, mode := owner(t, filepath.Join(target, c.path))
		if uid != c.uid || gid != c.gid || mode != c.mode {
			t.Errorf("%s through the mount: %d:%d %o, want %d:%d %o", c.path, uid, gid, mode, c.uid, c.gid, c.mode)
		}
		// Positive control: the layer itself is as unpacked.
		if uid, _, _ := owner(t, filepath.Join(l, c.path)); uid == c.uid {
			t.Errorf("%s in the layer is owned by %d too", c.path, uid)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write through the read-only mount: %v, want EROFS", err)
	}
}

// TestMountWritesStoreUnshiftedIDs: a plain directory (a cache volume)
// idmapped read-write for one range and then for another: what the first
// job's root writes is stored owned by 0 on the host, not by a range id,
// and the next job, in another range, reads and extends it as its root.
func TestMountWritesStoreUnshiftedIDs(t *testing.T) {
	testenv.RequireRoot(t)
	dir := stateDir(t)
	vol := filepath.Join(stateDir(t), "vol") // the volume is meant to change
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	snap := leakcheck.Take(t, dir)
	other := idmap.Mapping{UID: testMap.UID + testMap.Size, GID: testMap.GID + testMap.Size, Size: testMap.Size}
	for i, m := range []idmap.Mapping{testMap, other} {
		target := filepath.Join(dir, fmt.Sprintf("job%d", i))
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		u := idmaptest.NewUserns(t, m)
		if err := idmap.Mount(u, vol, target, 0); err != nil {
			t.Fatal(err)
		}
		u.Close()
		out, err := idmaptest.AsRoot(m, fmt.Sprintf(`cd %s
			cat log 2>/dev/null || true
			echo job%d >> log
			mkdir -p dep && chown 1000:1000 dep`, target, i))
		if err := errors.Join(err, unix.Unmount(target, 0), os.Remove(target)); err != nil {
			t.Fatalf("job %d: %v: %s", i, err, out)
		}
		if want := strings.TrimSpace(strings.Repeat("job0\n", i)); out != want {
			t.Errorf("job %d read %q, want %q", i, out, want)
		}
	}
	for _, c := range []struct {
		path     string
		uid, gid uint32
	}{{"log", 0, 0}, {"dep", 1000, 1000}} {
		if uid, gid, _ := owner(t, filepath.Join(vol, c.path)); uid != c.uid || gid != c.gid {
			t.Errorf("%s on the host: %d:%d, want %d:%d", c.path, uid, gid, c.uid, c.gid)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(vol, "log")); string(b) != "job0\njob1\n" {
		t.Errorf("log: %q", b)
	}
	snap.Check(t)
}

func TestOverlayWritesLandInUpperAsRangeRoot(t *testing.T) {
	testenv.RequireRoot(t)
	dir := stateDir(t)
	// Layers in two directories: one idmapped mount each.
	bottom := layer(t, filepath.Join(dir, "layers", "l0"),
		file{path: "etc/passwd", mode: 0o644, data: "root:x:0:0::/root:/bin/sh\n"},
		file{path: "home/u", uid: 1000, gid: 1000, mode: os.ModeDir | 0o755},
	)
	top := layer(t, filepath.Join(dir, "flat", "l1"),
		file{path: "etc/hostname", mode: 0o600, data: "image\n"},
	)
	snap := leakcheck.Take(t, dir)
	u := idmaptest.NewUserns(t, testMap)
	o, err := idmap.NewOverlay(u, []string{top, bottom}, filepath.Join(dir, "job"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := o.Remove(); err != nil {
			t.Error(err)
		}
		if err := o.Remove(); err != nil {
			t.Errorf("second remove: %v", err)
		}
		u.Close()
		snap.Check(t)
	}()
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if m := idmaptest.MountsUnder(t, dir); len(m) != 1 || m[0] != o.Rootfs() {
		t.Errorf("mounts of a live overlay: %q, want its rootfs only", m)
	}
	root := o.Rootfs()
	out, err := idmaptest.AsRoot(testMap, fmt.Sprintf(`
		cd %s
		echo new > new
		echo "u:x:1000:1000::/home/u:/bin/sh" >> etc/passwd
		cat etc/hostname
		chown 1000:1000 new
		mkdir tmp && chown 1000:1000 tmp
		echo x > home/u/file && chown 1000:1000 home/u/file`, root))
	if err != nil {
		t.Fatalf("as the range's root: %v: %s", err, out)
	}
	if out != "image" {
		t.Errorf("root-only image file read as %q", out)
	}
	for _, c := range []struct {
		path     string
		uid, gid uint32
	}{
		{"new", testMap.UID + 1000, testMap.GID + 1000},
		{"etc", testMap.UID, testMap.GID}, // copied up
		{"etc/passwd", testMap.UID, testMap.GID},
		{"tmp", testMap.UID + 1000, testMap.GID + 1000},
		{"home/u/file", testMap.UID + 1000, testMap.GID + 1000},
	} {
		uid, gid, _ := owner(t, filepath.Join(o.Upper(), c.path))
		if uid != c.uid || gid != c.gid {
			t.Errorf("upper %s on the host: %d:%d, want %d:%d", c.path, uid, gid, c.uid, c.gid)
		}
	}
	if uid, gid, _ := owner(t, o.Upper()); uid != testMap.UID || gid != testMap.GID {
		t.Errorf("upper dir: %d:%d, want the range's root", uid, gid)
	}
	// The layers are as they were.
	if b, _ := os.ReadFile(filepath.Join(bottom, "etc/passwd")); string(b) != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("layer's etc/passwd changed: %q", b)
	}
	if uid, gid, _ := owner(t, filepath.Join(bottom, "etc/passwd")); uid != 0 || gid != 0 {
		t.Errorf("layer's etc/passwd now owned by %d:%d", uid, gid)
	}
	for _, p := range []string{"new", "tmp", "home/u/file"} {
		if _, err := os.Lstat(filepath.Join(bottom, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s appeared in a layer: %v", p, err)
		}
	}
	// Another range's root is nobody here: it cannot write the root's
	// files (the write above is the positive control).
	other := idmap.Mapping{UID: testMap.UID + testMap.Size, GID: testMap.GID + testMap.Size, Size: testMap.Size}
	if out, err := idmaptest.AsRoot(other, "echo evil >> "+filepath.Join(root, "etc/passwd")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("another range's root writing the job's etc/passwd: %v: %s", err, out)
	}
}

// TestOverlayLayerOnItsOwnMount: a layer that is a mount point (here a
// bind mount from the same filesystem) is mapped itself, since a clone
// of its parent's mount would show the directory under it.
func TestOverlayLayerOnItsOwnMount(t *testing.T) {
	testenv.RequireRoot(t)
	dir := stateDir(t)
	src := layer(t, filepath.Join(dir, "src"), file{path: "etc/os-release", mode: 0o644, data: "ID=test\n"})
	l := filepath.Join(dir, "layers", "l0")
	if err := os.MkdirAll(l, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(src, l, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(l, 0)
	other := layer(t, filepath.Join(dir, "layers", "l1"), file{path: "usr/x", mode: 0o644})
	snap := leakcheck.Take(t, dir)
	u := idmaptest.NewUserns(t, testMap)
	o, err := idmap.NewOverlay(u, []string{other, l}, filepath.Join(dir, "job"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"etc/os-release", "usr/x"} {
		if uid, _, _ := owner(t, filepath.Join(o.Rootfs(), p)); uid != testMap.UID {
			t.Errorf("%s: owned by %d, want %d", p, uid, testMap.UID)
		}
	}
	if err := o.Remove(); err != nil {
		t.Fatal(err)
	}
	u.Close()
	snap.Check(t)
}

// TestLayersServeManyOverlays: one kept view of the layers serves overlay
// after overlay, shows layers unpacked after it was made, and overlays
// outlive it.
func TestLayersServeManyOverlays(t *testing.T) {
	testenv.RequireRoot(t)
	dir := stateDir(t)
	layers := filepath.Join(dir, "layers")
	l0 := layer(t, filepath.Join(layers, "l0"), file{path: "etc/passwd", mode: 0o644, data: "root\n"})
	snap := leakcheck.Take(t, dir)
	u := idmaptest.NewUserns(t, testMap)
	ls, err := idmap.NewLayers(u, filepath.Join(dir, "mapped"))
	if err != nil {
		t.Fatal(err)
	}
	u.Close() // the view keeps its own reference
	o1, err := ls.Overlay([]string{l0}, filepath.Join(dir, "job1"))
	if err != nil {
		t.Fatal(err)
	}
	// Unpacked after the view was made.
	l1 := layer(t, filepath.Join(layers, "l1"), file{path: "usr/bin/tool", uid: 2, gid: 2, mode: 0o755})
	o2, err := ls.Overlay([]string{l1, l0}, filepath.Join(dir, "job2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Overlay([]string{filepath.Join(layers, "gone")}, filepath.Join(dir, "job3")); err == nil {
		t.Fatal("overlay of a missing layer made")
	}
	if _, err := os.Lstat(filepath.Join(dir, "job3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed overlay left its dir: %v", err)
	}
	if m := idmaptest.MountsUnder(t, dir); len(m) != 3 {
		t.Errorf("mounts: %q, want the view's one and two overlays", m)
	}
	if err := ls.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ls.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := ls.Overlay([]string{l0}, filepath.Join(dir, "job4")); err == nil {
		t.Fatal("overlay made on closed layers")
	}
	for _, c := range []struct {
		o    *idmap.Overlay
		path string
		uid  uint32
	}{{o1, "etc/passwd", testMap.UID}, {o2, "etc/passwd", testMap.UID}, {o2, "usr/bin/tool", testMap.UID + 2}} {
		if uid, _, _ := owner(t, filepath.Join(c.o.Rootfs(), c.path)); uid != c.uid {
			t.Errorf("%s in %s: owned by %d, want %d", c.path, c.o.Rootfs(), uid, c.uid)
		}
	}
	if b, err := os.ReadFile(filepath.Join(o2.Rootfs(), "etc/passwd")); err != nil || string(b) != "root\n" {
		t.Errorf("read through an overlay whose view is closed: %q, %v", b, err)
	}
	for _, o := range []*idmap.Overlay{o1, o2} {
		if err := o.Remove(); err != nil {
			t.Error(err)
		}
	}
	os.RemoveAll(filepath.Join(layers, "l1"))
	snap.Check(t)
}

func TestOverlayErrorLeavesNothing(t *testing.T) {
	testenv.RequireRoot(t)
	dir := stateDir(t)
	good := layer(t, filepath.Join(dir, "l0"), file{path: "a", mode: 0o644})
	snap := leakcheck.Take(t, dir)
	u := idmaptest.NewUserns(t, testMap)
	// The second layer's mount fails after the first is attached.
	_, err := idmap.NewOverlay(u, []string{good, filepath.Join(dir, "missing")}, filepath.Join(dir, "job"))
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("overlay of a missing layer: %v", err)
	}
	if _, err := idmap.NewOverlay(u, nil, filepath.Join(dir, "job")); err == nil {
		t.Fatal("overlay of no layers made")
	}
	if _, err := idmap.NewOverlay(u, []string{good, filepath.Join(good, "a")}, filepath.Join(dir, "job")); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Fatalf("overlay with a file for a layer: %v", err)
	}
	u.Close()
	snap.Check(t)
}

func TestUsernsRefusesBadMapping(t *testing.T) {
	for _, m := range []idmap.Mapping{{UID: 100000, GID: 100000}, {UID: 1<<32 - 10, GID: 0, Size: 65536}, {UID: 0, GID: 1<<32 - 1, Size: 1}} {
		if u, err := idmap.NewUserns(m); err == nil {
			u.Close()
			t.Errorf("%+v: made", m)
		}
	}
}

// TestUsernsHoldsMapping reads the namespace's uid_map through a process
// that joins it: the mapping is the one asked for.
func TestUsernsHoldsMapping(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "nsenter")
	snap := leakcheck.Take(t, t.TempDir())
	defer snap.Check(t)
	u := idmaptest.NewUserns(t, testMap)
	defer u.Close()
	cmd := exec.Command("nsenter", fmt.Sprintf("--user=/proc/%d/fd/%d", os.Getpid(), u.Fd()), "--", "/bin/cat", "/proc/self/uid_map", "/proc/self/gid_map")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := fmt.Sprintf("0 %d 65536\n0 %d 65536\n", testMap.UID, testMap.GID)
	if got := string(bytes.Join(bytes.Fields(out), []byte(" "))); got != strings.Join(strings.Fields(want), " ") {
		t.Errorf("maps: %q, want %q", out, want)
	}
}
