package mount

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/testenv"
)

func TestOverlayData(t *testing.T) {
	got := OverlayData([]string{"/a,b", "/c:d"}, `/u\p`, "/w")
	want := `lowerdir=/a\,b:/c\:d,upperdir=/u\\p,workdir=/w`
	if got != want {
		t.Errorf("OverlayData = %q, want %q", got, want)
	}
}

func TestOverlayAndUnmount(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	low, up, work, target := filepath.Join(dir, "low,er"), filepath.Join(dir, "up"), filepath.Join(dir, "work"), filepath.Join(dir, "target")
	for _, d := range []string{low, up, work, target} {
		os.Mkdir(d, 0o755)
	}
	os.WriteFile(filepath.Join(low, "f"), []byte("x"), 0o644)
	if err := Overlay(target, []string{low}, up, work, unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		t.Fatal(err)
	}
	if !IsMountpoint(target) {
		t.Fatal("not a mount point after Overlay")
	}
	// The kernel here has volatile overlays (5.10+): no sync at unmount.
	// Newer kernels show the option as fsync=volatile.
	if info, err := os.ReadFile("/proc/self/mountinfo"); err != nil || !mountHas(string(info), target, "volatile", "fsync=volatile") {
		t.Errorf("the overlay on %s is not volatile (%v)", target, err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "x" {
		t.Errorf("lower file through the overlay: %q, %v", b, err)
	}
	// A busy mount (an open directory in it) is detached, not left.
	f, err := os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Unmount(target); err != nil {
		t.Fatal(err)
	}
	if IsMountpoint(target) {
		t.Error("still mounted after Unmount")
	}
	if err := Unmount(target); err != nil {
		t.Errorf("Unmount of a plain dir: %v", err)
	}
	if err := Unmount(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("Unmount of a missing dir: %v", err)
	}
	many := make([]string, 200)
	for i := range many {
		many[i] = filepath.Join(dir, strings.Repeat("l", 30))
	}
	if err := Overlay(target, many, up, work, 0); err == nil || !strings.Contains(err.Error(), "the kernel takes 4095") {
		t.Errorf("too many lowers: %v", err)
	}
}

// mountHas reports whether the mount on target in mountinfo has one of
// opts among its superblock options.
func mountHas(mountinfo, target string, opts ...string) bool {
	for _, l := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || f[4] != target {
			continue
		}
		for _, o := range strings.Split(f[len(f)-1], ",") {
			if slices.Contains(opts, o) {
				return true
			}
		}
	}
	return false
}
