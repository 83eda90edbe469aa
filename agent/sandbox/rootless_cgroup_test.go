package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeCgroup makes the cgroup own under a fake cgroup v2 mount (a temp
// dir): its directory, cgroup.procs holding procs, cgroup.subtree_control
// and cgroup.controllers listing ctls. Its files are this process's
// user's, as systemd's Delegate=yes makes them the delegatee's.
func fakeCgroup(t *testing.T, own, procs, ctls string) string {
	t.Helper()
	mnt := t.TempDir()
	dir := filepath.Join(mnt, own)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{"cgroup.procs": procs, "cgroup.subtree_control": "", "cgroup.controllers": ctls} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return mnt
}

const scope = "/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope"

// TestRootlessCgroupDelegated: a cgroup of the user's holding only
// jobrun's processes, with the controllers, is where jobs' cgroups go;
// every limit is enforced.
func TestRootlessCgroupDelegated(t *testing.T) {
	mnt := fakeCgroup(t, scope, "41\n42\n", "cpuset cpu io memory pids\n")
	base, unenforced, why := probeRootlessCgroups(mnt, scope, os.Geteuid(), []int{41, 42})
	if why != "" || base != scope || len(unenforced) != 0 {
		t.Fatalf("base %q, unenforced %v, why %q; want %s, all enforced", base, unenforced, why, scope)
	}
	// Once moved into the leaf (a second Runtime in the same process),
	// the leaf's parent is still the base.
	if err := os.Mkdir(filepath.Join(mnt, scope, supervisorLeaf), 0o755); err != nil {
		t.Fatal(err)
	}
	if base, _, why := probeRootlessCgroups(mnt, scope+"/"+supervisorLeaf, os.Geteuid(), []int{41, 42}); why != "" || base != scope {
		t.Errorf("from the leaf: base %q, why %q; want %s", base, why, scope)
	}
}

// TestRootlessCgroupNotDelegated: a cgroup whose files are another user's
// (a login session's scope, the hierarchy's root) is not used, and the
// reason names it and the way to get one.
func TestRootlessCgroupNotDelegated(t *testing.T) {
	const session = "/user.slice/user-1000.slice/session-3.scope"
	mnt := fakeCgroup(t, session, "41\n", "cpu memory pids\n")
	// Positive control: the same tree is delegated to its owner.
	if _, _, why := probeRootlessCgroups(mnt, session, os.Geteuid(), []int{41}); why != "" {
		t.Fatalf("the owner's own cgroup: %s", why)
	}
	base, _, why := probeRootlessCgroups(mnt, session, os.Geteuid()+1, []int{41})
	if base != "" {
		t.Errorf("base %q for a cgroup owned by another user", base)
	}
	for _, want := range []string{"cgroup v2 is mounted but " + filepath.Join(mnt, session) + " is not delegated to you", "systemd-run --user --scope -p Delegate=yes"} {
		if !strings.Contains(why, want) {
			t.Errorf("reason %q lacks %q", why, want)
		}
	}
}

// TestRootlessCgroupSubtreeControlNotOwned: a directory of the user's
// whose cgroup.subtree_control is not writable (delegated without
// controllers to give on) is not delegated.
func TestRootlessCgroupSubtreeControlNotOwned(t *testing.T) {
	mnt := fakeCgroup(t, scope, "41\n", "cpu memory pids\n")
	if err := os.Chmod(filepath.Join(mnt, scope, "cgroup.subtree_control"), 0o444); err != nil {
		t.Fatal(err)
	}
	base, _, why := probeRootlessCgroups(mnt, scope, os.Geteuid(), []int{41})
	if base != "" || !strings.Contains(why, "cgroup.subtree_control is not writable") || !strings.Contains(why, "is not delegated to you") {
		t.Errorf("base %q, reason %q", base, why)
	}
}

// TestRootlessCgroupOtherProcesses: a delegated cgroup that holds
// processes other than jobrun's (the user's shell) is left alone: moving
// them into jobrun's leaf would take them over.
func TestRootlessCgroupOtherProcesses(t *testing.T) {
	mnt := fakeCgroup(t, scope, "41\n42\n77\n", "cpu memory pids\n")
	base, _, why := probeRootlessCgroups(mnt, scope, os.Geteuid(), []int{41, 42})
	if base != "" || !strings.Contains(why, "holds processes other than jobrun's (process 77)") {
		t.Errorf("base %q, reason %q", base, why)
	}
	if _, _, why := probeRootlessCgroups(mnt, scope, os.Geteuid(), []int{41, 42, 77}); why != "" {
		t.Errorf("positive control, all jobrun's: %s", why)
	}
}

// TestRootlessCgroupMissingController: a delegated cgroup without the cpu
// controller still takes the jobs' cgroups; only the cpus limit is not
// enforced, and the spec loses only that limit.
func TestRootlessCgroupMissingController(t *testing.T) {
	mnt := fakeCgroup(t, scope, "41\n", "memory pids\n")
	base, unenforced, why := probeRootlessCgroups(mnt, scope, os.Geteuid(), []int{41})
	if why != "" || base != scope {
		t.Fatalf("base %q, why %q", base, why)
	}
	if len(unenforced) != 1 || !strings.Contains(unenforced["cpus"], "the cpu controller is not delegated to your cgroup "+filepath.Join(mnt, scope)) {
		t.Fatalf("unenforced %v; want only cpus", unenforced)
	}
	q, p, m, n := int64(50000), uint64(100000), int64(64<<20), int64(32)
	r := &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &q, Period: &p}, Memory: &specs.LinuxMemory{Limit: &m}, Pids: &specs.LinuxPids{Limit: &n}}
	rootlessCgroups{base: base, unenforced: unenforced}.rootlessResources(r)
	if r.CPU != nil || r.Memory == nil || r.Pids == nil {
		t.Errorf("resources after: cpu %v, memory %v, pids %v; want only cpu gone", r.CPU, r.Memory, r.Pids)
	}
}
