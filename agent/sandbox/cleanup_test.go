package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"

	"github.com/jobrun/jobrun/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestKilledAgent kills a process in the middle of a job, then checks that
// the job's processes died with it (the init's parent-death signal) and
// that Cleanup removes what it left, without touching a live container.
func TestKilledAgent(t *testing.T) { killedAgent(t, false, false) }

// TestKilledAgentUserns is TestKilledAgent with the killed process's job
// in a user namespace: its init dies too, and Cleanup also removes its
// namespaces and the bind of its root.
func TestKilledAgentUserns(t *testing.T) { killedAgent(t, true, false) }

// TestCleanupReclaimsOtherStateDirs is TestKilledAgent with the killed
// process alone on its state dir and the clean-up done by a Runtime on
// another: a state dir that no process opens again (a killed `jobrun
// local --state-dir`, a killed test) must not keep a dead container's
// cgroup, state and files for ever. The live container is on a third
// state dir whose Runtime is open: that run dir is its own Cleanup's.
func TestCleanupReclaimsOtherStateDirs(t *testing.T) { killedAgent(t, false, true) }

// killedAgent kills a process with a container on rt's state dir (other:
// on a state dir of its own), then checks that Cleanup, by rt (other: by a
// Runtime on another state dir) removes what it left and leaves a live
// container of rt's alone.
func killedAgent(t *testing.T, userns, other bool) {
	rt, stateDir := newRuntime(t)
	root := rootfs(t)
	live := start(t, rt, Spec{ID: "live", Rootfs: root})
	// Where the killed process's containers are: rt's run dir, or one
	// of its own.
	runc, files := rt.runc, rt.files
	if other {
		stateDir = filepath.Join(t.TempDir(), "state")
		run, err := RunDir(stateDir)
		if err != nil {
			t.Fatal(err)
		}
		runc, files = filepath.Join(run, "runc"), filepath.Join(run, "containers")
		// Its state dir outlives the test's Cleanup; the run dir goes
		// (empty by then) with the rest of the test.
		t.Cleanup(func() { removeRunDir(run) })
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+stateDir+":"+root)
	if userns {
		cmd.Env = append(cmd.Env, helperUsernsEnv+"=1")
		// The root the helper's job had: the image store's to remove.
		snap := filepath.Join(stateDir, "snap-orphaned")
		t.Cleanup(func() {
			if err := unix.Unmount(filepath.Join(snap, "rootfs"), 0); err != nil {
				t.Errorf("unmount the helper's root: %v", err)
			}
			os.RemoveAll(snap)
		})
	}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %v", err)
	}
	var initPid int
	if _, err := fmt.Sscanf(line, "ready %d", &initPid); err != nil {
		t.Fatalf("helper said %q", line)
	}
	// A Runtime started elsewhere meanwhile (another package's test)
	// would reclaim, from a run dir nobody holds, what we look at first.
	release, err := Hold(context.Background(), stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	cmd.Process.Kill()
	cmd.Wait()

	// The job's init, and with it its pid namespace, dies with its parent.
	deadline := time.Now().Add(testenv.Scale(10 * time.Second))
	for alive(initPid) {
		if time.Now().After(deadline) {
			t.Fatalf("container init %d outlived the killed agent", initPid)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// What is left: state, files and the cgroup.
	left := []string{filepath.Join(runc, "orphaned"), filepath.Join(files, "orphaned")}
	if userns {
		left = append(left, filepath.Join(rt.run, "ns", "orphaned", "user"), filepath.Join(rt.files, "orphaned", "rootfs", "bin"))
	}
	cg, err := manager.New(&cgroups.Cgroup{Path: cgroupPath(rt.cgroups, "orphaned"), Resources: &cgroups.Resources{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range left {
		if !exists(p) {
			t.Errorf("%s missing before Cleanup: the test does not test what it means to", p)
		}
	}
	if !cg.Exists() {
		t.Error("cgroup missing before Cleanup")
	}
	release()
	cleaner := rt
	if other {
		cleaner, _ = newRuntime(t)
	}
	if err := cleaner.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if other {
		// The killed process's state dir is there still: its snapshots,
		// workspaces and networks are the caller's to reclaim. rt's is
		// a live Runtime's.
		orphans := cleaner.OrphanedStateDirs()
		if !slices.Contains(orphans, stateDir) {
			t.Errorf("OrphanedStateDirs %q: want the killed process's %s", orphans, stateDir)
		}
		if slices.Contains(orphans, rt.dir) {
			t.Errorf("OrphanedStateDirs %q: has the live Runtime's %s", orphans, rt.dir)
		}
	}
	for _, p := range left {
		if exists(p) {
			t.Errorf("%s left after Cleanup", p)
		}
	}
	if cg.Exists() {
		t.Error("cgroup left after Cleanup")
	}
	// The live container's lock is held: Cleanup left it alone.
	if exit, out, _ := sh(t, live, Process{}, "echo alive"); !exit.Success() || out != "alive\n" {
		t.Errorf("live container after Cleanup: %s %q", exit, out)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
