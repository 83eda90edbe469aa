package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/pgtest"
)

// startServerOn runs `jobrun server` with the test pool's tokens on
// database, with its own state dir.
func startServerOn(t *testing.T, bin, state, database string) *pool {
	t.Helper()
	srv, addr := startDaemon(t, bin, regexp.MustCompile(`server listening on (\S+)`),
		"--state-dir", state, "--log-level", "info", "server", "--listen", "127.0.0.1:0", "--database", database,
		"--admin-token", poolAdmin, "--registration-token", poolReg, "--lease-timeout", "10s")
	base := "http://" + addr
	return &pool{srv: srv, base: base, c: &api.Client{Base: base, Token: poolAdmin}}
}

// counter counts requests by their ?id=, outside jobrun.
type counter struct {
	mu     sync.Mutex
	counts map[string]int
	addr   string
}

func startCounter(t *testing.T) *counter {
	c := &counter{counts: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.counts[r.URL.Query().Get("id")]++
		c.mu.Unlock()
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	c.addr = ln.Addr().String()
	return c
}

// TestTwoServersFourAgentsRunEachJobOnce: two servers on one PostgreSQL
// database, four real agents (two slots each, every agent's slots spread
// over both servers' pools by registering with one and leasing from it),
// and 200 jobs posted to both servers. Each job's step calls an HTTP
// counter on the host (host networking, allowed by the agents' config):
// every job is counted exactly once, outside jobrun.
func TestTwoServersFourAgentsRunEachJobOnce(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	db := pgtest.Database(t)
	servers := []*pool{startServerOn(t, bin, t.TempDir(), db), startServerOn(t, bin, t.TempDir(), db)}
	cnt := startCounter(t)

	agents := map[string]*daemon{}
	for i := 0; i < 4; i++ {
		h := agentHost(t)
		if err := os.WriteFile(filepath.Join(h.state, "config.hcl"), []byte("network {\n  allow_host = true\n}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("agent%d", i)
		agents[name] = servers[i%2].startAgent(t, bin, h, name, "--jobs", "2")
	}
	logs := servers[0].logs(agents)

	const runs, perRun = 20, 10
	var src strings.Builder
	for i := 0; i < perRun; i++ {
		fmt.Fprintf(&src, `job "j%d" {
  image   = %q
  agent   = ["e2e"]
  network = "host"
  step "count" { run = "wget -q -O /dev/null \"http://%s/?id=$JOBRUN_RUN/$JOBRUN_JOB\"" }
}
`, i, image, cnt.addr)
	}
	var ids []int64
	for i := 0; i < runs; i++ {
		r, err := servers[i%2].c.CreateRun(ctx, api.NewRun{Repo: "example.com/once", Branch: fmt.Sprintf("b%d", i), Source: src.String()})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	for i, id := range ids {
		r := waitRunDone(t, servers[(i+1)%2].c, id, logs)
		if r.Status != api.Succeeded {
			for _, j := range r.Jobs {
				if j.Status != api.Succeeded {
					t.Logf("run %d job %s: %s (%s)\n%s", id, j.Name, j.Status, j.Reason, jobLog(t, servers[0].c, j.ID))
				}
			}
			t.Fatalf("run %d: %s%s", id, r.Status, logs())
		}
		for _, j := range r.Jobs {
			if j.Attempt != 1 {
				t.Errorf("run %d job %s took %d attempts", id, j.Name, j.Attempt)
			}
		}
	}
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	if len(cnt.counts) != runs*perRun {
		t.Errorf("the counter saw %d distinct jobs, want %d", len(cnt.counts), runs*perRun)
	}
	for id, n := range cnt.counts {
		if n != 1 {
			t.Errorf("job %s ran %d times", id, n)
		}
	}
	// Both servers handed out work.
	for i, s := range servers {
		if !strings.Contains(s.srv.log(), "job finished") {
			t.Errorf("server %d finished no job", i)
		}
	}
}

// TestQueueSurvivesServerRestart: a run queued on a server with no agent
// is still there after the server restarts (SQLite in its state dir, and
// PostgreSQL), and an agent that comes afterwards runs it.
func TestQueueSurvivesServerRestart(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			state, database := t.TempDir(), "sqlite"
			if kind == "postgres" {
				database = pgtest.Database(t)
			}
			p := startServerOn(t, bin, state, database)
			run, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/restart", Branch: "main",
				Source: strings.NewReplacer("sleep 4; ", "", "IMAGE", image).Replace(slowJob), Trigger: "api"})
			if err != nil {
				t.Fatal(err)
			}
			p.srv.stop(t)

			p = startServerOn(t, bin, state, database)
			a := p.startAgent(t, bin, agentHost(t), "after-restart")
			r := waitRunDone(t, p.c, run.ID, p.logs(map[string]*daemon{"agent": a}))
			if r.Status != api.Succeeded || !strings.Contains(jobLog(t, p.c, r.Jobs[0].ID), "slow-job-done") {
				t.Fatalf("run after the restart: %s (%s)", r.Status, r.Reason)
			}
			a.stop(t)
		})
	}
}
