package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/api"
)

// TestAgentImageCredentialsFromSecret: on the pool, a job's
// image_credentials secret, stored for its repository, reaches the agent
// with the lease and pulls the private image; a job of the same run
// without it is refused by the registry. The login is never in the log.
func TestAgentImageCredentialsFromSecret(t *testing.T) {
	reg, tag := privateBusybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	p := startPool(t, bin, "10s")
	h := agentHost(t)
	if err := os.WriteFile(filepath.Join(h.state, "config.hcl"), []byte(`registry "`+reg+`" { insecure = true }`), 0o644); err != nil {
		t.Fatal(err)
	}
	a := p.startAgent(t, bin, h, "private-agent")
	logs := p.logs(map[string]*daemon{"agent": a})
	const repo = "example.com/private"
	if err := p.c.SetSecret(ctx, repo, "REGISTRY_LOGIN", api.SetSecret{Value: authUser + ":" + authPass}); err != nil {
		t.Fatal(err)
	}
	source := `
job "with-login" {
  image             = "` + tag + `"
  image_credentials = "REGISTRY_LOGIN"
  agent             = ["e2e"]
  network           = "none"
  step "x" { run = "echo pulled-private; env | grep -c ` + authPass + ` || true" }
}
job "without" {
  image   = "` + tag + `"
  agent   = ["e2e"]
  network = "none"
  step "x" { run = "echo should-not-run" }
}
`
	run, err := p.c.CreateRun(ctx, api.NewRun{Repo: repo, Branch: "main", Source: source})
	if err != nil {
		t.Fatal(err)
	}
	r := waitRunDone(t, p.c, run.ID, logs)
	want := map[string]string{"with-login": api.Succeeded, "without": api.Errored}
	for _, rj := range r.Jobs {
		j, err := p.c.Job(ctx, rj.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status != want[j.Name] {
			t.Errorf("job %s: %s (%s), want %s%s", j.Name, j.Status, j.Reason, want[j.Name], logs())
		}
	}
	l := runLog(t, p.c, r)
	if !strings.Contains(l, "pulled-private") || strings.Contains(l, "should-not-run") || !strings.Contains(strings.ToLower(l), "unauthorized") {
		t.Errorf("run log:\n%s", l)
	}
	if strings.Contains(l, authPass) || strings.Contains(a.log(), authPass) {
		t.Errorf("the password was printed:\n%s%s", l, logs())
	}
	a.stop(t)
}
