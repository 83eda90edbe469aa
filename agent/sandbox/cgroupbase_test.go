package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/opencontainers/cgroups"

	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
)

// delegatedEnv makes the test binary act as an agent that runs one job
// (see delegatedHelper); its value is "STATEDIR:ROOTFS".
const delegatedEnv = "JOBRUN_SANDBOX_TEST_DELEGATED"

// delegatedResult is what delegatedHelper reports on stdout.
type delegatedResult struct {
	Own, Job   string // /proc/PID/cgroup of the helper and of the job's init
	Exit       string // the job's exit, in words
	OOM        bool
	MemoryPeak int64
	// WarmProcs is the cgroup.procs the attach warmer writes; Warmed
	// whether it moved the agent there while a start was under way.
	WarmProcs string
	Warmed    bool
	Err       string
}

// TestCgroupDelegation runs an agent the way systemd runs a unit with
// Delegate=yes on a cgroup v2 host: the process starts in its own cgroup,
// with the controllers enabled down to it. The agent must move into a
// leaf (no internal processes), put the job's cgroup beside it, and the
// job's memory limit, OOM kill and stats must work there; nothing of the
// job's is left after; the attach warmer moves the agent within its leaf.
// On cgroup v1 nothing changes: the job's cgroup is /jobrun-<id>.
func TestCgroupDelegation(t *testing.T) {
	testenv.RequireRoot(t)
	root := rootfs(t)
	state := filepath.Join(t.TempDir(), "state")
	run, err := RunDir(state)
	if err != nil {
		t.Fatal(err)
	}
	snap := leakcheck.Take(t, state, run)
	t.Cleanup(func() { snap.Check(t) })

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), delegatedEnv+"="+state+":"+root)
	cmd.Stderr = os.Stderr
	v2 := cgroups.IsCgroup2UnifiedMode()
	var unit, unitDir string
	if v2 {
		// What systemd does for the unit: the controllers enabled for
		// the root's children, the unit's own cgroup, the process
		// started in it.
		ctl := filepath.Join(unifiedMount, "cgroup.subtree_control")
		for _, c := range jobControllers {
			if err := os.WriteFile(ctl, []byte("+"+c), 0); err != nil {
				t.Fatalf("enable %s at the root: %v", c, err)
			}
		}
		unit = fmt.Sprintf("/delegated-test-%d", os.Getpid())
		unitDir = filepath.Join(unifiedMount, unit)
		if err := os.Mkdir(unitDir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for _, d := range []string{filepath.Join(unitDir, supervisorLeaf), unitDir} {
				if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
					t.Errorf("remove the unit's cgroup: %v", err)
				}
			}
		})
		fd, err := os.Open(unitDir)
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	var r delegatedResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("agent said %q: %v", out, err)
	}
	if r.Err != "" {
		t.Fatalf("agent: %s", r.Err)
	}
	t.Logf("agent in %q, job in %q", r.Own, r.Job)

	if !r.OOM || r.Exit != "out of memory (limit 64 MiB)" {
		t.Errorf("job's exit %q (OOM %v), want an OOM kill at the 64 MiB limit", r.Exit, r.OOM)
	}
	// The kernel may charge a page or so past the limit before it kills.
	if r.MemoryPeak < 1<<20 || r.MemoryPeak > 65<<20 {
		t.Errorf("memory peak %d, want up to about the 64 MiB limit", r.MemoryPeak)
	}
	if !r.Warmed {
		t.Errorf("the attach warmer did not move the agent into %s", r.WarmProcs)
	}
	if !v2 {
		if !strings.Contains(r.Job, ":pids:/jobrun-delegated\n") {
			t.Errorf("job's cgroups on v1:\n%s\nwant /jobrun-delegated in the pids hierarchy", r.Job)
		}
		return
	}
	if want := "0::" + unit + "/" + supervisorLeaf + "\n"; r.Own != want {
		t.Errorf("agent's cgroup %q, want its leaf %q", r.Own, want)
	}
	if want := filepath.Join(unifiedMount, unit, supervisorLeaf, "cgroup.procs"); r.WarmProcs != want {
		t.Errorf("the attach warmer moves the agent into %s, want its leaf's %s", r.WarmProcs, want)
	}
	if want := "0::" + unit + "/jobrun-delegated\n"; r.Job != want {
		t.Errorf("job's cgroup %q, want beside the agent's leaf: %q", r.Job, want)
	}
	b, err := os.ReadFile(filepath.Join(unitDir, "cgroup.subtree_control"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range jobControllers {
		if !slices.Contains(strings.Fields(string(b)), c) {
			t.Errorf("the unit's cgroup.subtree_control %q lacks %s", b, c)
		}
	}
	// Only the (now empty) leaf is left: the job's cgroup went with it.
	ents, err := os.ReadDir(unitDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() && e.Name() != supervisorLeaf {
			t.Errorf("left in the unit's cgroup: %s", e.Name())
		}
	}
}

// delegatedHelper runs one job that overruns its memory limit and prints
// a delegatedResult.
func delegatedHelper() {
	r := runDelegated()
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

func runDelegated() (r delegatedResult) {
	stateDir, root, _ := strings.Cut(os.Getenv(delegatedEnv), ":")
	rt, err := New(stateDir, hclog.NewNullLogger())
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer rt.Close()
	c, err := rt.Start(context.Background(), Spec{ID: "delegated", Rootfs: root, Resources: Resources{Memory: 64 << 20, Pids: 32}})
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer func() {
		if err := c.Destroy(); err != nil && r.Err == "" {
			r.Err = err.Error()
		}
	}()
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		r.Err = err.Error()
		return r
	}
	job, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.initPid))
	if err != nil {
		r.Err = err.Error()
		return r
	}
	r.Own, r.Job = string(own), string(job)
	exit, err := c.Exec(context.Background(), Process{Args: []string{"/bin/sh", "-c", "exec probe alloc 256M"}})
	if err != nil {
		r.Err = err.Error()
		return r
	}
	r.Exit, r.OOM = exit.String(), exit.OOMKilled
	u, err := c.Stats()
	if err != nil {
		r.Err = err.Error()
		return r
	}
	r.MemoryPeak = u.MemoryPeak
	end := rt.warm.begin()
	r.WarmProcs = rt.warm.procs
	r.Warmed = waitFor(func() bool { return rt.warm.moves.Load() > 0 })
	end()
	return r
}

// TestCgroupUndelegated: an agent in a cgroup v2 cgroup that was given
// none of the controllers jobs need (a login session's scope under sudo)
// keeps jobs at the hierarchy's root and moves nothing; one given them
// gets its leaf. On cgroup v1 the root is the answer whatever the cgroup.
func TestCgroupUndelegated(t *testing.T) {
	testenv.RequireRoot(t)
	log := hclog.NewNullLogger()
	if !cgroups.IsCgroup2UnifiedMode() {
		base, err := cgroupBase(log)
		if err != nil || base != "/" {
			t.Fatalf("cgroup v1: jobs under %q (%v), want the root", base, err)
		}
		return
	}
	// parent enables nothing for its children: child has no controllers.
	parent := fmt.Sprintf("/undelegated-test-%d", os.Getpid())
	child := parent + "/session.scope"
	for _, d := range []string{parent, child} {
		if err := os.Mkdir(filepath.Join(unifiedMount, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range []string{child + "/" + supervisorLeaf, child, parent} {
			if err := os.Remove(filepath.Join(unifiedMount, d)); err != nil && !os.IsNotExist(err) {
				t.Error(err)
			}
		}
	})
	base, err := delegate(unifiedMount, child, log)
	if err != nil || base != "/" {
		t.Errorf("undelegated: jobs under %q (%v), want the root", base, err)
	}
	if _, err := os.Stat(filepath.Join(unifiedMount, child, supervisorLeaf)); !os.IsNotExist(err) {
		t.Errorf("undelegated: a leaf was made (%v)", err)
	}

	// Positive control: the same cgroup, given the controllers.
	for _, c := range jobControllers {
		for _, d := range []string{"/", parent} {
			if err := os.WriteFile(filepath.Join(unifiedMount, d, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
				t.Fatalf("enable %s in %s: %v", c, d, err)
			}
		}
	}
	base, err = delegate(unifiedMount, child, log)
	if err != nil || base != child {
		t.Errorf("delegated: jobs under %q (%v), want %q", base, err, child)
	}
	if _, err := os.Stat(filepath.Join(unifiedMount, child, supervisorLeaf)); err != nil {
		t.Errorf("delegated: no leaf: %v", err)
	}
}
