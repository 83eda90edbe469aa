package network

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/mount"
	"github.com/jobrun/jobrun/internal/owner"
	"github.com/jobrun/jobrun/internal/testenv"
)

// TestCleanupStateDir: a process that does not serve a state dir removes
// what a killed process left there (the job's namespace, bind-mounted in
// the state dir, with its veth, rules and lease), and leaves a live
// process's job on another state dir alone. A state dir without networks
// gets nothing made in it.
func TestCleanupStateDir(t *testing.T) {
	testenv.RequireRoot(t)
	mk := func() string {
		dir := filepath.Join(t.TempDir(), "state")
		if err := os.MkdirAll(filepath.Join(dir, "network"), 0o700); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dead, live := mk(), mk()
	// The live one first: the leak check counts the test's children.
	alive := startHelper(t, live)
	snap := leakcheck.Take(t, filepath.Join(dead, "network"))
	cmd := startHelper(t, dead)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	defer func() {
		alive.Process.Signal(syscall.SIGKILL)
		alive.Wait()
		// Its leftovers go the same way, then the host side.
		if err := CleanupStateDir(t.Context(), Options{StateDir: live}); err != nil {
			t.Error(err)
		}
		m, err := New(Options{StateDir: t.TempDir(), Log: hclog.NewNullLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Cleanup(t.Context()); err != nil {
			t.Error(err)
		}
	}()
	ns := func(dir string) string { return filepath.Join(dir, "network", "crashed", "netns") }
	if !mount.IsMountpoint(ns(dead)) {
		t.Fatal("the killed process left no namespace mounted: the test proves nothing")
	}

	for _, dir := range []string{dead, live} {
		if err := CleanupStateDir(t.Context(), Options{StateDir: dir, Log: hclog.NewNullLogger()}); err != nil {
			t.Fatal(err)
		}
	}
	snap.Check(t) // namespace, directory, veth and rules
	ls, err := readLeases(filepath.Join(DefaultDir, "leases"))
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]bool{}
	for _, l := range ls {
		owners[l.Owner] = true
	}
	if owners[owner.Tag(filepath.Join(dead, "network"))] {
		t.Error("the dead job's lease is left")
	}
	if !owners[owner.Tag(filepath.Join(live, "network"))] {
		t.Error("the live job lost its lease")
	}
	if !mount.IsMountpoint(ns(live)) {
		t.Error("the live process's job lost its namespace")
	}
	veth := vethName(owner.Tag(filepath.Join(live, "network")), "crashed")
	if _, err := netlink.LinkByName(veth); err != nil {
		t.Errorf("the live process's job lost its veth %s: %v", veth, err)
	}

	none := t.TempDir()
	if err := CleanupStateDir(t.Context(), Options{StateDir: none}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(none); len(ents) != 0 {
		t.Errorf("CleanupStateDir made %v in a state dir without networks", ents)
	}
}
