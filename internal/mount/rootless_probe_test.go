package mount

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/testenv"
)

// TestProbeUserOverlayOnceSkipsARecordedPass: once the probe has passed
// in a state dir, a later call on the same kernel and file system does
// not probe again (it passes on a read-only dir, where a probe fails); a
// record of another kernel is not trusted (the probe runs, and fails
// there: the control), and a pass rewrites it.
func TestProbeUserOverlayOnceSkipsARecordedPass(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, ProbedFile)
	if err := ProbeUserOverlayOnce(dir); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(rec)
	if err != nil || !strings.HasPrefix(string(key), "kernel ") {
		t.Fatalf("no record of the pass: %q, %v", key, err)
	}
	readOnly := func() {
		t.Helper()
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			Unmount(dir)
			t.Fatal(err)
		}
	}
	readOnly()
	err = ProbeUserOverlayOnce(dir)
	if uerr := Unmount(dir); uerr != nil {
		t.Fatal(uerr)
	}
	if err != nil {
		t.Errorf("a recorded pass probed again: %v", err)
	}

	// Control: a record of another kernel probes, which fails read-only.
	if err := os.WriteFile(rec, []byte("kernel 0.0\n"+strings.SplitN(string(key), "\n", 2)[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	readOnly()
	err = ProbeUserOverlayOnce(dir)
	if uerr := Unmount(dir); uerr != nil {
		t.Fatal(uerr)
	}
	if err == nil {
		t.Error("a record of another kernel was trusted: no probe on the read-only dir")
	}
	if err := ProbeUserOverlayOnce(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(rec); string(b) != string(key) {
		t.Errorf("record after a new pass: %q, want %q", b, key)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".overlay-probe-*")); len(left) > 0 {
		t.Errorf("probe dirs left: %v", left)
	}
}
