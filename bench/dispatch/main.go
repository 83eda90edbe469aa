// Command dispatch-bench measures the scheduler's dispatch: how long a job
// waits from its run being posted to an agent holding its lease, on an
// idle pool, and how many jobs a second a busy pool gets through. The
// agents are real HTTP clients (one goroutine per slot) that finish every
// job as soon as they hold it, so what is measured is the scheduler alone.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/bench/internal/result"
	"github.com/jobrun/jobrun/scheduler"
)

const (
	regToken   = "bench-registration"
	adminToken = "bench-admin"
)

func main() {
	pg := flag.String("postgres", "", "a postgres:// URL: run on PostgreSQL too, after SQLite")
	agents := flag.Int("agents", 50, "simulated agents, one slot each")
	idle := flag.Int("idle", 200, "single-job runs posted one at a time on the idle pool")
	runs := flag.Int("runs", 20, "runs posted at once for the throughput test")
	jobs := flag.Int("jobs", 50, "jobs per run for the throughput test")
	out := flag.String("json", "", "write the figures to this file (package bench/internal/result)")
	flag.Parse()
	res := result.New("dispatch", "Scheduler dispatch with simulated agents (real HTTP clients on loopback, one slot each): latency from a run posted to its lease on an idle pool, and jobs leased per second on a busy one; SQLite against PostgreSQL")
	res.Param("agents", *agents)
	res.Param("idle", *idle)
	res.Param("busy jobs", *runs**jobs)
	dbs := []struct{ name, url string }{{"jobrun sqlite", "sqlite"}}
	if *pg != "" {
		dbs = append(dbs, struct{ name, url string }{"jobrun postgres", *pg})
	}
	for _, db := range dbs {
		fmt.Println("--", db.name)
		lat, rate, err := bench(db.url, *agents, *idle, *runs, *jobs)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dispatch-bench: %s: %v\n", db.name, err)
			os.Exit(1)
		}
		res.Durations("dispatch latency, idle pool", db.name, lat)
		res.Add(result.Metric{Metric: "throughput, busy pool", Tool: db.name, Unit: "jobs/s", Samples: []float64{rate}})
	}
	res.Compare("dispatch latency, idle pool", "jobrun sqlite")
	res.Compare("throughput, busy pool", "jobrun sqlite")
	if *out != "" {
		if err := res.Write(*out); err != nil {
			fmt.Fprintln(os.Stderr, "dispatch-bench:", err)
			os.Exit(1)
		}
	}
}

// bench runs the idle and busy pool on database and returns the idle
// pool's latencies and the busy pool's jobs per second.
func bench(database string, agents, idle, runs, perRun int) ([]time.Duration, float64, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "jobrun-bench-dispatch-")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	base, err := startServer(ctx, database, dir)
	if err != nil {
		return nil, 0, err
	}
	leased := make(chan time.Time, 1024)
	var wg sync.WaitGroup
	for i := 0; i < agents; i++ {
		c := &api.Client{Base: base, HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
		reg, err := c.Register(ctx, regToken, api.RegisterRequest{Name: fmt.Sprintf("agent%02d", i), Slots: 1})
		if err != nil {
			return nil, 0, err
		}
		c.Token = reg.Token
		wg.Add(1)
		go func() {
			defer wg.Done()
			agent(ctx, c, reg.ID, leased)
		}()
	}
	ad := &api.Client{Base: base, Token: adminToken}

	// Idle pool: one job at a time, each on its own branch, so no
	// affinity wait is in the figure.
	var lat []time.Duration
	for i := 0; i < idle; i++ {
		t0 := time.Now()
		if _, err := ad.CreateRun(ctx, api.NewRun{Repo: "bench", Branch: fmt.Sprintf("idle-%d", i), Source: source(1)}); err != nil {
			return nil, 0, err
		}
		select {
		case t := <-leased:
			lat = append(lat, t.Sub(t0))
		case <-time.After(30 * time.Second):
			return nil, 0, fmt.Errorf("job %d was not leased in 30s", i)
		}
		time.Sleep(5 * time.Millisecond) // let the agent finish and poll again
	}
	slices.Sort(lat)
	fmt.Printf("idle pool (%d agents, %d jobs one at a time): dispatch p50 %.1f ms, p99 %.1f ms\n",
		agents, idle, ms(pct(lat, 50)), ms(pct(lat, 99)))

	// Busy pool: every run posted at once, the agents drain the queue.
	total := runs * perRun
	t0 := time.Now()
	var posted sync.WaitGroup
	errs := make(chan error, runs)
	for i := 0; i < runs; i++ {
		posted.Add(1)
		go func() {
			defer posted.Done()
			_, err := ad.CreateRun(ctx, api.NewRun{Repo: "bench", Branch: fmt.Sprintf("busy-%d", i), Source: source(perRun)})
			if err != nil {
				errs <- err
			}
		}()
	}
	posted.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, 0, err
	}
	for n := 0; n < total; n++ {
		select {
		case <-leased:
		case <-time.After(60 * time.Second):
			return nil, 0, fmt.Errorf("only %d of %d jobs leased", n, total)
		}
	}
	el := time.Since(t0)
	fmt.Printf("busy pool (%d agents, %d jobs in %d runs posted at once): %.0f jobs/s (%.2f s)\n",
		agents, total, runs, float64(total)/el.Seconds(), el.Seconds())
	cancel()
	wg.Wait()
	return lat, float64(total) / el.Seconds(), nil
}

// agent leases and at once finishes jobs until ctx ends, reporting when
// it got each lease.
func agent(ctx context.Context, c *api.Client, id string, leased chan<- time.Time) {
	for ctx.Err() == nil {
		l, err := c.Lease(ctx, id, 30*time.Second)
		if err != nil || l == nil {
			continue
		}
		leased <- time.Now()
		if err := c.Finish(ctx, l.Attempt, api.Result{Status: api.Succeeded}); err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "finish:", err)
		}
	}
}

func startServer(ctx context.Context, database, dir string) (string, error) {
	st, err := scheduler.Open(ctx, database, dir)
	if err != nil {
		return "", err
	}
	store, err := artifacts.NewLocal(filepath.Join(dir, "artifacts"))
	if err != nil {
		return "", err
	}
	srv := scheduler.New(scheduler.Config{Store: st, Artifacts: store, TempDir: dir,
		RegistrationToken: regToken, AdminToken: adminToken})
	go srv.Run(ctx)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	hs := &http.Server{Handler: srv.Handler(), BaseContext: func(net.Listener) context.Context { return ctx }}
	go hs.Serve(ln)
	go func() { <-ctx.Done(); hs.Close(); st.Close() }()
	return "http://" + ln.Addr().String(), nil
}

func source(jobs int) string {
	var b strings.Builder
	for i := 0; i < jobs; i++ {
		fmt.Fprintf(&b, "job \"j%d\" {\n  image = \"busybox\"\n  step \"s\" { run = \"true\" }\n}\n", i)
	}
	return b.String()
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[(len(d)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
