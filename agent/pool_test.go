package agent

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/api"
)

const validJobFile = `
job "build" {
  image = "busybox"
  step "compile" { run = "true" }
}
`

// startPool runs a pool agent against f; the returned channel yields
// Run's error when it returns.
func startPool(t *testing.T, f *fakeScheduler, ctx context.Context) (*Pool, <-chan error) {
	t.Helper()
	p, _ := testPool(t, f)
	return p, runPool(t, p, ctx)
}

// testPool is a pool agent of two slots for f, and its log.
func testPool(t *testing.T, f *fakeScheduler) (*Pool, *agentLog) {
	log := &agentLog{t: t}
	return &Pool{
		Client:    &api.Client{Base: f.srv.URL},
		PoolToken: f.poolToken,
		Runner:    &Runner{WorkDir: t.TempDir()},
		Name:      "test-agent", Labels: []string{"linux"}, Slots: 2,
		LeaseWait: time.Second,
		Log:       hclog.New(&hclog.LoggerOptions{Name: "agent", Level: hclog.Debug, Output: log}),
	}, log
}

// runPool runs p; the returned channel yields Run's error when it
// returns. The test's end drains p and waits for Run.
func runPool(t *testing.T, p *Pool, ctx context.Context) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		done <- p.Run(ctx)
		close(finished)
	}()
	t.Cleanup(func() {
		p.Drain()
		select {
		case <-finished:
		case <-time.After(time.Minute):
			t.Error("pool still running a minute after Drain")
		}
		assertNoSources(t, p)
	})
	return done
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// agentLog gives an agent's log to t.Log and keeps it, for a test to wait
// for a line.
type agentLog struct {
	t  *testing.T
	mu sync.Mutex
	b  strings.Builder
}

func (l *agentLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

// waitFor waits for a line of the log holding want.
func (l *agentLog) waitFor(want string) {
	l.t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		l.mu.Lock()
		found := strings.Contains(l.b.String(), want)
		l.mu.Unlock()
		if found {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("the agent did not log %q within a minute", want)
		}
	}
}

func assertNoSources(t *testing.T, p *Pool) {
	t.Helper()
	ents, _ := os.ReadDir(p.sourcesDir())
	for _, e := range ents {
		t.Errorf("left behind in the sources dir: %s", e.Name())
	}
}

// hangingGit is a git HTTP server that never answers: a job cloning from
// it stays "running" until it is killed, with no container needed.
func hangingGit(t *testing.T) (url string, asked <-chan struct{}) {
	ch := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case ch <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/repo.git", ch
}

func waitAsked(t *testing.T, asked <-chan struct{}) {
	t.Helper()
	select {
	case <-asked:
	case <-time.After(time.Minute):
		t.Fatal("the job never started cloning")
	}
}

func (f *fakeScheduler) add(l *api.Lease) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leases = append(f.leases, l)
}

// TestPoolBadJobFile: a job file that does not parse, or lacks the leased
// job, ends the attempt as "error" with the diagnostics, in the result and
// in the log; Drain then deregisters and Run returns.
func TestPoolBadJobFile(t *testing.T) {
	f := newFakeScheduler(t)
	bad := &api.Lease{Attempt: api.Attempt{Job: 1, Attempt: 1}, Run: "r1", Repo: "example.com/app",
		File: ".ci.hcl", Source: "job \"build\" {\n  image = \n}\n", Job: "build"}
	missing := &api.Lease{Attempt: api.Attempt{Job: 2, Attempt: 1}, Run: "r1", Repo: "example.com/app",
		File: ".ci.hcl", Source: validJobFile, Job: "deploy"}
	f.add(bad)
	f.add(missing)
	p, done := startPool(t, f, context.Background())
	f.waitFor("register test-agent slots=2")
	for _, a := range []api.Attempt{bad.Attempt, missing.Attempt} {
		f.waitFor("finish " + a.String() + " error")
	}
	r, _ := f.result(bad.Attempt)
	if !strings.Contains(r.Reason, ".ci.hcl:2") || !strings.Contains(r.Reason, "does not parse") {
		t.Errorf("reason %q lacks the diagnostic's file:line", r.Reason)
	}
	if !strings.Contains(string(f.log(bad.Attempt)), `.ci.hcl:2`) {
		t.Errorf("log lacks the diagnostics: %s", f.log(bad.Attempt))
	}
	r, _ = f.result(missing.Attempt)
	if r.Reason != `job "deploy" is not in .ci.hcl` {
		t.Errorf("reason %q", r.Reason)
	}
	p.Drain()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after Drain with no jobs running")
	}
	f.mu.Lock()
	dereg := f.deregistered
	f.mu.Unlock()
	if !dereg {
		t.Error("the agent did not deregister")
	}
}

// TestPoolKillFromHeartbeat: an attempt the heartbeat reply names is
// killed and reported cancelled; one the reply does not name (the
// positive control, on the other slot) goes on.
func TestPoolKillFromHeartbeat(t *testing.T) {
	f := newFakeScheduler(t)
	f.heartbeat = 200 * time.Millisecond
	url, asked := hangingGit(t)
	kill := &api.Lease{Attempt: api.Attempt{Job: 3, Attempt: 1}, Run: "r1", Repo: "example.com/app",
		CloneURL: url, Commit: strings.Repeat("a", 40), File: ".ci.hcl", Source: validJobFile, Job: "build"}
	keep := &api.Lease{Attempt: api.Attempt{Job: 4, Attempt: 1}, Run: "r1", Repo: "example.com/app",
		CloneURL: url, Commit: strings.Repeat("b", 40), File: ".ci.hcl", Source: validJobFile, Job: "build"}
	f.add(kill)
	f.add(keep)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	startPool(t, f, ctx)
	waitAsked(t, asked)
	waitAsked(t, asked)
	f.mu.Lock()
	f.kill = []api.Attempt{kill.Attempt}
	f.mu.Unlock()
	f.waitFor("finish " + kill.Attempt.String() + " cancelled")
	r, _ := f.result(kill.Attempt)
	if !strings.Contains(r.Reason, "killed at the scheduler's request") {
		t.Errorf("reason %q", r.Reason)
	}
	if _, ok := f.result(keep.Attempt); ok {
		t.Fatal("the attempt the scheduler did not name was killed too")
	}
	if !strings.Contains(string(f.log(kill.Attempt)), "clone "+url) {
		t.Errorf("log lacks the clone notice: %s", f.log(kill.Attempt))
	}
	cancel(errors.New("test over"))
	f.waitFor("finish " + keep.Attempt.String() + " error")
}

// TestPoolSelfFencing: an agent whose heartbeats fail kills its job before
// the lease expires on the scheduler, says why in the job's log, and
// reports no result, so the scheduler runs the job again when the lease
// runs out.
func TestPoolSelfFencing(t *testing.T) {
	f := newFakeScheduler(t)
	f.leaseTimeout, f.heartbeat = 3*time.Second, time.Second
	url, asked := hangingGit(t)
	l := &api.Lease{Attempt: api.Attempt{Job: 5, Attempt: 1}, Run: "r1", Repo: "example.com/app",
		CloneURL: url, Commit: strings.Repeat("c", 40), File: ".ci.hcl", Source: validJobFile, Job: "build"}
	f.add(l)
	fails := make([]string, 100)
	for i := range fails {
		fails[i] = "500"
	}
	f.injectNext("heartbeat", fails...)
	p, done := startPool(t, f, context.Background())
	waitAsked(t, asked)
	var notice *api.LogLine
	deadline := time.Now().Add(time.Minute)
	for notice == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no fencing notice in the log within a minute: %s", f.log(l.Attempt))
		}
		time.Sleep(50 * time.Millisecond)
		for _, line := range logLines(t, completeLines(f.log(l.Attempt))) {
			if line.Kind == "notice" && strings.HasPrefix(line.Text, "lease not renewed") {
				notice = &line
			}
		}
	}
	f.mu.Lock()
	leased := f.leasedAt[l.Attempt]
	f.mu.Unlock()
	if notice.Time.After(leased.Add(f.leaseTimeout)) {
		t.Errorf("job killed %v after it was leased: not before the lease (%v) expired", notice.Time.Sub(leased), f.leaseTimeout)
	}
	p.Drain()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after Drain")
	}
	if r, ok := f.result(l.Attempt); ok {
		t.Errorf("a fenced attempt was reported: %+v", r)
	}
}

// completeLines cuts a log after its last newline: a chunk may end mid-line.
func completeLines(b []byte) []byte {
	return b[:bytes.LastIndexByte(b, '\n')+1]
}

// TestPoolSelfFencingControl is the positive control: with heartbeats
// going through, the same job outlives several lease timeouts.
func TestPoolSelfFencingControl(t *testing.T) {
	f := newFakeScheduler(t)
	f.leaseTimeout, f.heartbeat = 2*time.Second, 250*time.Millisecond
	url, asked := hangingGit(t)
	l := &api.Lease{Attempt: api.Attempt{Job: 6, Attempt: 1}, Run: "r1", Repo: "example.com/app",
		CloneURL: url, Commit: strings.Repeat("d", 40), File: ".ci.hcl", Source: validJobFile, Job: "build"}
	f.add(l)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	startPool(t, f, ctx)
	waitAsked(t, asked)
	time.Sleep(5 * time.Second) // two and a half lease timeouts
	if r, ok := f.result(l.Attempt); ok {
		t.Fatalf("job ended with heartbeats going through: %+v", r)
	}
	cancel(errors.New("cancelled: test over"))
	f.waitFor("finish " + l.Attempt.String() + " error")
	if r, _ := f.result(l.Attempt); r.Reason != "cancelled: test over" {
		t.Errorf("reason %q, want the cancel cause", r.Reason)
	}
}

// TestPoolDrain: once a drain has stopped leasing no job is leased, the
// running one goes on, and Run returns only once it has been reported.
func TestPoolDrain(t *testing.T) {
	f := newFakeScheduler(t)
	url, asked := hangingGit(t)
	running := &api.Lease{Attempt: api.Attempt{Job: 7, Attempt: 1}, Run: "r1", Repo: "example.com/app",
		CloneURL: url, Commit: strings.Repeat("e", 40), File: ".ci.hcl", Source: validJobFile, Job: "build"}
	f.add(running)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	p, log := testPool(t, f)
	done := runPool(t, p, ctx)
	waitAsked(t, asked)
	p.Drain()
	// The other slot's lease request, if one was open, has ended: a job
	// queued now is for other agents.
	log.waitFor(leasingStopped)
	later := &api.Lease{Attempt: api.Attempt{Job: 8, Attempt: 1}, Run: "r1", Repo: "example.com/app",
		File: ".ci.hcl", Source: "not a job file", Job: "build"}
	f.add(later)
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) with a job still running", err)
	case <-time.After(2 * time.Second):
	}
	cancel(errors.New("cancelled: drain timeout"))
	f.waitFor("finish " + running.Attempt.String() + " error")
	f.waitFor("deregister")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return")
	}
	f.mu.Lock()
	left := len(f.leases)
	f.mu.Unlock()
	if left != 1 {
		t.Error("a job was leased after the drain stopped leasing")
	}
}

// TestPoolGone: a 410 on the log kills the job and its result is not
// reported.
func TestPoolGone(t *testing.T) {
	f := newFakeScheduler(t)
	url, _ := hangingGit(t)
	l := &api.Lease{Attempt: api.Attempt{Job: 9, Attempt: 1}, Run: "r1", Repo: "example.com/app",
		CloneURL: url, Commit: strings.Repeat("f", 40), File: ".ci.hcl", Source: validJobFile, Job: "build"}
	f.add(l)
	f.injectNext("log", "410")
	p, done := startPool(t, f, context.Background())
	f.waitFor("leased " + l.Attempt.String())
	p.Drain()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the gone job was not killed")
	}
	if r, ok := f.result(l.Attempt); ok {
		t.Errorf("a gone attempt was reported: %+v", r)
	}
}

// TestPoolRegisterRefused: a wrong pool token is an error, not a retry
// loop.
func TestPoolRegisterRefused(t *testing.T) {
	f := newFakeScheduler(t)
	p := &Pool{Client: &api.Client{Base: f.srv.URL}, PoolToken: "wrong", Runner: &Runner{WorkDir: t.TempDir()}, Name: "x", Slots: 1}
	err := p.Run(context.Background())
	if err == nil || !api.IsStatus(err, 401) || !strings.Contains(err.Error(), "register with "+f.srv.URL) {
		t.Fatalf("err = %v, want the 401 naming the server", err)
	}
}

func TestCleanupRemovesDeadSources(t *testing.T) {
	p := &Pool{Runner: &Runner{WorkDir: t.TempDir()}}
	dead := filepath.Join(p.sourcesDir(), "1-1-dead")
	writeFiles(t, dead, map[string]string{".git/HEAD": "ref: refs/heads/main\n"})
	if err := os.WriteFile(dead+".lock", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A live one: its lock is held, as by a running agent.
	live, err := p.source(context.Background(), &api.Lease{Attempt: api.Attempt{Job: 2, Attempt: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("dead source still there: %v", err)
	}
	if _, err := os.Stat(live.dir); err != nil {
		t.Errorf("live source removed: %v", err)
	}
	if err := live.remove(); err != nil {
		t.Fatal(err)
	}
	assertNoSources(t, p)
}

// TestPoolDrainWhileRegistering: with the scheduler unreachable the agent
// retries registering, and a drain then ends Run with no error.
func TestPoolDrainWhileRegistering(t *testing.T) {
	f := newFakeScheduler(t)
	f.srv.Close() // nothing listens there now
	p := &Pool{Client: &api.Client{Base: f.srv.URL}, PoolToken: f.poolToken, Runner: &Runner{WorkDir: t.TempDir()},
		Name: "x", Slots: 1, Log: hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Debug})}
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Run gave up on an unreachable scheduler: %v", err)
	case <-time.After(time.Second):
	}
	p.Drain()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after a drain while registering: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run still registering a minute after Drain")
	}
}
