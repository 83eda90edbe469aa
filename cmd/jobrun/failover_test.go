package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/pgtest"
)

const failoverJob = `
job "long" {
  image   = "IMAGE"
  agent   = ["e2e"]
  network = "host"
  step "span" { run = "wget -q -O /dev/null \"http://COUNTER/?id=start\"; echo span-begun; sleep 15; wget -q -O /dev/null \"http://COUNTER/?id=end\"; echo long-done" }
}
`

// TestAgentFailsOverWhenItsServerDies: two real servers on one
// PostgreSQL database and an agent given both (--server A,B). Server A,
// which the agent registered with and leased the job from, is killed
// mid-job; the agent renews the lease, streams the log and reports the
// result through B, so the job (longer than the lease timeout) finishes
// once, on its first attempt, and is never run again; the agent goes on
// leasing from B. Each run of the step is counted outside jobrun.
func TestAgentFailsOverWhenItsServerDies(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	db := pgtest.Database(t)
	a, b := startServerOn(t, bin, t.TempDir(), db), startServerOn(t, bin, t.TempDir(), db)
	cnt := startCounter(t)

	h := agentHost(t)
	if err := os.WriteFile(filepath.Join(h.state, "config.hcl"), []byte("network {\n  allow_host = true\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	agent, _ := startDaemon(t, bin, regexp.MustCompile(`agent: (registered)`),
		"--state-dir", h.state, "--log-level", "info", "agent", "--server", a.base+","+b.base,
		"--token", poolReg, "--name", "failover", "--labels", "linux,e2e")
	logs := func() string {
		return "\nserver A:\n" + a.srv.log() + "\nserver B:\n" + b.srv.log() + "\nagent:\n" + agent.log()
	}

	src := strings.NewReplacer("IMAGE", image, "COUNTER", cnt.addr).Replace(failoverJob)
	run, err := b.c.CreateRun(ctx, api.NewRun{Repo: "example.com/failover", Branch: "main", Source: src, Trigger: "api"})
	if err != nil {
		t.Fatal(err)
	}
	id := run.Jobs[0].ID
	b.waitJob(t, id, "started", func(j *api.Job) bool {
		return j.Status == api.Running && strings.Contains(jobLog(t, b.c, id), "span-begun")
	}, logs)
	// The agent speaks to its first server, A, while A is up.
	if !strings.Contains(a.srv.log(), "agent registered: agent=failover") {
		t.Fatalf("the agent did not register with server A, its first:%s", logs())
	}

	// Server A dies without a word.
	a.srv.once.Do(func() {
		a.srv.cmd.Process.Kill()
		<-a.srv.done
	})

	r := waitRunDone(t, b.c, run.ID, logs)
	j := r.Jobs[0]
	if r.Status != api.Succeeded || j.Attempt != 1 {
		t.Fatalf("job after its server died: %s, attempt %d (%s)%s", j.Status, j.Attempt, j.Reason, logs())
	}
	if l := jobLog(t, b.c, id); strings.Count(l, "span-begun") != 1 || strings.Count(l, "long-done") != 1 {
		t.Fatalf("job log:\n%s%s", l, logs())
	}
	if strings.Contains(agent.log(), "self-fencing") {
		t.Fatalf("the agent fenced its job:%s", logs())
	}
	cnt.mu.Lock()
	starts, ends := cnt.counts["start"], cnt.counts["end"]
	cnt.mu.Unlock()
	if starts != 1 || ends != 1 {
		t.Fatalf("the step started %d times and ended %d times, want once each%s", starts, ends, logs())
	}

	// The agent leases its next job from B.
	quick := strings.NewReplacer("sleep 15; ", "", "?id=start", "?id=start2", "?id=end", "?id=end2").Replace(src)
	run2, err := b.c.CreateRun(ctx, api.NewRun{Repo: "example.com/failover", Branch: "next", Source: quick, Trigger: "api"})
	if err != nil {
		t.Fatal(err)
	}
	if r := waitRunDone(t, b.c, run2.ID, logs); r.Status != api.Succeeded || r.Jobs[0].Attempt != 1 {
		t.Fatalf("the next job: %s attempt %d%s", r.Status, r.Jobs[0].Attempt, logs())
	}
	agent.stop(t)
}

// TestAgentServerFlagChecked: a bad URL in the agent's --server list is a
// usage error naming it, before the agent touches the host.
func TestAgentServerFlagChecked(t *testing.T) {
	var out, errb strings.Builder
	code := run(context.Background(), []string{"--state-dir", t.TempDir(), "agent", "--server", "http://127.0.0.1:1,ftp://x", "--token", "t"}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), `"ftp://x"`) {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
