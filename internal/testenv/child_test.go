package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStartChildDiesWithParent: a child started by StartChild dies when the
// process that started it exits without waiting for it (as a test binary
// does on a -timeout panic); one started plainly lives on (the control).
func TestStartChildDiesWithParent(t *testing.T) {
	if mode := os.Getenv("TESTENV_CHILD_MODE"); mode != "" {
		cmd := exec.Command("sleep", "60")
		if mode == "tied" {
			if _, err := StartChild(cmd); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
		} else if err := cmd.Start(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(cmd.Process.Pid)
		os.Exit(0) // no wait, no clean-up
	}
	alive := func(pid int) bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		// A zombie reparented to init is as good as gone.
		return err == nil && !strings.Contains(string(b), ") Z ")
	}
	for _, c := range []struct {
		mode  string
		lives bool
	}{{"tied", false}, {"plain", true}} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStartChildDiesWithParent$")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD_MODE="+c.mode)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v: %s", c.mode, err, out)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatalf("%s: %q", c.mode, out)
		}
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
		deadline := time.Now().Add(Scale(5 * time.Second))
		for alive(pid) && !c.lives && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(pid) != c.lives {
			t.Errorf("%s: child alive %v after its parent exited, want %v", c.mode, alive(pid), c.lives)
		}
	}
}
