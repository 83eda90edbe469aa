package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
)

// TestLocalCleanKeepsJobFileDirectory: with --clean, a job file in a
// subdirectory of its repository (as examples/go/.ci.hcl) gets that
// directory at /workspace, as without --clean, not the repository's top.
func TestLocalCleanKeepsJobFileDirectory(t *testing.T) {
	testenv.RequireTool(t, "git")
	file := project(t, `
job "where" {
  image = "IMAGE"
  step "look" { run = "cat beside-job-file; if [ -e at-top ]; then echo SAW-TOP; fi" }
}
`, map[string]string{})
	sub := filepath.Dir(file)
	repo := t.TempDir()
	dir := filepath.Join(repo, "examples", "go")
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(sub, dir); err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(dir, ".ci.hcl")
	os.WriteFile(filepath.Join(dir, "beside-job-file"), []byte("in examples/go\n"), 0o644)
	os.WriteFile(filepath.Join(repo, "at-top"), []byte("top\n"), 0o644)
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	h := newTestHost(t)
	for _, args := range [][]string{{"--clean"}, nil} {
		r := h.local(t, file, args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d", args, r.code)
		}
		order(t, r.out, `where › look \| in examples/go`, `where job succeeded`)
		order(t, r.out, `where +succeeded`)
		if regexpMatch(`\| SAW-TOP`, r.out) {
			t.Errorf("%v: /workspace is the repository's top", args)
		}
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }
