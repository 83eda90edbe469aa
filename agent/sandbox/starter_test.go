package sandbox

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// ppid returns the parent pid of pid.
func ppid(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	t.Fatalf("no PPid in /proc/%d/status", pid)
	return 0
}

// TestStarter checks that containers are started by jobrun-starter (their
// init is its child), that a starter that dies takes its containers with
// it and is replaced at the next start, and that a closed Runtime starts
// nothing.
func TestStarter(t *testing.T) {
	rt, _ := newRuntime(t)
	root := rootfs(t)
	first := start(t, rt, Spec{ID: "first", Rootfs: root})
	p, err := rt.starter.get()
	if err != nil {
		t.Fatal(err)
	}
	if got := ppid(t, first.Pid()); got != p.cmd.Process.Pid {
		t.Errorf("init's parent is %d, want the starter %d", got, p.cmd.Process.Pid)
	}
	// It runs from a sealed copy of itself, so that libcontainer does
	// not seal one per container.
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.cmd.Process.Pid)); err != nil || !strings.HasPrefix(exe, "/memfd:runc_cloned:"+starterName) {
		t.Errorf("starter runs %q (%v), want a sealed memfd copy of %s", exe, err, starterName)
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.cmd.Process.Pid)); err != nil || strings.TrimSpace(string(comm)) != starterName {
		t.Errorf("starter is called %q (%v), want %s", comm, err, starterName)
	}

	// Kill the starter: the running container's init dies with it.
	if !alive(first.Pid()) {
		t.Fatal("init not alive before the starter was killed")
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	deadline := time.Now().Add(10 * time.Second)
	for alive(first.Pid()) {
		if time.Now().After(deadline) {
			t.Fatal("init outlived its starter")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if exit, err := first.Exec(context.Background(), Process{Args: []string{"true"}}); err == nil {
		t.Errorf("step ran in a container whose init died: %v", exit)
	}
	if err := first.Destroy(); err != nil {
		t.Errorf("destroy a container whose init died: %v", err)
	}

	// The next start gets a new starter.
	second := start(t, rt, Spec{ID: "second", Rootfs: root})
	if exit, err := second.Exec(context.Background(), Process{Args: []string{"true"}}); err != nil || !exit.Success() {
		t.Fatalf("step after the starter was replaced: %v %v", exit, err)
	}
	if err := second.Destroy(); err != nil {
		t.Fatal(err)
	}

	rt.Close()
	if c, err := rt.Start(context.Background(), Spec{ID: "closed", Rootfs: root}); err == nil {
		c.Destroy()
		t.Error("a closed Runtime started a container")
	} else if !strings.Contains(err.Error(), "closed") {
		t.Errorf("start on a closed Runtime: %v", err)
	}
}

// TestStarterNotReady: a starter that exits instead of saying Ready fails
// the start that waits for it, with the reason, and leaves no process.
func TestStarterNotReady(t *testing.T) {
	s := newSpawner("/bin/true")
	defer s.close()
	s.prepare()
	if _, err := s.get(); err == nil || !strings.Contains(err.Error(), "/bin/true") {
		t.Errorf("start with a starter that is not one: %v", err)
	} else {
		t.Log(err)
	}
}

// TestCloseLetsStarterFinish: Close ends the starter by closing its
// control socket, and the starter exits by itself once the starts under
// way are done (one whose caller gave up takes its container back), with
// its containers' inits. Killed in the middle of a start, it left the
// container's init setup process waiting to be started, for good (a
// rootless job timed out while its container started, on the v2 lane).
// The control: a live container's init still dies with the starter.
func TestCloseLetsStarterFinish(t *testing.T) {
	rt, _ := newRuntime(t)
	c := start(t, rt, Spec{ID: "live", Rootfs: rootfs(t)})
	p, err := rt.starter.get()
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	st := p.cmd.ProcessState
	if st == nil || !st.Exited() || st.ExitCode() != 0 {
		t.Errorf("starter ended with %v, want an exit of its own (status 0)", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(c.Pid()) {
		if time.Now().After(deadline) {
			t.Fatal("a container's init outlived its starter's exit")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
