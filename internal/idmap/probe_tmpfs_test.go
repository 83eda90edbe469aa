package idmap

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestProbeTmpfs probes a state dir on tmpfs, which takes idmapped mounts
// from Linux 6.3: on an older kernel (the 6.1 guest of `make test-vm`) the
// probe must refuse it naming tmpfs and 6.3, on a newer one pass.
func TestProbeTmpfs(t *testing.T) {
	testenv.RequireRoot(t)
	major, minor, err := kernelVersion()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := unix.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0700"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dir, 0)
	snap := leakcheck.Take(t, dir)
	err = Probe(dir)
	if major > 6 || major == 6 && minor >= 3 {
		if err != nil {
			t.Errorf("probe on tmpfs, Linux %d.%d: %v", major, minor, err)
		}
	} else {
		want := "idmapped mounts are unavailable on " + dir + ": its filesystem is tmpfs, which takes idmapped mounts from Linux 6.3"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("probe on tmpfs, Linux %d.%d: %v, want %q", major, minor, err, want)
		}
		t.Logf("probe on tmpfs, Linux %d.%d: %v", major, minor, err)
	}
	snap.Check(t)
}

// kernelVersion is the running kernel's major and minor version.
func kernelVersion() (major, minor int, err error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 0, 0, fmt.Errorf("uname: %w", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	if _, err := fmt.Sscanf(rel, "%d.%d", &major, &minor); err != nil {
		return 0, 0, fmt.Errorf("kernel release %q: %w", rel, err)
	}
	return major, minor, nil
}
