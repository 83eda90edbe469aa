package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/jobrun/jobrun/internal/leakcheck"
)

// TestLocalKilledNoCacheScratchRemoved kills a real `jobrun local
// --no-cache` (SIGKILL, no teardown) while its job writes to a cache: the
// cache's scratch directory is left behind, and the next jobrun on the
// state dir removes it at start-up (and its own, with its job).
func TestLocalKilledNoCacheScratchRemoved(t *testing.T) {
	file := project(t, `
job "long" {
  image = "IMAGE"
  cache "deps" { path = "/deps" }
  step "fill" { run = "echo scratch > /deps/file; echo filled; sleep 300" }
}
`, map[string]string{})
	bin := buildJobrun(t)
	h := newTestHost(t)
	scratch := filepath.Join(h.state, "work", "nocache")
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		t.Fatal(err)
	}
	leaks := leakcheck.Take(t, scratch)
	c := startChild(t, exec.Command(bin, "--state-dir", h.state, "local", "--no-cache", "--artifacts", h.artifacts, file))
	c.line(t, c.stdout, has("| filled"))
	release := holdStateDir(t, h.state)
	c.signal(t, syscall.SIGKILL)
	left, _ := filepath.Glob(filepath.Join(scratch, "*", "file"))
	if len(left) == 0 {
		t.Fatal("the killed jobrun left no scratch dir behind: the test proves nothing")
	}
	next := project(t, `
job "next" {
  image = "IMAGE"
  cache "deps" { path = "/deps" }
  step "x" { run = "test ! -e /deps/file && echo fresh > /deps/file" }
}
`, map[string]string{})
	release()
	if r := h.local(t, next, "--no-cache"); r.code != 0 {
		t.Fatalf("the next run: exit %d", r.code)
	}
	if left, _ := filepath.Glob(filepath.Join(scratch, "*")); len(left) != 0 {
		t.Errorf("the next run's start-up clean-up left %v", left)
	}
	leaks.Check(t)
}
