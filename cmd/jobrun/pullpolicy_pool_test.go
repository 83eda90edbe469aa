package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/testenv"
)

// TestAgentPullsMovedTag: a warm agent runs a job of myorg/ci:latest, the
// tag moves to a new image, and the next job sees the new one (the
// agent's default pull policy, always). Before, the agent kept the stored
// image forever.
func TestAgentPullsMovedTag(t *testing.T) {
	v1, v2, tag := versionedImages(t)
	reg := testenv.RequireEnv(t, "JOBRUN_TEST_REGISTRY", "a registry (scripts/services.sh)")
	bin := buildJobrun(t)
	ctx := context.Background()
	p := startPool(t, bin, "10s")
	h := agentHost(t)
	if err := os.WriteFile(filepath.Join(h.state, "config.hcl"), []byte(`registry "`+reg+`" { insecure = true }`), 0o644); err != nil {
		t.Fatal(err)
	}
	a := p.startAgent(t, bin, h, "pull-agent")
	logs := p.logs(map[string]*daemon{"agent": a})
	source := strings.Replace(versionJob(tag, ""), `network = "none"`, `network = "none"
  agent   = ["e2e"]`, 1)
	runOnce := func() string {
		t.Helper()
		run, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/pull", Branch: "main", Source: source})
		if err != nil {
			t.Fatal(err)
		}
		r := waitRunDone(t, p.c, run.ID, logs)
		if r.Status != api.Succeeded {
			t.Fatalf("run %d: %s (%s)%s", r.ID, r.Status, r.Reason, logs())
		}
		return runLog(t, p.c, r)
	}
	push(t, v1, tag)
	if l := runOnce(); !strings.Contains(l, "version=v1") {
		t.Fatalf("first run, want v1:\n%s", l)
	}
	push(t, v2, tag)
	if l := runOnce(); !strings.Contains(l, "version=v2") {
		t.Fatalf("after the tag moved, want v2:\n%s", l)
	}
	a.stop(t)
}
