package idmap_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/idmap/idmaptest"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestUsernsAllowsSetgroups: a step switches groups (setgroups) as in any
// container, so the namespace is made with setgroups allowed; its holder
// is gone once it is made (the leak checker counts our children).
func TestUsernsAllowsSetgroups(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "nsenter")
	snap := leakcheck.Take(t, t.TempDir())
	defer snap.Check(t)
	u := idmaptest.NewUserns(t, testMap)
	defer u.Close()
	cmd := exec.Command("nsenter", fmt.Sprintf("--user=/proc/%d/fd/%d", os.Getpid(), u.Fd()), "--", "/bin/cat", "/proc/self/setgroups")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "allow" {
		t.Errorf("setgroups: %q, want allow", got)
	}
}

// TestUsernsNetOwnedByUserns: NewUsernsNet's network namespace belongs to
// its user namespace (root in the job may mount its sysfs), while
// NewUserns's holder leaves the caller's network namespace alone.
func TestUsernsNetOwnedByUserns(t *testing.T) {
	testenv.RequireRoot(t)
	snap := leakcheck.Take(t, t.TempDir())
	defer snap.Check(t)
	u, nf, err := idmap.NewUsernsNet(testMap)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	defer nf.Close()
	owner, err := unix.IoctlRetInt(int(nf.Fd()), unix.NS_GET_USERNS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(owner)
	var a, b unix.Stat_t
	if err := unix.Fstat(owner, &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fstat(u.Fd(), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino || a.Dev != b.Dev {
		t.Errorf("net namespace's owner %d, want the user namespace %d", a.Ino, b.Ino)
	}
	// Positive control: the host's network namespace is not owned by it.
	host, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	var h, n unix.Stat_t
	if err := unix.Fstat(int(host.Fd()), &h); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fstat(int(nf.Fd()), &n); err != nil {
		t.Fatal(err)
	}
	if h.Ino == n.Ino {
		t.Errorf("NewUsernsNet gave the host's network namespace")
	}
}
