package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/miniotest"
	"github.com/jobrun/jobrun/internal/testenv"
)

// pool is a real `jobrun server` for an agent test, and its admin client.
type pool struct {
	srv  *daemon
	base string
	c    *api.Client
}

const poolAdmin, poolReg = "agent-test-admin", "agent-test-reg"

func startPool(t *testing.T, bin string, leaseTimeout string) *pool {
	t.Helper()
	srv, addr := startDaemon(t, bin, regexp.MustCompile(`server listening on (\S+)`),
		"--state-dir", t.TempDir(), "--log-level", "info", "server", "--listen", "127.0.0.1:0",
		"--admin-token", poolAdmin, "--registration-token", poolReg, "--lease-timeout", leaseTimeout)
	base := "http://" + addr
	return &pool{srv: srv, base: base, c: &api.Client{Base: base, Token: poolAdmin}}
}

// agentHost is a test host whose job sources must go too.
func agentHost(t *testing.T) *testHost {
	h := newTestHost(t)
	leaks := leakcheck.Take(t, filepath.Join(h.state, "work", "sources"))
	t.Cleanup(func() { leaks.Check(t) })
	return h
}

// startAgent runs `jobrun agent` on h until it has registered.
func (p *pool) startAgent(t *testing.T, bin string, h *testHost, name string, args ...string) *daemon {
	t.Helper()
	argv := append([]string{"--state-dir", h.state, "--log-level", "info", "agent",
		"--server", p.base, "--token", poolReg, "--name", name, "--labels", "linux,e2e"}, args...)
	d, _ := startDaemon(t, bin, regexp.MustCompile(`agent: (registered)`), argv...)
	return d
}

// startPoolAgent starts a server with the given lease timeout and one
// agent on a fresh test host, and returns them with their logs.
func startPoolAgent(t *testing.T, bin, leaseTimeout, name string, args ...string) (*pool, *daemon, func() string) {
	t.Helper()
	p := startPool(t, bin, leaseTimeout)
	a := p.startAgent(t, bin, agentHost(t), name, args...)
	return p, a, p.logs(map[string]*daemon{"agent": a})
}

func (p *pool) logs(ds map[string]*daemon) func() string {
	return func() string {
		s := "\nserver:\n" + p.srv.log()
		for name, d := range ds {
			s += "\n" + name + ":\n" + d.log()
		}
		return s
	}
}

// waitJob polls job id until ok says so.
func (p *pool) waitJob(t *testing.T, id int64, what string, ok func(*api.Job) bool, logs func() string) *api.Job {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		j, err := p.c.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d not %s after 2 minutes: %s attempt %d (%s)%s", id, what, j.Status, j.Attempt, j.Reason, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jobLog(t *testing.T, c *api.Client, id int64) string {
	t.Helper()
	var b strings.Builder
	r, err := c.Job(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString(runLog(t, c, &api.Run{Jobs: []api.Job{*r}}))
	return b.String()
}

const pipelineJobs = `
job "build" {
  image   = "IMAGE"
  agent   = ["e2e"]
  network = "none"
  secrets = ["TOKEN"]
  step "build" { run = "mkdir -p out && echo built-by-build > out/app && echo token is $TOKEN" }
  artifacts { paths = ["out/**"] }
}
job "ship" {
  image   = "IMAGE"
  agent   = ["e2e"]
  network = "none"
  needs   = ["build"]
  step "ship" { run = "cat out/app" }
}
`

// TestAgentRunsPipeline: a real agent runs a run's two jobs; the second
// receives the first's artifacts, uploaded and downloaded through the
// server; logs are retrievable with the secret masked; SIGTERM with
// nothing running leaves the pool at once.
func TestAgentRunsPipeline(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	p, a, logs := startPoolAgent(t, bin, "10s", "pipeline-agent", "--jobs", "2")

	if err := p.c.SetSecret(ctx, "example.com/pipeline", "TOKEN", api.SetSecret{Value: "s3cr3t-value"}); err != nil {
		t.Fatal(err)
	}
	run, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/pipeline", Branch: "main",
		Source: strings.ReplaceAll(pipelineJobs, "IMAGE", image)})
	if err != nil {
		t.Fatal(err)
	}
	r := waitRunDone(t, p.c, run.ID, logs)
	if r.Status != api.Succeeded {
		t.Fatalf("run %d: %s (%s)%s", r.ID, r.Status, r.Reason, logs())
	}
	byName := map[string]api.Job{}
	for _, j := range r.Jobs {
		byName[j.Name] = j
	}
	build, ship := byName["build"], byName["ship"]
	if build.Result == nil || len(build.Result.Artifacts) != 1 || build.Result.Artifacts[0] != "out/app" {
		t.Errorf("build's result lists artifacts %+v, want out/app", build.Result)
	}
	if bj, err := p.c.Job(ctx, build.ID); err != nil || len(bj.Steps) != 1 || bj.Steps[0].Status != api.Succeeded || bj.Steps[0].Name != "build" {
		t.Errorf("build's steps on the server: %+v, %v", bj, err)
	}
	buildLog, shipLog := jobLog(t, p.c, build.ID), jobLog(t, p.c, ship.ID)
	if !strings.Contains(buildLog, "token is ***") || strings.Contains(buildLog+shipLog, "s3cr3t-value") {
		t.Errorf("build's log does not mask the secret:\n%s", buildLog)
	}
	// The artifact went up through the server and came down into ship's
	// workspace.
	if !strings.Contains(shipLog, "built-by-build") || !strings.Contains(shipLog, "artifacts of build: 1 files") {
		t.Errorf("ship's log lacks build's artifact:\n%s", shipLog)
	}
	var m struct{ Files []struct{ Path string } }
	if err := p.c.Manifest(ctx, api.Attempt{Job: build.ID, Attempt: build.Attempt}, &m); err != nil || len(m.Files) != 1 {
		t.Errorf("build's manifest on the server: %+v, %v", m, err)
	}

	// Nothing running: SIGTERM leaves the pool at once, exit 0.
	a.stop(t)
	agents, err := p.c.Agents(ctx)
	if err != nil || len(agents) != 0 {
		t.Errorf("agents after the agent left: %+v, %v", agents, err)
	}
	if !strings.Contains(a.log(), "deregistered") {
		t.Errorf("agent log lacks its deregistration:\n%s", a.log())
	}
}

const slowJob = `
job "slow" {
  image   = "IMAGE"
  agent   = ["e2e"]
  network = "none"
  step "slow" { run = "echo started; sleep 4; echo slow-job-done" }
}
`

// TestAgentDrainsOnSIGTERM: SIGTERM stops leasing, lets the running job
// finish and be reported, then the agent deregisters and exits 0; a job
// queued during the drain stays queued for another agent.
func TestAgentDrainsOnSIGTERM(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	p, a, logs := startPoolAgent(t, bin, "10s", "drain-agent", "--jobs", "2")

	run, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/drain", Branch: "main", Source: strings.ReplaceAll(slowJob, "IMAGE", image)})
	if err != nil {
		t.Fatal(err)
	}
	id := run.Jobs[0].ID
	p.waitJob(t, id, "running its step", func(j *api.Job) bool {
		return len(j.Steps) > 0 && j.Steps[0].Status == api.StepRunning
	}, logs)
	a.cmd.Process.Signal(syscall.SIGTERM)
	// The idle slot's lease request, open at the drain, is let end (a job
	// it brought would run); after that no lease request starts.
	waitLog(t, a, "leasing stopped", logs)
	later, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/drain", Branch: "other", Source: strings.ReplaceAll(slowJob, "IMAGE", image)})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.done:
		a.once.Do(func() {})
		if err != nil {
			t.Fatalf("agent exit: %v%s", err, logs())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("agent still running 2 minutes after SIGTERM%s", logs())
	}
	j, err := p.c.Job(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != api.Succeeded {
		t.Fatalf("the running job ended %s (%s); it should have finished during the drain%s", j.Status, j.Reason, logs())
	}
	if l := jobLog(t, p.c, id); !strings.Contains(l, "slow-job-done") {
		t.Errorf("log lacks the job's last line:\n%s", l)
	}
	if lj, _ := p.c.Job(ctx, later.Jobs[0].ID); lj.Status != api.Queued {
		t.Errorf("a job queued during the drain is %s, want still queued", lj.Status)
	}
	if agents, _ := p.c.Agents(ctx); len(agents) != 0 {
		t.Errorf("the drained agent is still in the pool: %+v", agents)
	}
}

// TestAgentDrainTimeout: a job that outlives --drain-timeout is cancelled,
// reported with why, and the agent exits 0.
func TestAgentDrainTimeout(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	p, a, logs := startPoolAgent(t, bin, "10s", "timeout-agent", "--drain-timeout", "1s")
	src := strings.ReplaceAll(strings.ReplaceAll(slowJob, "IMAGE", image), "sleep 4", "sleep 600")
	run, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/drain", Branch: "main", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	id := run.Jobs[0].ID
	p.waitJob(t, id, "running its step", func(j *api.Job) bool {
		return len(j.Steps) > 0 && j.Steps[0].Status == api.StepRunning
	}, logs)
	a.stop(t) // SIGTERM, and exit 0 within a minute
	j, err := p.c.Job(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != api.Errored || !strings.Contains(j.Reason, "drain timeout (1s) passed") {
		t.Errorf("job after the drain timeout: %s (%s)%s", j.Status, j.Reason, logs())
	}
}

// TestAgentKilledMidJob: kill -9 of the agent running a job; the server
// takes the lease back after its timeout and another agent runs the job
// to success as attempt 2, the only success recorded. The killed agent's
// next start removes what it left.
func TestAgentKilledMidJob(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	p := startPool(t, bin, "3s")
	ha, hb := agentHost(t), agentHost(t)
	a := p.startAgent(t, bin, ha, "doomed-agent")
	ds := map[string]*daemon{"doomed": a}
	logs := p.logs(ds)

	src := strings.ReplaceAll(strings.ReplaceAll(slowJob, "IMAGE", image), "sleep 4", "sleep 2")
	run, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/kill", Branch: "main", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	id := run.Jobs[0].ID
	first := p.waitJob(t, id, "running its step", func(j *api.Job) bool {
		return len(j.Steps) > 0 && j.Steps[0].Status == api.StepRunning
	}, logs)
	a.cmd.Process.Kill()
	<-a.done
	a.once.Do(func() {}) // killed on purpose: not an error at cleanup

	b := p.startAgent(t, bin, hb, "rescue-agent")
	ds["rescue"] = b
	j := p.waitJob(t, id, "finished", func(j *api.Job) bool { return api.Final(j.Status) }, logs)
	if j.Status != api.Succeeded || j.Attempt != first.Attempt+1 || j.Agent == first.Agent {
		t.Fatalf("job after the kill: %s attempt %d on %s (first attempt %d on %s)%s", j.Status, j.Attempt, j.Agent, first.Attempt, first.Agent, logs())
	}
	if l := jobLog(t, p.c, id); !strings.Contains(l, "slow-job-done") {
		t.Errorf("the rescued attempt's log lacks its last line:\n%s", l)
	}
	// Attempt 1 was never reported: only the rescue's success exists.
	r, _ := p.c.Run(ctx, run.ID)
	if r.Status != api.Succeeded || len(r.Jobs) != 1 {
		t.Errorf("run: %s with %d jobs", r.Status, len(r.Jobs))
	}

	// The killed agent's next start cleans up after it (the leak checks
	// of its host run when the test ends).
	a2 := p.startAgent(t, bin, ha, "doomed-agent")
	a2.stop(t)
	b.stop(t)
	ents, _ := os.ReadDir(filepath.Join(ha.state, "work", "sources"))
	if len(ents) != 0 {
		t.Errorf("job sources left after the restart's cleanup: %v", ents)
	}
}

// waitLog waits for the daemon to log want.
func waitLog(t *testing.T, d *daemon, want string, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(d.log(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in a minute%s", want, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentSecondSignal: a second SIGTERM during the drain cancels the
// running job at once; it is still reported, with why, and the agent
// exits 0.
func TestAgentSecondSignal(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	p, a, logs := startPoolAgent(t, bin, "10s", "impatient-agent")
	src := strings.ReplaceAll(strings.ReplaceAll(slowJob, "IMAGE", image), "sleep 4", "sleep 600")
	run, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/drain", Branch: "main", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	id := run.Jobs[0].ID
	p.waitJob(t, id, "running its step", func(j *api.Job) bool {
		return len(j.Steps) > 0 && j.Steps[0].Status == api.StepRunning
	}, logs)
	a.cmd.Process.Signal(syscall.SIGTERM)
	waitLog(t, a, "draining", logs)
	// The positive control: after the first signal the job still runs.
	if j, _ := p.c.Job(ctx, id); j.Status != api.Running {
		t.Fatalf("job %s after the first signal, want still running%s", j.Status, logs())
	}
	a.stop(t) // the second SIGTERM; exit 0 within a minute, not 600 s
	j, err := p.c.Job(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != api.Errored || !strings.Contains(j.Reason, "the agent was stopped") {
		t.Errorf("job after the second signal: %s (%s)%s", j.Status, j.Reason, logs())
	}
}

// TestAgentArtifactsStraightToS3: with --artifacts naming the server's S3
// bucket, the agent writes the artifacts there itself and the next job
// reads them from there; the server serves what the agent wrote.
func TestAgentArtifactsStraightToS3(t *testing.T) {
	image := busybox(t)
	cfg := miniotest.Config(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	t.Setenv("JOBRUN_S3_ACCESS_KEY", cfg.AccessKey)
	t.Setenv("JOBRUN_S3_SECRET_KEY", cfg.SecretKey)
	bucket := "s3://" + cfg.Bucket + "/art?endpoint=" + url.QueryEscape(cfg.Endpoint)
	// The agent reaches the bucket through a counting proxy, the server
	// directly: writes the proxy sees are the agent's own.
	proxy, viaProxy := miniotest.NewProxy(t, cfg)
	agentBucket := "s3://" + cfg.Bucket + "/art?endpoint=" + url.QueryEscape(viaProxy.Endpoint)

	srv, addr := startDaemon(t, bin, regexp.MustCompile(`server listening on (\S+)`),
		"--state-dir", t.TempDir(), "--log-level", "info", "server", "--listen", "127.0.0.1:0",
		"--admin-token", poolAdmin, "--registration-token", poolReg, "--artifacts", bucket)
	p := &pool{srv: srv, base: "http://" + addr, c: &api.Client{Base: "http://" + addr, Token: poolAdmin}}
	h := agentHost(t)
	a := p.startAgent(t, bin, h, "s3-agent", "--artifacts", agentBucket)
	logs := p.logs(map[string]*daemon{"agent": a})

	if err := p.c.SetSecret(ctx, "example.com/s3", "TOKEN", api.SetSecret{Value: "unused"}); err != nil {
		t.Fatal(err)
	}
	run, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/s3", Branch: "main",
		Source: strings.ReplaceAll(pipelineJobs, "IMAGE", image)})
	if err != nil {
		t.Fatal(err)
	}
	r := waitRunDone(t, p.c, run.ID, logs)
	if r.Status != api.Succeeded {
		t.Fatalf("run %d: %s (%s)%s", r.ID, r.Status, r.Reason, logs())
	}
	var build, ship api.Job
	for _, j := range r.Jobs {
		if j.Name == "build" {
			build = j
		} else {
			ship = j
		}
	}
	if l := jobLog(t, p.c, ship.ID); !strings.Contains(l, "built-by-build") {
		t.Errorf("ship's log lacks build's artifact:\n%s", l)
	}
	// Claim, file and manifest at least: written by the agent itself.
	if w := proxy.Writes(); w < 3 {
		t.Errorf("the agent wrote %d objects to the bucket itself, want the claim, out/app and the manifest", w)
	}
	// The objects are in the bucket under the server's naming, and the
	// server's manifest is the one the agent committed.
	var objs []string
	for _, o := range miniotest.Objects(t, cfg) {
		if strings.Contains(o, "/out/app") || strings.HasSuffix(o, ".manifest.json") {
			objs = append(objs, o)
		}
	}
	want := "art/example.com/s3/" + strconv.FormatInt(r.ID, 10) + "/build/1/out/app"
	if !slices.Contains(objs, want) {
		t.Errorf("bucket objects %v lack %s", objs, want)
	}
	var m struct{ Files []struct{ Path string } }
	if err := p.c.Manifest(ctx, api.Attempt{Job: build.ID, Attempt: build.Attempt}, &m); err != nil || len(m.Files) != 1 || m.Files[0].Path != "out/app" {
		t.Errorf("build's manifest through the server: %+v, %v", m, err)
	}
	a.stop(t)
}

// fencedJob pings the test's counter every second while it runs; the
// first attempt would run a minute, a retry ends soon.
const fencedJob = `
job "fenced" {
  image   = "IMAGE"
  agent   = ["e2e"]
  network = "host"
  step "work" {
    run = <<-EOT
      while true; do wget -q -O /dev/null "http://COUNTER/alive?attempt=$JOBRUN_ATTEMPT"; sleep 1; done &
      if [ "$JOBRUN_ATTEMPT" = 1 ]; then sleep 60; else sleep 2; fi
      echo attempt-$JOBRUN_ATTEMPT-done
    EOT
  }
}
`

// TestAgentSelfFencing: the server stops answering (SIGSTOP) while the
// agent runs a job; the agent kills the job before the lease expires, so
// when the server wakes and gives the job out again, the two attempts
// never run at once, as a counter outside jobrun sees them.
func TestAgentSelfFencing(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()

	var mu sync.Mutex
	var pings []ping
	counter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		pings = append(pings, ping{r.URL.Query().Get("attempt"), time.Now()})
		mu.Unlock()
	}))
	defer counter.Close()
	seen := func(attempt string) (first, last time.Time, n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range pings {
			if p.attempt == attempt {
				if n == 0 {
					first = p.at
				}
				last, n = p.at, n+1
			}
		}
		return first, last, n
	}

	p := startPool(t, bin, "4s")
	h := agentHost(t)
	cfg := filepath.Join(t.TempDir(), "config.hcl")
	if err := os.WriteFile(cfg, []byte("network {\n  allow_host = true\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Two slots: without fencing, the retry could run beside attempt 1.
	a := p.startAgent(t, bin, h, "fenced-agent", "--config", cfg, "--jobs", "2")
	logs := p.logs(map[string]*daemon{"agent": a})
	src := strings.NewReplacer("IMAGE", image, "COUNTER", strings.TrimPrefix(counter.URL, "http://")).Replace(fencedJob)
	run, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/fence", Branch: "main", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	id := run.Jobs[0].ID
	deadline := time.Now().Add(2 * time.Minute)
	for _, _, n := seen("1"); n < 2; _, _, n = seen("1") {
		if time.Now().After(deadline) {
			t.Fatalf("attempt 1 never pinged twice%s", logs())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A partition, as the agent sees it: the server takes connections
	// but answers nothing.
	stopped := time.Now()
	p.srv.cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(7 * time.Second) // past the lease timeout
	p.srv.cmd.Process.Signal(syscall.SIGCONT)

	j := p.waitJob(t, id, "finished", func(j *api.Job) bool { return api.Final(j.Status) }, logs)
	if j.Status != api.Succeeded || j.Attempt != 2 {
		t.Fatalf("job: %s attempt %d (%s), want attempt 2 succeeded%s", j.Status, j.Attempt, j.Reason, logs())
	}
	_, last1, _ := seen("1")
	first2, _, n2 := seen("2")
	if n2 == 0 {
		t.Fatalf("attempt 2 never pinged%s", logs())
	}
	if !last1.Before(first2) {
		t.Errorf("attempt 1 still ran at %v, after attempt 2 started at %v", last1.Sub(stopped), first2.Sub(stopped))
	}
	// Killed within the lease timeout of the last renewal, which came
	// before the server stopped.
	if last1.After(stopped.Add(4 * time.Second)) {
		t.Errorf("attempt 1 pinged %v after the server stopped answering: past the 4s lease", last1.Sub(stopped))
	}
	if l := jobLog(t, p.c, id); !strings.Contains(l, "attempt-2-done") {
		t.Errorf("log lacks attempt 2's end:\n%s", l)
	}
	if !strings.Contains(a.log(), "self-fencing") {
		t.Errorf("the agent does not log why it killed attempt 1%s", logs())
	}
}

type ping struct {
	attempt string
	at      time.Time
}

// TestAgentFlags: missing or bad flags are usage errors (exit 2), read
// from the environment as well; with them all given, the agent gets as
// far as the server, which refuses a wrong pool token (exit 1).
func TestAgentFlags(t *testing.T) {
	testenv.RequireRoot(t) // the positive control opens the host's stores
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"wrong or missing registration token"}`))
	}))
	defer refuse.Close()
	h := agentHost(t)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no server", nil, []string{"--token", "x"}, 2, "--server is required"},
		{"no token", nil, []string{"--server", refuse.URL}, 2, "--token is required"},
		{"no slots", nil, []string{"--server", refuse.URL, "--token", "x", "--jobs", "0"}, 2, "--jobs 0"},
		{"no slots from the environment", map[string]string{"JOBRUN_AGENT_JOBS": "0"}, []string{"--server", refuse.URL, "--token", "x"}, 2, "--jobs 0"},
		{"all from the environment", map[string]string{"JOBRUN_AGENT_SERVER": refuse.URL, "JOBRUN_AGENT_TOKEN": "wrong"}, nil, 1, "register with " + refuse.URL + ": POST /api/v1/agents: 401"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb strings.Builder
			code := run(context.Background(), append([]string{"--state-dir", h.state, "agent"}, tc.args...), &out, &errb)
			if code != tc.code || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errb.String(), tc.code, tc.want)
			}
		})
	}
}
