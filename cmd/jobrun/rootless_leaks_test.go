package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/rootless"
	"github.com/jobrun/jobrun/internal/testenv"
)

// The leak checker run as the user (issue #18: "Ctrl-C leaves nothing:
// the leak checker run as that user and as root afterwards"). The test
// binary runs itself as the user, TestRootlessLeakcheckHelper only: it
// takes a snapshot of the user's directories, says so, waits for a line
// on stdin, checks, and exits with the outcome.

// leakcheckAsUserEnv carries the helper's orders (leakOrders, as JSON).
const leakcheckAsUserEnv = "JOBRUN_TEST_LEAKCHECK_AS_USER"

// leakOrders is what the helper checks: leakcheck's state dir and other
// directories, and the processes of the user's ids.
type leakOrders struct {
	State string
	Also  []string
	UID   int
	Sub   rootless.Range
}

// TestRootlessLeakcheckHelper does nothing in a test run: it is the leak
// checker TestRootlessInterruptAndTimeout runs as the user (see
// userLeakcheck).
func TestRootlessLeakcheckHelper(t *testing.T) {
	spec := os.Getenv(leakcheckAsUserEnv)
	if spec == "" {
		return
	}
	var o leakOrders
	if err := json.Unmarshal([]byte(spec), &o); err != nil {
		t.Fatalf("%s: %v", leakcheckAsUserEnv, err)
	}
	if os.Getuid() != o.UID {
		t.Fatalf("the helper runs as uid %d, not the user's %d", os.Getuid(), o.UID)
	}
	u := &rlUser{uid: o.UID, sub: o.Sub}
	snap := leakcheck.Take(t, o.State, o.Also...)
	if left := others(u.procs()); len(left) > 0 {
		t.Fatalf("processes of the user's before the run: %v", left)
	}
	fmt.Println("leakcheck: taken")
	io.ReadAll(os.Stdin)
	snap.Check(t)
	if left := others(u.procs()); len(left) > 0 {
		t.Errorf("processes of the user's left: %v", left)
	}
}

// others is procs but this process.
func others(procs []string) []string {
	self := fmt.Sprint(os.Getpid()) + ":"
	var out []string
	for _, p := range procs {
		if !strings.HasPrefix(p, self) {
			out = append(out, p)
		}
	}
	return out
}

// userLeakcheck starts the leak checker as the user on their runtime dir
// and the parts of their state dir a job holds (its workspace, snapshot,
// private caches, network), and on the processes of their ids, pasta
// included; it returns once the snapshot is taken. The returned func
// checks, and fails t on any leak.
func (u *rlUser) userLeakcheck(t *testing.T) func() {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(u.bin, "jobrun.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	o := leakOrders{State: filepath.Join(u.stateDir(), "work"), UID: u.uid, Sub: u.sub}
	for _, d := range []string{"snapshots", "caches/private", "network"} {
		o.Also = append(o.Also, filepath.Join(u.stateDir(), d))
	}
	o.Also = append(o.Also, u.runDir())
	spec, _ := json.Marshal(o)
	cmd := u.command()
	cmd.Path, cmd.Args = bin, []string{bin, "-test.run=^TestRootlessLeakcheckHelper$", "-test.v", "-test.count=1"}
	// TestMain's helpers: copied from the user's bin, which has them.
	cmd.Env = append(cmd.Env, leakcheckAsUserEnv+"="+string(spec), testenv.HelpersEnv+"="+u.bin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	run := u.startCmd(t, cmd)
	run.waitOut(t, "leakcheck: taken")
	return func() {
		t.Helper()
		stdin.Close()
		if r := run.end(t); r.code != 0 || !strings.Contains(r.out, "--- PASS: TestRootlessLeakcheckHelper") {
			t.Errorf("the leak checker run as %s: exit %d", u.name, r.code)
		}
	}
}

// hasPasta reports whether one of procs is pasta.
func hasPasta(procs []string) bool {
	for _, p := range procs {
		if strings.Contains(p, "pasta") {
			return true
		}
	}
	return false
}
