package idmap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/mount"
	"github.com/jobrun/jobrun/internal/testenv"
)

// TestProbeOnceSkipsARecordedPass: once the probe has passed, its record
// (kernel, file system, user namespace limit) lets the next call return
// without probing, which on a read-only state dir would fail; a record
// of another kernel or another user namespace limit is not trusted (the
// controls), and a new pass records again.
func TestProbeOnceSkipsARecordedPass(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, ProbedFile)
	if err := ProbeOnce(dir); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(rec)
	if err != nil || !strings.HasPrefix(string(key), "kernel ") || !strings.Contains(string(key), "max_user_namespaces ") {
		t.Fatalf("no record of the pass: %q, %v", key, err)
	}
	// probeReadOnly is ProbeOnce with dir read-only, where a probe fails.
	probeReadOnly := func() error {
		t.Helper()
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			mount.Unmount(dir)
			t.Fatal(err)
		}
		err := ProbeOnce(dir)
		if uerr := mount.Unmount(dir); uerr != nil {
			t.Fatal(uerr)
		}
		return err
	}
	if err := probeReadOnly(); err != nil {
		t.Errorf("a recorded pass probed again: %v", err)
	}
	lines := strings.SplitAfter(string(key), "\n")
	for name, other := range map[string]string{
		"another kernel":       "kernel 0.0\n" + strings.Join(lines[1:], ""),
		"another userns limit": strings.Join(lines[:len(lines)-2], "") + "max_user_namespaces 0\n",
		"an empty record":      "",
	} {
		if err := os.WriteFile(rec, []byte(other), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := probeReadOnly(); err == nil {
			t.Errorf("a record of %s was trusted: no probe on the read-only dir", name)
		}
	}
	if err := ProbeOnce(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(rec); string(b) != string(key) {
		t.Errorf("record after a new pass: %q, want %q", b, key)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "idmap-probe-*")); len(left) > 0 {
		t.Errorf("probe dirs left: %v", left)
	}
}
