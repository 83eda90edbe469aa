package idmap

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestProbe(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	snap := leakcheck.Take(t, dir)
	if err := Probe(dir); err != nil {
		t.Errorf("probe on this host's disk: %v", err)
	}
	snap.Check(t)

	// ramfs takes no idmapped mounts: the probe says so, and why.
	ram := filepath.Join(t.TempDir(), "ram")
	if err := unix.Mkdir(ram, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("ramfs", ram, "ramfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(ram, 0)
	snap = leakcheck.Take(t, ram)
	err := Probe(ram)
	if err == nil || !strings.Contains(err.Error(), "idmapped mounts are unavailable on "+ram+": its filesystem (ramfs) does not take idmapped mounts") {
		t.Errorf("probe on ramfs: %v", err)
	}
	snap.Check(t)
}
