package sandbox

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestStepCredentials pins down what a step is, per user, as the
// launcher starts it: the values are those libcontainer's own setns
// processes had (recorded before the launcher replaced them), so the two
// ways of starting a step give the same ids, groups, capabilities,
// no_new_privs and seccomp mode.
func TestStepCredentials(t *testing.T) {
	rt, _ := newRuntime(t)
	c := start(t, rt, Spec{ID: "creds", Rootfs: rootfs(t)})
	script := `grep -E '^(Uid|Gid|Groups|Cap[A-Za-z]+|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status`
	for _, tc := range []struct{ user, want string }{
		{"0", "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t \nCapInh:\t0000000000000000\nCapPrm:\t00000000a80405fb\nCapEff:\t00000000a80405fb\nCapBnd:\t00000000a80405fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n"},
		{"builder", "Uid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t1001 \nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t00000000a80405fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n"},
		{"1000:1001", "Uid:\t1000\t1000\t1000\t1000\nGid:\t1001\t1001\t1001\t1001\nGroups:\t \nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t00000000a80405fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n"},
	} {
		exit, out, errOut := sh(t, c, Process{User: tc.user}, script)
		if !exit.Success() || out != tc.want {
			t.Errorf("user %s: %s\n%s%s\nwant\n%s", tc.user, exit, out, errOut, tc.want)
		}
	}
	// Every step shares the init's namespaces and cgroup, leads its own
	// session, and is the launcher's child.
	nss := []string{"cgroup", "ipc", "mnt", "net", "pid", "uts", "user"}
	want := ""
	for _, n := range nss {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", c.initPid, n))
		if err != nil {
			t.Fatal(err)
		}
		want += l + "\n"
	}
	exit, out, _ := sh(t, c, Process{}, `for n in `+strings.Join(nss, " ")+`; do readlink /proc/self/ns/$n; done`)
	if !exit.Success() || out != want {
		t.Errorf("namespaces: %s %q, want the init's %q", exit, out, want)
	}
	exit, out, _ = sh(t, c, Process{}, `[ "$(cat /proc/self/cgroup)" = "$(cat /proc/1/cgroup)" ] && echo same cgroup; echo "parent $PPID"; [ "$(cut -d' ' -f6 /proc/$$/stat)" = $$ ] && echo session leader`)
	if !exit.Success() || out != "same cgroup\nparent 1\nsession leader\n" {
		t.Errorf("cgroup, parent, session: %s %q", exit, out)
	}
	// Not even root in the container can look into the launcher, which
	// holds the control socket; the positive control is the step's own.
	exit, out, _ = sh(t, c, Process{}, `cat /proc/1/environ >/dev/null 2>&1 || echo denied; cat /proc/self/environ >/dev/null && echo own`)
	if !exit.Success() || out != "denied\nown\n" {
		t.Errorf("launcher's /proc files: %s %q", exit, out)
	}
}

// TestLauncherReapsOrphans leaves a background process behind that exits
// after the step: the launcher reaps it, so no zombie stays.
func TestLauncherReapsOrphans(t *testing.T) {
	rt, _ := newRuntime(t)
	c := start(t, rt, Spec{ID: "reap", Rootfs: rootfs(t)})
	if exit, _, _ := sh(t, c, Process{}, `(sleep 0.2 &); (setsid sleep 0.2 &); true`); !exit.Success() {
		t.Fatal(exit)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, err := c.cg.GetAllPids()
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == 1 && pids[0] == c.initPid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left (zombies not reaped?): %v", pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStdin feeds a step from a plain reader (through a pipe) and from a
// file (passed as is).
func TestStdin(t *testing.T) {
	rt, _ := newRuntime(t)
	c := start(t, rt, Spec{ID: "stdin", Rootfs: rootfs(t)})
	var out syncBuffer
	exit, err := c.Exec(context.Background(), Process{Args: []string{"cat"}, Stdin: strings.NewReader("from a reader\n"), Stdout: &out})
	if err != nil || !exit.Success() || out.String() != "from a reader\n" {
		t.Errorf("reader: %v %v %q", err, exit, out.String())
	}
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("from a file\n")
	f.Seek(0, 0)
	var out2 syncBuffer
	exit, err = c.Exec(context.Background(), Process{Args: []string{"cat"}, Stdin: f, Stdout: &out2})
	if err != nil || !exit.Success() || out2.String() != "from a file\n" {
		t.Errorf("file: %v %v %q", err, exit, out2.String())
	}
	// No stdin reads end of file at once.
	var out3 syncBuffer
	exit, err = c.Exec(context.Background(), Process{Args: []string{"wc", "-c"}, Stdout: &out3})
	if err != nil || !exit.Success() || strings.TrimSpace(out3.String()) != "0" {
		t.Errorf("no stdin: %v %v %q", err, exit, out3.String())
	}
}

// TestStartErrors: a step that cannot start is an error saying why, and
// the container keeps working.
func TestStartErrors(t *testing.T) {
	rt, _ := newRuntime(t)
	c := start(t, rt, Spec{ID: "start-errors", Rootfs: rootfs(t)})
	for _, tc := range []struct {
		p    Process
		want string
	}{
		{Process{Args: []string{"/no/such/command"}}, "exec /no/such/command: no such file or directory"},
		{Process{Args: []string{"no-such-command"}}, "exec no-such-command: executable file not found in $PATH"},
		{Process{Args: []string{"true"}, Cwd: "/no/such/dir"}, "working directory /no/such/dir: no such file or directory"},
		{Process{Args: []string{"true"}, Cwd: "/etc/passwd"}, "working directory /etc/passwd: not a directory"},
	} {
		_, err := c.Exec(context.Background(), tc.p)
		if err == nil || !strings.HasSuffix(err.Error(), tc.want) {
			t.Errorf("%v in %s: error %v, want one ending in %q", tc.p.Args, tc.p.Cwd, err, tc.want)
		}
	}
	if exit, out, _ := sh(t, c, Process{}, "echo still here"); !exit.Success() || out != "still here\n" {
		t.Errorf("after failed starts: %s %q", exit, out)
	}
}

// TestConcurrentSteps runs steps of one container at once, as Exec
// allows, each with its own output; then destroys the container under a
// running step, whose Exec must return rather than hang.
func TestConcurrentSteps(t *testing.T) {
	rt, _ := newRuntime(t)
	c, err := rt.Start(context.Background(), Spec{ID: "concurrent", Rootfs: rootfs(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Destroy()
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			var out syncBuffer
			exit, err := c.Exec(context.Background(), Process{Args: []string{"/bin/sh", "-c", fmt.Sprintf("sleep 0.1; echo step %d", i)}, Stdout: &out})
			if err == nil && (!exit.Success() || out.String() != fmt.Sprintf("step %d\n", i)) {
				err = fmt.Errorf("step %d: %s, output %q", i, exit, out.String())
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}

	done := make(chan *Exit, 1)
	var out syncBuffer
	go func() {
		exit, err := c.Exec(context.Background(), Process{Args: []string{"/bin/sh", "-c", "echo running; sleep 1000"}, Stdout: &out})
		if err != nil {
			t.Error(err)
		}
		done <- exit
	}()
	for !strings.Contains(out.String(), "running") {
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	select {
	case exit := <-done:
		if exit == nil || exit.Success() {
			t.Errorf("step of a destroyed container: %+v", exit)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Exec still waiting 10s after Destroy")
	}
}

// TestSignalForwarding: a termination signal sent to the launcher (PID 1)
// reaches the running steps, as with tini.
func TestSignalForwarding(t *testing.T) {
	rt, _ := newRuntime(t)
	c := start(t, rt, Spec{ID: "forward", Rootfs: rootfs(t)})
	var out syncBuffer
	done := make(chan *Exit, 1)
	go func() {
		exit, err := c.Exec(context.Background(), Process{Args: []string{"/bin/sh", "-c", `trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done`}, Stdout: &out, Timeout: time.Minute})
		if err != nil {
			t.Error(err)
		}
		done <- exit
	}()
	for !strings.Contains(out.String(), "ready") {
		time.Sleep(10 * time.Millisecond)
	}
	// The sender is a step too and gets the signal as well; only the
	// first step's fate is checked.
	if _, err := c.Exec(context.Background(), Process{Args: []string{"kill", "-TERM", "1"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case exit := <-done:
		if exit == nil || !exit.Success() || out.String() != "ready\ngot TERM\n" {
			t.Errorf("step: %v, output %q", exit, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM to the launcher did not reach the step")
	}
}
