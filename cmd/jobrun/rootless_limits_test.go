package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"

	"github.com/jobrun/jobrun/internal/testenv"
	"github.com/jobrun/jobrun/internal/units"
	"github.com/jobrun/jobrun/jobs"
)

// limitsCI has a job per limit: one that eats past its memory, one that
// forks past its pids, one with a CPU limit that prints its cgroup's
// cpu.max (the quota is what the kernel enforces; a time would be a
// timing assertion); and one whose timeout must kill all its processes
// (newRLUser checks none of the user's is left): TIMEOUT, long enough
// for its container to start (slowTimeout).
const limitsCI = `
job "hog" {
  image   = "IMAGE"
  network = "none"
  resources { memory = "32MiB" }
  step "eat" { run = "head -c 200m /dev/zero | tail > /dev/null" }
}
job "forks" {
  image   = "IMAGE"
  network = "none"
  resources { pids = 16 }
  step "fork" { run = "i=0; while [ $i -lt 40 ]; do sleep 60 & i=$((i+1)); done; echo all 40 started" }
}
job "spin" {
  image   = "IMAGE"
  network = "none"
  resources { cpus = 0.5 }
  step "count" { run = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo cpu.max $(cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo none)" }
}
job "slow" {
  image   = "IMAGE"
  network = "none"
  timeout = "TIMEOUT"
  step "wait" { run = "echo waiting; sleep 300 & sleep 301 & wait" }
}
`

// slowTimeout is limitsCI with the slow job's timeout: 5 s, scaled (its
// container must start first, which takes seconds under TCG), and that
// timeout as the summary says it.
func slowTimeout() (ci, timedOut string) {
	d := testenv.Scale(5 * time.Second).Round(time.Second)
	return strings.ReplaceAll(limitsCI, "TIMEOUT", fmt.Sprintf("%ds", int(d.Seconds()))), `slow +failed .*timed out after ` + units.FormatDuration(d)
}

// runAs runs cmd (the user's jobrun) and returns what it printed.
func runAs(t *testing.T, u *rlUser, cmd *exec.Cmd) localRun {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("as %s: %s: exit %d\n%s%s", u.name, strings.Join(cmd.Args, " "), code, out.String(), errb.String())
	return localRun{out.String(), errb.String(), code}
}

// unenforcedLines are the summary's per-job lines of limitsCI's limits.
var unenforcedLines = []string{"  hog: memory = 32 MiB\n", "  forks: pids = 16\n", "  spin: cpus = 0.5\n"}

// TestRootlessLimitsNotEnforcedSaysWhy: jobrun without root in a cgroup
// that is not the user's (on cgroup v1 always; on v2 the test's own
// cgroup, root's) runs every job, and the summary says which limits of
// which job were not enforced and why, precisely: on v2 the cgroup and
// the way to get one delegated.
func TestRootlessLimitsNotEnforcedSaysWhy(t *testing.T) {
	u := newRLUser(t, true)
	ci, timedOut := slowTimeout()
	file := u.write(t, ci)
	r := u.local(t, file)
	u.checkLeaks(t)
	if r.code != 1 {
		t.Errorf("exit %d, want 1: without limits every job but the timed out one succeeds", r.code)
	}
	order(t, r.out, timedOut)
	order(t, r.out, `hog +succeeded`)
	order(t, r.out, `forks +succeeded`)
	order(t, r.out, `spin +succeeded`)
	want := "limits not enforced: jobrun runs without root on cgroup v1, which cannot delegate cgroups to a user"
	if cgroups.IsCgroup2UnifiedMode() {
		own, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		// The user's jobrun starts in this test's cgroup, root's.
		want = "limits not enforced: cgroup v2 is mounted but " + filepath.Join("/sys/fs/cgroup", own[""]) + " is not delegated to you ("
		if !strings.Contains(r.out, "systemd-run --user --scope -p Delegate=yes); CPU and PEAK MEM not measured\n") {
			t.Error("the reason does not say how to get a delegated cgroup")
		}
	}
	if !strings.Contains(r.out, want) {
		t.Errorf("no %q in the output", want)
	}
	for _, l := range unenforcedLines {
		if !strings.Contains(r.out, l) {
			t.Errorf("no %q in the output", l)
		}
	}
}

// TestRootlessLimitsEnforcedInDelegatedCgroup runs jobrun without root in
// a cgroup v2 subtree delegated to the user as systemd's Delegate=yes
// does it (the directory, cgroup.procs, cgroup.threads and
// cgroup.subtree_control chowned to the user; cpu, memory and pids
// enabled for it): the memory hog is reported out of memory, the fork
// loop stops at its pids limit, the CPU job's cgroup has its quota, the
// summary has CPU and PEAK MEM and no "limits not enforced"; the timed
// out job's processes are killed through its cgroup; no job cgroup is
// left. On cgroup v1 there is nothing to delegate: the same
// run says why its limits were not enforced.
func TestRootlessLimitsEnforcedInDelegatedCgroup(t *testing.T) {
	u := newRLUser(t, true)
	ci, timedOut := slowTimeout()
	file := u.write(t, ci)
	cmd := u.command("local", "--artifacts", filepath.Join(u.home, "artifacts"), file)
	v2 := cgroups.IsCgroup2UnifiedMode()
	var dir string
	if v2 {
		dir = delegatedCgroup(t, u)
		fd, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(fd.Fd())
	}
	r := runAs(t, u, cmd)
	u.checkLeaks(t)
	order(t, r.out, timedOut)
	if !v2 {
		if r.code != 1 || !strings.Contains(r.out, "limits not enforced: jobrun runs without root on cgroup v1") {
			t.Errorf("cgroup v1: exit %d, or no reason its limits were not enforced", r.code)
		}
		return
	}
	if r.code != 1 {
		t.Errorf("exit %d, want 1 (hog, forks and slow fail)", r.code)
	}
	if strings.Contains(r.out, "limits not enforced") {
		t.Error("a delegated cgroup's run says limits were not enforced")
	}
	order(t, r.out, `hog +failed .*out of memory \(limit 32 MiB\)`)
	order(t, r.out, `forks +failed`)
	if strings.Contains(r.out, "all 40 started") || !strings.Contains(r.out, "can't fork") {
		t.Error("the fork loop was not stopped by the pids limit")
	}
	order(t, r.out, `spin +succeeded`)
	order(t, r.out, `slow › wait \| waiting`)
	if !strings.Contains(r.out, "cpu.max 50000 100000") {
		t.Error("the CPU job's cgroup has no quota of half a CPU")
	}
	// Every job ran in a cgroup: CPU and PEAK MEM are measured.
	in := false
	for _, line := range strings.Split(r.out, "\n") {
		if strings.HasPrefix(line, "JOB ") {
			in = true
			continue
		}
		if in && strings.TrimSpace(line) == "" {
			break
		}
		if f := strings.Fields(line); in && (len(f) < 5 || f[3] == "-" || f[4] == "-") {
			t.Errorf("summary row without CPU or PEAK MEM: %q", line)
		}
	}
	if !in {
		t.Error("no summary")
	}
	left, _ := filepath.Glob(filepath.Join(dir, "jobrun-*"))
	if len(left) > 0 {
		t.Errorf("job cgroups left: %v", left)
	}
	// jobrun moved itself into its leaf beside the jobs' cgroups.
	if _, err := os.Stat(filepath.Join(dir, "supervisor")); err != nil {
		t.Errorf("no supervisor leaf: %v", err)
	}
}

// delegatedCgroup makes a cgroup v2 child of the hierarchy's root for the
// user, with cpu, memory and pids enabled for it, and removes it (and the
// leaf jobrun makes in it) when the test ends.
func delegatedCgroup(t *testing.T, u *rlUser) string {
	t.Helper()
	const mnt = "/sys/fs/cgroup"
	for _, c := range []string{"cpu", "memory", "pids"} {
		if err := os.WriteFile(filepath.Join(mnt, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
			t.Fatalf("enable %s in the root cgroup: %v", c, err)
		}
	}
	dir := filepath.Join(mnt, fmt.Sprintf("jrl-delegated-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Children first: the leaf jobrun left (it lives as long as
		// the user's cgroup, as in a systemd unit), any job's.
		subs, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, s := range subs {
			if fi, err := os.Stat(s); err == nil && fi.IsDir() {
				if err := os.Remove(s); err != nil {
					t.Errorf("remove %s: %v", s, err)
				}
			}
		}
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove the delegated cgroup: %v", err)
		}
	})
	for _, f := range []string{"", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"} {
		if err := os.Chown(filepath.Join(dir, f), u.uid, u.gid); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestRootlessLimitsSummaryPerReason: the lines after the summary group the
// jobs' unenforced limits by reason: all under one, with "not measured",
// when jobs had no cgroup; only the limit whose controller is missing when
// they had one; nothing when every limit was enforced.
func TestRootlessLimitsSummaryPerReason(t *testing.T) {
	plan := []*jobs.Job{
		{Name: "build", Resources: jobs.Resources{CPUs: 1.5, Memory: 64 << 20, Pids: 100}},
		{Name: "lint"},
		{Name: "test", Resources: jobs.Resources{Memory: 32 << 20}},
	}
	var b strings.Builder
	writeUnenforced(&b, plan, map[string]string{"cpus": "v1", "memory": "v1", "pids": "v1"}, false)
	if want := "\nlimits not enforced: v1; CPU and PEAK MEM not measured\n  build: cpus = 1.5, memory = 64 MiB, pids = 100\n  test: memory = 32 MiB\n"; b.String() != want {
		t.Errorf("no cgroups:\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	writeUnenforced(&b, plan, map[string]string{"cpus": "no cpu controller"}, true)
	if want := "\nlimits not enforced: no cpu controller\n  build: cpus = 1.5\n"; b.String() != want {
		t.Errorf("delegated without cpu:\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	writeUnenforced(&b, plan, map[string]string{}, true)
	if b.Len() != 0 {
		t.Errorf("all enforced: %q", b.String())
	}
}
