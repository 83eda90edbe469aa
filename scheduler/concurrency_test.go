package scheduler

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/pgtest"
)

func grouped(name, group string) Planned {
	return Planned{Name: name, Key: name, Concurrency: group}
}

// leaseAll leases for a until nothing more is given, returning the jobs.
func leaseAll(t *testing.T, s *SQL, a *agentRec, now time.Time) map[string]*leaseRec {
	t.Helper()
	got := map[string]*leaseRec{}
	for {
		l := lease(t, s, a, now)
		if l == nil {
			return got
		}
		got[l.Repo+"/"+l.Job] = l
	}
}

// TestConcurrencyGroupRunsOneAtATime queues jobs of one concurrency group
// in two runs of a repository: one runs at a time, the next when it ends.
// Jobs of another group, with no group, and of the same group name in
// another repository run beside it (the positive control).
func TestConcurrencyGroupRunsOneAtATime(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s := open()
		a := mustAgent(t, s, "a1", 20)
		mustRun(t, s, newRun("app", "main"), []Planned{grouped("db1", "database"), grouped("db2", "database"),
			grouped("cache", "redis"), job("plain")}, t0)
		mustRun(t, s, newRun("app", "topic"), []Planned{grouped("db3", "database")}, t0)
		mustRun(t, s, newRun("lib", "main"), []Planned{grouped("db", "database")}, t0)
		got := leaseAll(t, s, a, t0.Add(time.Second))
		db := 0
		for _, n := range []string{"app/db1", "app/db2", "app/db3"} {
			if got[n] != nil {
				db++
			}
		}
		if db != 1 || got["app/cache"] == nil || got["app/plain"] == nil || got["lib/db"] == nil || len(got) != 4 {
			t.Fatalf("leased %v; want one of app's database jobs, app/cache, app/plain and lib/db", keys(got))
		}
		// Each end lets the next job of the group run, one at a time.
		seen := map[string]bool{}
		for i := 0; i < 3; i++ {
			var cur *leaseRec
			for n, l := range got {
				if l.Repo == "app" && l.Job != "cache" && l.Job != "plain" && !seen[n] {
					cur = l
					seen[n] = true
				}
			}
			if cur == nil {
				t.Fatalf("round %d: no database job running; leased %v", i, keys(got))
			}
			n, err := s.Finish(context.Background(), a.ID, cur.Attempt, api.Result{Status: api.Succeeded}, t0.Add(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if i < 2 && n < 1 {
				t.Fatalf("round %d: finishing %s woke no lease request", i, cur.Job)
			}
			got = leaseAll(t, s, a, t0.Add(3*time.Second))
			if want := map[bool]int{true: 1, false: 0}[i < 2]; len(got) != want {
				t.Fatalf("round %d: leased %v after %s ended; want %d", i, keys(got), cur.Job, want)
			}
			for n, l := range got {
				if l.Repo != "app" || l.Job == "cache" || l.Job == "plain" || seen[n] {
					t.Fatalf("round %d: leased %s", i, n)
				}
			}
		}
	})
}

func keys(m map[string]*leaseRec) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestConcurrencyGroupTwoServersPostgres has two servers' stores on one
// PostgreSQL database lease at once, from many agents: of jobs sharing a
// concurrency group exactly one is handed out; jobs of distinct groups
// (the positive control) are all handed out.
func TestConcurrencyGroupTwoServersPostgres(t *testing.T) {
	url := pgtest.Database(t)
	var servers []*SQL
	for range 2 {
		s, err := OpenPostgres(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		servers = append(servers, s)
	}
	const n = 12
	var agents []*agentRec
	for i := range n {
		agents = append(agents, mustAgent(t, servers[0], fmt.Sprintf("a%d", i), 1))
	}
	// race leases once from every agent, half through each server, all
	// at once, and returns the jobs handed out.
	race := func(now time.Time) []string {
		var mu sync.Mutex
		var got []string
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, a := range agents {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				l, err := servers[i%2].Lease(context.Background(), a, params, now)
				if err != nil {
					t.Error(err)
					return
				}
				if l != nil {
					mu.Lock()
					got = append(got, l.Job)
					mu.Unlock()
				}
			}()
		}
		close(start)
		wg.Wait()
		return got
	}
	for round := range 5 {
		var plan []Planned
		for i := range n {
			plan = append(plan, grouped(fmt.Sprintf("db%d", i), "database"))
		}
		mustRun(t, servers[round%2], newRun("app", fmt.Sprintf("b%d", round)), plan, t0)
		if got := race(t0.Add(time.Second)); len(got) != 1 {
			t.Fatalf("round %d: %d jobs of one concurrency group leased at once: %v", round, len(got), got)
		}
		// Clear the round: every job of the run ends.
		if _, err := servers[0].db.Exec(`UPDATE jobs SET status = 'succeeded' WHERE status IN ('queued', 'running')`); err != nil {
			t.Fatal(err)
		}
	}
	// The positive control: distinct groups all run at once.
	var plan []Planned
	for i := range n {
		plan = append(plan, grouped(fmt.Sprintf("g%d", i), fmt.Sprintf("group-%d", i)))
	}
	mustRun(t, servers[0], newRun("app", "groups"), plan, t0)
	if got := race(t0.Add(time.Second)); len(got) != n {
		t.Fatalf("%d of %d jobs of distinct groups leased: %v", len(got), n, got)
	}
}

// TestPlanKeepsConcurrency checks that a job file's concurrency group
// reaches the queue (the pool ignored it once).
func TestPlanKeepsConcurrency(t *testing.T) {
	nr := api.NewRun{File: ".ci.hcl", Source: `
job "integration" {
  image       = "busybox"
  concurrency = "database"
  step "t" { run = "true" }
}
job "unit" {
  image = "busybox"
  step "t" { run = "true" }
}
`}
	p, diags := plan(nr)
	if diags != "" || len(p) != 2 {
		t.Fatalf("plan: %+v %s", p, diags)
	}
	groups := map[string]string{}
	for _, j := range p {
		groups[j.Name] = j.Concurrency
	}
	if groups["integration"] != "database" || groups["unit"] != "" {
		t.Fatalf("groups: %v; want integration in database, unit in none", groups)
	}
}

const databaseJobs = `
job "migrate" {
  image       = "busybox"
  concurrency = "database"
  step "m" { run = "true" }
}
job "integration" {
  image       = "busybox"
  concurrency = "database"
  step "i" { run = "true" }
}
job "unit" {
  image = "busybox"
  step "u" { run = "true" }
}
`

// TestConcurrencyGroupAcrossServers queues a job file's two jobs of the
// "database" group through one of two servers sharing PostgreSQL, and
// has agents of both servers lease: one database job runs, beside the
// job without a group (the positive control); the other database job is
// leased only when the first has ended.
func TestConcurrencyGroupAcrossServers(t *testing.T) {
	url := pgtest.Database(t)
	var bases []string
	for range 2 {
		st, err := OpenPostgres(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		base, _ := startServer(t, st, nil, true)
		bases = append(bases, base)
	}
	ctx := context.Background()
	run, err := admin(bases[0]).CreateRun(ctx, api.NewRun{Repo: "app", Branch: "main", File: ".ci.hcl", Source: databaseJobs})
	if err != nil {
		t.Fatal(err)
	}
	type agent struct {
		c  *api.Client
		id string
	}
	var agents []agent
	for i, base := range bases {
		c, reg := register(t, base, fmt.Sprintf("agent-%d", i), 2)
		agents = append(agents, agent{c, reg.ID})
	}
	type held struct {
		a agent
		l *api.Lease
	}
	leaseAll := func() []held {
		var out []held
		for _, a := range agents {
			for {
				l, err := a.c.Lease(ctx, a.id, 0)
				if err != nil {
					t.Fatal(err)
				}
				if l == nil {
					break
				}
				out = append(out, held{a, l})
			}
		}
		return out
	}
	got := leaseAll()
	names := map[string]held{}
	var jobNames []string
	for _, h := range got {
		names[h.l.Job] = h
		jobNames = append(jobNames, h.l.Job)
	}
	first, ok := names["migrate"]
	if !ok {
		first, ok = names["integration"]
	}
	if _, unit := names["unit"]; len(got) != 2 || !unit || !ok {
		t.Fatalf("run %d: leased %v; want unit and one database job", run.ID, jobNames)
	}
	if more := leaseAll(); len(more) != 0 {
		t.Fatalf("leased %s while %s of its group runs", more[0].l.Job, first.l.Job)
	}
	if err := first.a.c.Finish(ctx, first.l.Attempt, api.Result{Status: api.Succeeded}); err != nil {
		t.Fatal(err)
	}
	next := leaseAll()
	if len(next) != 1 || next[0].l.Job == first.l.Job || next[0].l.Job == "unit" {
		t.Fatalf("after %s ended: leased %d jobs; want the other database job", first.l.Job, len(next))
	}
}
