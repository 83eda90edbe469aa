package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/gittest"
)

// TestTriggerJobNamesOneMatrixCombination: `jobrun trigger --job` takes a
// job's full name, commas and all, as `jobrun local --job` does; a real
// server queues that one combination (and the other --job). No agent is
// needed: the run's jobs are what the server planned.
func TestTriggerJobNamesOneMatrixCombination(t *testing.T) {
	bin := buildJobrun(t)
	ctx := context.Background()
	const adminToken, gitToken = "trigger-admin", "trigger-git-token"
	w := gittest.New(t)
	w.Commit("first", map[string]string{".ci.hcl": `
job "build" {
  image = "busybox"
  matrix {
    arch = ["amd64", "arm64"]
    os   = ["linux", "plan9"]
  }
  step "build" { run = "true" }
}
job "lint" {
  image = "busybox"
  step "lint" { run = "true" }
}
`})
	bare := w.Bare()
	w.Git("push", "-q", "origin", "main")
	cloneURL := gittest.Serve(t, filepath.Dir(bare), gitToken) + "/" + filepath.Base(bare)
	_, addr := startDaemon(t, bin, regexp.MustCompile(`server listening on (\S+)`),
		"--state-dir", t.TempDir(), "server", "--listen", "127.0.0.1:0", "--admin-token", adminToken, "--registration-token", "unused")
	base := "http://" + addr
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"repo", "add", "hello", "--url", cloneURL, "--secret", "s", "--token", gitToken,
		"--server", base, "--admin-token", adminToken}, &out, &errb); code != 0 {
		t.Fatalf("jobrun repo add: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if code := run(ctx, []string{"trigger", "hello", "main", "--job", "build (arch=amd64, os=linux)", "--job", "lint",
		"--server", base, "--admin-token", adminToken}, &out, &errb); code != 0 {
		t.Fatalf("jobrun trigger: exit %d\n%s%s", code, out.String(), errb.String())
	}
	c := &api.Client{Base: base, Token: adminToken}
	runs, err := c.Runs(ctx, "hello", "main")
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %+v, %v", runs, err)
	}
	r, err := c.Run(ctx, runs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, j := range r.Jobs {
		names = append(names, j.Name)
	}
	slices.Sort(names)
	if want := []string{"build (arch=amd64, os=linux)", "lint"}; !slices.Equal(names, want) {
		t.Errorf("triggered run's jobs: %q, want %q", names, want)
	}
}
