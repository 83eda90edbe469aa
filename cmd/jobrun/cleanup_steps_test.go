package main

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestLocalCleanupStepsRunAfterTimeout: a job that times out still runs
// its `if = "always"` and `if = "failure"` steps (under their own grace,
// agent.CleanupGrace), not the plain steps after the one that timed out,
// and ends failed as timed out.
func TestLocalCleanupStepsRunAfterTimeout(t *testing.T) {
	file := project(t, `
job "slow" {
  image   = "IMAGE"
  timeout = "2s"
  step "hang"  { run = "echo hanging; sleep 300" }
  step "after" { run = "echo MUST-NOT-RUN" }
  step "cleanup" {
    if  = "always"
    run = "echo cleaning-up"
  }
  step "report" {
    if  = "failure"
    run = "echo reporting-failure"
  }
}
`, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if strings.Contains(r.out, "| MUST-NOT-RUN") {
		t.Error("a plain step ran after the timeout")
	}
	order(t, r.out, `slow › hang \| hanging`, `slow › hang ■ failed .*timed out after 2s`,
		`clean-up steps .* get up to 5m`, `slow › cleanup \| cleaning-up`, `slow › report \| reporting-failure`)
	order(t, r.out, `slow +failed .*timed out after 2s`)
}

// TestLocalCancelSkipsCleanupSteps pins what a cancel does, as the README
// says: the running step is stopped and no further step runs, `if =
// "always"` included. The control is TestLocalCleanupStepsRunAfterTimeout.
func TestLocalCancelSkipsCleanupSteps(t *testing.T) {
	file := project(t, `
job "long" {
  image = "IMAGE"
  step "sleep" { run = "echo sleeping; sleep 300" }
  step "cleanup" {
    if  = "always"
    run = "echo MUST-NOT-CLEAN-UP"
  }
}
`, map[string]string{})
	bin := buildJobrun(t)
	h := newTestHost(t)
	out := interruptWhen(t, exec.Command(bin, "--state-dir", h.state, "local", "--artifacts", h.artifacts, file), "| sleeping")
	order(t, out, `sleep ■ cancelled`, `cleanup ■ skipped`, `long +cancelled`)
	if strings.Contains(out, "| MUST-NOT-CLEAN-UP") {
		t.Error("an always step ran after a cancel")
	}
}

// interruptWhen starts cmd as a child, sends it SIGINT once its stdout
// has a line containing marker, and returns its stdout once it exited 1.
func interruptWhen(t *testing.T, cmd *exec.Cmd, marker string) string {
	t.Helper()
	c := startChild(t, cmd)
	c.line(t, c.stdout, has(marker))
	err := c.signal(t, syscall.SIGINT)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("jobrun exited with %v, want exit status 1", err)
	}
	t.Logf("jobrun output:\n%s%s", c.stdout, c.stderr)
	return c.stdout.String()
}
