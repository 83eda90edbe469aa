package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/api"
)

const apiCmdJobs = `
job "follow" {
  image   = "IMAGE"
  agent   = ["e2e"]
  network = "none"
  step "talk" { run = "echo first-line; sleep 3; echo last-line" }
}
job "long" {
  image   = "IMAGE"
  agent   = ["e2e"]
  network = "none"
  step "wait" { run = "echo long-started; sleep 600" }
}
`

// TestAPICommands drives `jobrun runs|run|logs|cancel|retry|secret|agents`
// against a real `jobrun server` and agent, each with a token of the role
// it needs: a read token lists and shows runs, reads and follows logs
// (until the job ends) and lists agents, but cannot cancel; an operate
// token cancels and retries; secrets need the admin token and their value
// is never printed; an unknown job or run is named.
func TestAPICommands(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	p, agent, logs := startPoolAgent(t, bin, "10s", "cli-agent", "--jobs", "2")
	admin := []string{"--server", p.base, "--admin-token", poolAdmin}
	token := func(name, role string) []string {
		out, errs, ok := cli(t, bin, nil, append([]string{"token", "add", name, "--role", role}, admin...)...)
		if !ok {
			t.Fatalf("token add %s: %s", name, errs)
		}
		return []string{"JOBRUN_API_TOKEN=" + strings.TrimSpace(out)}
	}
	reader, operator := token("reader", "read"), token("operator", "operate")
	as := func(env []string, args ...string) (string, string, bool) {
		t.Helper()
		return cli(t, bin, env, append(args, "--server", p.base)...)
	}

	run, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/cli", Branch: "main",
		Source: strings.ReplaceAll(apiCmdJobs, "IMAGE", image), Trigger: "api"})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, j := range run.Jobs {
		ids[j.Name] = j.ID
	}
	// A failure leaves no sleeping job for the agent's drain to wait on.
	t.Cleanup(func() { p.c.Cancel(context.Background(), ids["long"]) })
	running := func(j *api.Job) bool { return j.Status == api.Running }
	p.waitJob(t, ids["follow"], "running", running, logs)

	// logs -f with the read token: it returns once the job has ended,
	// with the whole log.
	out, errs, ok := as(reader, "logs", fmt.Sprint(ids["follow"]), "-f")
	if !ok || !strings.Contains(out, "first-line") || !strings.Contains(out, "last-line") {
		t.Fatalf("logs -f: ok=%v\n%s%s%s", ok, out, errs, logs())
	}
	if j, err := p.c.Job(ctx, ids["follow"]); err != nil || j.Status != api.Succeeded {
		t.Fatalf("logs -f returned while job follow is %s (%v)", j.Status, err)
	}
	// Without -f, the log as it stands.
	if out, errs, ok := as(reader, "logs", fmt.Sprint(ids["follow"])); !ok || !strings.Contains(out, "last-line") {
		t.Fatalf("logs: ok=%v\n%s%s", ok, out, errs)
	}
	if _, errs, ok := as(reader, "logs", "999999"); ok || !strings.Contains(errs, "no job 999999") {
		t.Fatalf("logs of an unknown job: ok=%v %s; want \"no job 999999\"", ok, errs)
	}
	if _, errs, ok := as(reader, "logs", "x1"); ok || !strings.Contains(errs, `job id "x1"`) {
		t.Fatalf("logs x1: ok=%v %s; want a usage error", ok, errs)
	}

	// runs and run with the read token.
	out, errs, ok = as(reader, "runs", "--repo", "example.com/cli")
	if !ok || !regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+example\.com/cli\s+main\s`, run.ID)).MatchString(out) {
		t.Fatalf("runs --repo:\n%s%s", out, errs)
	}
	if out, _, ok := as(reader, "runs", "--repo", "example.com/other"); !ok || strings.Contains(out, "example.com/cli") {
		t.Fatalf("runs of another repository list this one:\n%s", out)
	}
	p.waitJob(t, ids["long"], "running", running, logs)
	out, errs, ok = as(reader, "run", fmt.Sprint(run.ID))
	if !ok || !regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+follow\s+succeeded\s+1\s+[0-9a-f]+\s`, ids["follow"])).MatchString(out) ||
		!regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+long\s+running\s+1\s`, ids["long"])).MatchString(out) {
		t.Fatalf("run %d:\n%s%s", run.ID, out, errs)
	}
	if _, errs, ok := as(reader, "run", "999999"); ok || !strings.Contains(errs, "no run 999999") {
		t.Fatalf("run of an unknown run: ok=%v %s", ok, errs)
	}
	out, errs, ok = as(reader, "agents")
	if !ok || !regexp.MustCompile(fmt.Sprintf(`(?m)^cli-agent\s+\S+\s+yes\s+e2e,linux\s+1/2\s+%d#1\s`, ids["long"])).MatchString(out) {
		t.Fatalf("agents:\n%s%s", out, errs)
	}

	// cancel: refused for the read token, done with the operate one.
	long := fmt.Sprint(ids["long"])
	if _, errs, ok := as(reader, "cancel", long); ok || !strings.Contains(errs, "403") {
		t.Fatalf("cancel with a read token: ok=%v %s; want 403", ok, errs)
	}
	if j, _ := p.c.Job(ctx, ids["long"]); j.Status != api.Running {
		t.Fatalf("job long after a refused cancel: %s", j.Status)
	}
	if _, errs, ok := as(operator, "retry", long); ok || !strings.Contains(errs, "retry job "+long) {
		t.Fatalf("retry of a running job: ok=%v %s; want refused", ok, errs)
	}
	if out, errs, ok := as(operator, "cancel", long); !ok || !strings.Contains(out, "job "+long+" cancelled") {
		t.Fatalf("cancel: ok=%v %s%s", ok, out, errs)
	}
	p.waitJob(t, ids["long"], "cancelled", func(j *api.Job) bool { return j.Status == api.Cancelled }, logs)
	if _, errs, ok := as(operator, "cancel", "999999"); ok || !strings.Contains(errs, "no job 999999") {
		t.Fatalf("cancel of an unknown job: ok=%v %s", ok, errs)
	}
	if out, errs, ok := as(operator, "retry", long); !ok || !strings.Contains(out, "job "+long+" queued again") {
		t.Fatalf("retry: ok=%v %s%s", ok, out, errs)
	}
	p.waitJob(t, ids["long"], "running its second attempt", func(j *api.Job) bool { return j.Status == api.Running && j.Attempt == 2 }, logs)
	if _, errs, ok := as(operator, "cancel", long); !ok {
		t.Fatalf("cancel of the second attempt: %s", errs)
	}
	p.waitJob(t, ids["long"], "cancelled", func(j *api.Job) bool { return api.Final(j.Status) }, logs)

	// secrets: the admin role; the value from standard input, never shown.
	const value = "s3cr3t-value-never-printed"
	set := func(env []string, args ...string) (string, bool) {
		cmd := exec.Command(bin, append([]string{"secret", "set"}, append(args, "--server", p.base)...)...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(value + "\n")
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		err := cmd.Run()
		return b.String(), err == nil
	}
	if out, ok := set(operator, "example.com/cli", "DEPLOY"); ok || !strings.Contains(out, "403") {
		t.Fatalf("secret set with an operate token: ok=%v %s; want 403", ok, out)
	}
	if out, ok := set(nil, "example.com/cli", "DEPLOY", "--branch", "main", "--branch", "release/*", "--admin-token", poolAdmin); !ok {
		t.Fatalf("secret set: %s", out)
	}
	out, errs, ok = cli(t, bin, nil, append([]string{"secret", "ls", "example.com/cli"}, admin...)...)
	if !ok || !regexp.MustCompile(`(?m)^DEPLOY\s+main, release/\*$`).MatchString(out) || strings.Contains(out, value) {
		t.Fatalf("secret ls:\n%s%s", out, errs)
	}
	if _, errs, ok := as(reader, "secret", "ls", "example.com/cli"); ok || !strings.Contains(errs, "403") {
		t.Fatalf("secret ls with a read token: ok=%v %s; want 403", ok, errs)
	}
	agent.stop(t)
}
