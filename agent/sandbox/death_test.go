package sandbox

import (
	"context"
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// onlyInit fails t unless the container's cgroup holds just its init.
func onlyInit(t *testing.T, c *Container) {
	t.Helper()
	pids, err := c.cg.GetAllPids()
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{c.initPid}; !slices.Equal(pids, want) {
		t.Errorf("container processes %v, want only init %v", pids, want)
	}
}

func TestPidsLimit(t *testing.T) {
	rt, _ := newRuntime(t)
	c := start(t, rt, Spec{ID: "pids", Rootfs: rootfs(t), Resources: Resources{Pids: 64}, StopGrace: 100 * time.Millisecond})

	// Positive control: a few processes are fine.
	exit, _, _ := sh(t, c, Process{}, `sleep 0.1 & sleep 0.1 & wait`)
	if !exit.Success() || exit.PidsLimit {
		t.Fatalf("control: %s %+v", exit, exit)
	}

	// A real fork bomb: it never ends by itself, so the step times out
	// with the pids limit reached, and every bomb process is gone after.
	// The step's shell forks once, for the bomb, while nothing else
	// runs, and becomes sleep by exec: any later fork of its own can meet
	// the limit the bomb reached and end the step early (busybox sh forks
	// each element of the pipeline `b | b &` itself, so running b in the
	// step's shell did; a CI run saw it).
	exit, _, _ = sh(t, c, Process{Timeout: 3 * time.Second}, `(b() { b | b & }; b) & exec sleep 1000`)
	if !exit.PidsLimit || !exit.TimedOut {
		t.Errorf("fork bomb: %+v", exit)
	}
	if want := "timed out after 3s; pids limit reached (limit 64)"; exit.String() != want {
		t.Errorf("fork bomb: %q, want %q", exit, want)
	}
	onlyInit(t, c)
	u, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if u.PidsPeak != 64 {
		t.Errorf("pids peak %d, want the limit 64", u.PidsPeak)
	}

	// A loop that fails on its own when fork fails.
	exit, _, errOut := sh(t, c, Process{Timeout: time.Minute}, `i=0; while [ $i -lt 200 ]; do sleep 1000 & i=$((i+1)); done`)
	if exit.Success() || !exit.PidsLimit || exit.TimedOut || !strings.HasPrefix(exit.String(), "pids limit reached") {
		t.Errorf("fork loop: %s %+v (stderr %q)", exit, exit, errOut)
	}
}

func TestMemoryLimit(t *testing.T) {
	rt, _ := newRuntime(t)
	c := start(t, rt, Spec{ID: "memory", Rootfs: rootfs(t), Resources: Resources{Memory: 64 << 20}})

	exit, out, _ := sh(t, c, Process{}, `probe alloc 16M`)
	if !exit.Success() || out != "ok\n" || exit.OOMKilled {
		t.Fatalf("control (16 MiB): %s %q", exit, out)
	}
	exit, _, _ = sh(t, c, Process{}, `exec probe alloc 256M`)
	if !exit.OOMKilled || exit.Signal != syscall.SIGKILL {
		t.Errorf("256 MiB: %+v", exit)
	}
	if want := "out of memory (limit 64 MiB)"; exit.String() != want {
		t.Errorf("256 MiB: %q, want %q", exit, want)
	}
	u, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// The kernel may charge a page or so past the limit before it kills.
	if u.MemoryPeak < 16<<20 || u.MemoryPeak > 65<<20 {
		t.Errorf("memory peak %d, want between 16 MiB and about the 64 MiB limit", u.MemoryPeak)
	}
	if u.CPU <= 0 {
		t.Errorf("cpu time %v, want > 0", u.CPU)
	}
}

func TestCPULimit(t *testing.T) {
	rt, _ := newRuntime(t)
	c := start(t, rt, Spec{ID: "cpu", Rootfs: rootfs(t), Resources: Resources{CPUs: 0.5}})
	exit, out, _ := sh(t, c, Process{}, `cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max`)
	if !exit.Success() || (out != "50000\n100000\n" && out != "50000 100000\n") {
		t.Errorf("cpu quota seen in the container: %s %q", exit, out)
	}
}

func TestTimeoutKillsEverything(t *testing.T) {
	rt, _ := newRuntime(t)
	c := start(t, rt, Spec{ID: "timeout", Rootfs: rootfs(t), StopGrace: 200 * time.Millisecond})
	// A setsid'd child, a double-forked daemon that ignores SIGTERM, and
	// the step itself sleeping past the timeout.
	script := `setsid sleep 1000 & (setsid sh -c 'trap "" TERM; while :; do sleep 1; done' &) ; sleep 1000`
	exit, _, _ := sh(t, c, Process{Timeout: time.Second}, script)
	if !exit.TimedOut || exit.Cancelled || exit.Timeout != time.Second {
		t.Errorf("%+v", exit)
	}
	if want := "timed out after 1s"; exit.String() != want {
		t.Errorf("%q, want %q", exit, want)
	}
	onlyInit(t, c)

	// The container still runs steps afterwards.
	if exit, out, _ := sh(t, c, Process{}, `echo alive`); !exit.Success() || out != "alive\n" {
		t.Errorf("after timeout: %s %q", exit, out)
	}

	// A job-wide deadline set by the caller names its duration the same way.
	ctx, cancel := context.WithTimeoutCause(context.Background(), 500*time.Millisecond, Timeout(20*time.Minute))
	defer cancel()
	exit, err := c.Exec(ctx, Process{Args: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	if exit.String() != "timed out after 20m" {
		t.Errorf("caller deadline: %q", exit)
	}
}

func TestCancel(t *testing.T) {
	rt, _ := newRuntime(t)
	c := start(t, rt, Spec{ID: "cancel", Rootfs: rootfs(t), StopGrace: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan struct{})
	var exit *Exit
	var err error
	go func() {
		defer close(done)
		// The step exits promptly on SIGTERM: the grace period is not
		// waited out when everything is gone.
		exit, err = c.Exec(ctx, Process{Args: []string{"/bin/sh", "-c", `trap 'echo term; exit 3' TERM; echo ready; while :; do sleep 0.05; done`}, Stdout: &out})
	}()
	for !strings.Contains(out.String(), "ready") {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if !exit.Cancelled || exit.TimedOut || exit.String() != "cancelled" {
		t.Errorf("%q %+v", exit, exit)
	}
	if exit.Code != 3 || out.String() != "ready\nterm\n" {
		t.Errorf("step did not get SIGTERM first: code %d, output %q", exit.Code, out.String())
	}
	onlyInit(t, c)

	// An already cancelled context runs nothing.
	exit, err = c.Exec(ctx, Process{Args: []string{"true"}})
	if err != nil || !exit.Cancelled {
		t.Errorf("cancelled context: %v %+v", err, exit)
	}
}

// TestFailedStartLeavesNothing starts containers that cannot start.
func TestFailedStartLeavesNothing(t *testing.T) {
	rt, _ := newRuntime(t)
	root := rootfs(t)
	for _, s := range []Spec{
		{ID: "bad id!", Rootfs: root},
		{ID: "no-rootfs", Rootfs: "/nonexistent/rootfs"},
		{ID: "bad-user", Rootfs: root, User: "nobody-here"},
		{ID: "bad-mount", Rootfs: root, Mounts: []Mount{{Source: "/nonexistent/cache", Target: "/cache"}}},
		{ID: "bad-net", Rootfs: root, Network: "bridge"},
	} {
		if c, err := rt.Start(context.Background(), s); err == nil {
			c.Destroy()
			t.Errorf("%s: started", s.ID)
		} else {
			t.Logf("%s: %v", s.ID, err)
		}
	}
	// The same id twice is refused while the first lives.
	c := start(t, rt, Spec{ID: "twice", Rootfs: root})
	if c2, err := rt.Start(context.Background(), Spec{ID: "twice", Rootfs: root}); err == nil {
		c2.Destroy()
		t.Error("second container with the same id started")
	}
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := c.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	// A cancelled context starts nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := rt.Start(ctx, Spec{ID: "cancelled", Rootfs: root}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled start: %v", err)
	}
}
