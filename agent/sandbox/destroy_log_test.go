package sandbox

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// TestDestroyEndsProcessQuietly: destroying a container while a process
// runs in it (how every service container of a job is stopped) ends the
// process as killed, with no "step outcome unknown" warning. The control:
// a launcher that dies on its own, with no Destroy, still warns.
func TestDestroyEndsProcessQuietly(t *testing.T) {
	var logs syncBuffer
	rt, _ := newRuntimeLog(t, hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug}))
	root := rootfs(t)

	run := func(c *Container, end func()) *Exit {
		t.Helper()
		var out syncBuffer
		type result struct {
			exit *Exit
			err  error
		}
		done := make(chan result, 1)
		go func() {
			exit, err := c.Exec(context.Background(), Process{Args: []string{"/bin/sh", "-c", "echo running; exec sleep 300"}, Stdout: &out, Stderr: &out})
			done <- result{exit, err}
		}()
		for !strings.Contains(out.String(), "running") {
			select {
			case r := <-done:
				t.Fatalf("the process ended before it ran: %v %v: %s", r.exit, r.err, out.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
		end()
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.exit
	}

	c := start(t, rt, Spec{ID: "destroy-quiet", Rootfs: root})
	exit := run(c, func() {
		if err := c.Destroy(); err != nil {
			t.Error(err)
		}
	})
	if exit.Signal != syscall.SIGKILL || exit.Success() {
		t.Errorf("process of a destroyed container: %s, want killed by SIGKILL", exit)
	}
	if strings.Contains(logs.String(), "step outcome unknown") {
		t.Errorf("Destroy of a running container warned:\n%s", logs.String())
	}

	// Control: the launcher dies with no Destroy, the outcome is unknown.
	c = start(t, rt, Spec{ID: "launcher-dies", Rootfs: root})
	run(c, func() {
		if err := unix.Kill(c.Pid(), unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
	})
	if !strings.Contains(logs.String(), "step outcome unknown") {
		t.Errorf("a launcher that died on its own did not warn:\n%s", logs.String())
	}
}
