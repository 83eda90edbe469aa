package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/api"
)

// leakJobs: "build" names TOKEN and puts it in an artifact; "ship" does
// not name it, prints the artifact and its own $TOKEN.
const leakJobs = `
job "build" {
  image   = "IMAGE"
  agent   = ["e2e"]
  network = "none"
  secrets = ["TOKEN"]
  step "build" { run = "mkdir -p out && echo \"$TOKEN\" > out/tok.txt" }
  artifacts { paths = ["out/*.txt"] }
}
job "ship" {
  image   = "IMAGE"
  agent   = ["e2e"]
  network = "none"
  needs   = ["build"]
  step "ship" { run = "echo got=$(cat out/tok.txt); echo env=[$TOKEN]" }
}
`

// TestLocalSecretMaskedInEveryJob: a secret that reaches a job not naming
// it, through an artifact, is masked there too; that job still does not
// get it in its environment.
func TestLocalSecretMaskedInEveryJob(t *testing.T) {
	file := project(t, leakJobs, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file, "--secret", "TOKEN=artifact-s3cr3t-9")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.out, r.err)
	}
	// The control: ship printed the artifact's line and its empty $TOKEN.
	order(t, r.out, `ship › ship \| got=\*\*\*`, `ship › ship \| env=\[\]`)
	if strings.Contains(r.out+r.err, "artifact-s3cr3t-9") {
		t.Errorf("the secret is in the output:\n%s", r.out)
	}
}

// TestAgentSecretMaskedInEveryJob: on the pool, the lease carries the
// run's secrets for masking, so the job that receives one through an
// artifact masks it, and does not get it in its environment.
func TestAgentSecretMaskedInEveryJob(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	p, _, logs := startPoolAgent(t, bin, "10s", "mask-agent")
	if err := p.c.SetSecret(ctx, "example.com/mask", "TOKEN", api.SetSecret{Value: "artifact-s3cr3t-9"}); err != nil {
		t.Fatal(err)
	}
	run, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/mask", Branch: "main",
		Source: strings.ReplaceAll(leakJobs, "IMAGE", image)})
	if err != nil {
		t.Fatal(err)
	}
	r := waitRunDone(t, p.c, run.ID, logs)
	if r.Status != api.Succeeded {
		t.Fatalf("run %d: %s (%s)%s", r.ID, r.Status, r.Reason, logs())
	}
	var ship api.Job
	for _, j := range r.Jobs {
		if j.Name == "ship" {
			ship = j
		}
	}
	out := jobLog(t, p.c, ship.ID)
	if !strings.Contains(out, "got=***") || !strings.Contains(out, "env=[]") {
		t.Errorf("ship's log lacks the masked artifact line or the empty $TOKEN:\n%s", out)
	}
	if strings.Contains(out, "artifact-s3cr3t-9") {
		t.Errorf("the secret is in ship's log:\n%s", out)
	}
}
