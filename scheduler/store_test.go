package scheduler

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/pgtest"
)

// eachStore runs f against a SQLite store and a PostgreSQL store. open
// opens the test's database (again, for restarts); stores are closed at
// the end.
func eachStore(t *testing.T, f func(t *testing.T, open func() *SQL)) {
	kinds := map[string]func(t *testing.T) func(ctx context.Context) (*SQL, error){
		"sqlite": func(t *testing.T) func(ctx context.Context) (*SQL, error) {
			p := filepath.Join(t.TempDir(), "jobrun.db")
			return func(ctx context.Context) (*SQL, error) { return OpenSQLite(ctx, p) }
		},
		"postgres": func(t *testing.T) func(ctx context.Context) (*SQL, error) {
			url := pgtest.Database(t)
			return func(ctx context.Context) (*SQL, error) { return OpenPostgres(ctx, url) }
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			opener := kinds[name](t)
			f(t, func() *SQL {
				s, err := opener(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			})
		})
	}
}

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

var params = LeaseParams{Timeout: 30 * time.Second, AffinityWait: 2 * time.Second}

func newRun(repo, branch string) api.NewRun {
	return api.NewRun{Repo: repo, Branch: branch, File: ".ci.hcl", Source: "# test", Trigger: "api"}
}

func job(name string, labels ...string) Planned {
	return Planned{Name: name, Key: name, Labels: labels}
}

func mustRun(t *testing.T, s *SQL, nr api.NewRun, plan []Planned, now time.Time) int64 {
	t.Helper()
	id, err := s.CreateRun(context.Background(), nr, plan, RunOptions{MaxAttempts: 3}, now)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustAgent(t *testing.T, s *SQL, id string, slots int, labels ...string) *agentRec {
	t.Helper()
	a := &agentRec{ID: id, Name: id, Labels: labels, Slots: slots, Repos: []string{"**"}}
	if err := s.RegisterAgent(context.Background(), *a, hashToken("token-"+id), t0); err != nil {
		t.Fatal(err)
	}
	return a
}

func lease(t *testing.T, s *SQL, a *agentRec, now time.Time) *leaseRec {
	t.Helper()
	l, err := s.Lease(context.Background(), a, params, now)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func finish(t *testing.T, s *SQL, a *agentRec, l *leaseRec, status string, now time.Time) {
	t.Helper()
	if _, err := s.Finish(context.Background(), a.ID, l.Attempt, api.Result{Status: status}, now); err != nil {
		t.Fatal(err)
	}
}

func jobStatus(t *testing.T, s *SQL, id int64) (string, string) {
	t.Helper()
	j, err := s.Job(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j.Status, j.Reason
}

func TestQueueSurvivesRestart(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s := open()
		mustAgent(t, s, "a1", 1)
		mustRun(t, s, newRun("app", "main"), []Planned{job("build")}, t0)
		s.Close()

		s = open()
		a, err := s.AgentByToken(context.Background(), hashToken("token-a1"))
		if err != nil {
			t.Fatalf("agent after restart: %v", err)
		}
		l := lease(t, s, a, t0.Add(time.Second))
		if l == nil || l.Job != "build" || l.Attempt.Attempt != 1 {
			t.Fatalf("lease after restart = %+v, want build attempt 1", l)
		}
	})
}

func TestLabelsAndCapacity(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s := open()
		plain := mustAgent(t, s, "plain", 1, "linux")
		gpu := mustAgent(t, s, "gpu", 1, "gpu", "linux")
		mustRun(t, s, newRun("app", "main"), []Planned{job("train", "gpu", "linux"), job("lint", "linux"), job("test")}, t0)

		// The plain agent passes over the gpu job for the next it can run.
		l := lease(t, s, plain, t0)
		if l == nil || l.Job != "lint" {
			t.Fatalf("plain agent got %+v, want lint", l)
		}
		if l := lease(t, s, plain, t0); l != nil {
			t.Fatalf("plain agent with its one slot busy got %s", l.Job)
		}
		// Positive control: the gpu agent gets the gpu job.
		if l := lease(t, s, gpu, t0); l == nil || l.Job != "train" {
			t.Fatalf("gpu agent got %+v, want train", l)
		}
		finish(t, s, plain, l, api.Succeeded, t0)
		if l := lease(t, s, plain, t0); l == nil || l.Job != "test" {
			t.Fatalf("plain agent with a free slot got %+v, want test", l)
		}
	})
}

func TestBranchAffinity(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s := open()
		a := mustAgent(t, s, "a", 1)
		b := mustAgent(t, s, "b", 1)
		mustRun(t, s, newRun("app", "main"), []Planned{job("build")}, t0)
		l := lease(t, s, a, t0)
		finish(t, s, a, l, api.Succeeded, t0)

		now := t0.Add(time.Second)
		mustRun(t, s, newRun("app", "main"), []Planned{job("build")}, now)
		if l := lease(t, s, b, now.Add(params.AffinityWait/2)); l != nil {
			t.Fatalf("agent b got the job of a's branch while a was online and the wait not over")
		}
		// Another branch is not held back.
		mustRun(t, s, newRun("app", "feature"), []Planned{job("build")}, now)
		if l := lease(t, s, b, now); l == nil || l.Branch != "feature" {
			t.Fatalf("agent b got %+v, want the feature branch's job", l)
		}
		if l := lease(t, s, a, now); l == nil || l.Branch != "main" {
			t.Fatalf("agent a got %+v, want its main branch job back", l)
		}

		// Once the wait is over, any agent takes it.
		mustRun(t, s, newRun("app", "main2"), []Planned{job("x")}, now)
		c := mustAgent(t, s, "c", 1)
		l = lease(t, s, c, now)
		finish(t, s, c, l, api.Succeeded, now)
		mustRun(t, s, newRun("app", "main2"), []Planned{job("x")}, now)
		d := mustAgent(t, s, "d", 1)
		if l := lease(t, s, d, now.Add(params.AffinityWait/2)); l != nil {
			t.Fatalf("d got %s before the affinity wait", l.Job)
		}
		if l := lease(t, s, d, now.Add(params.AffinityWait)); l == nil || l.Branch != "main2" {
			t.Fatalf("d after the affinity wait got %+v, want main2's job", l)
		}
	})
}

func TestAffinityIgnoresOfflineAgent(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s := open()
		a := mustAgent(t, s, "a", 1)
		b := mustAgent(t, s, "b", 1)
		mustRun(t, s, newRun("app", "main"), []Planned{job("build")}, t0)
		finish(t, s, a, lease(t, s, a, t0), api.Succeeded, t0)
		// a has not been seen for longer than the lease timeout.
		now := t0.Add(params.Timeout + time.Second)
		mustRun(t, s, newRun("app", "main"), []Planned{job("build")}, now)
		if l := lease(t, s, b, now); l == nil {
			t.Fatal("a job waited for an agent that is offline")
		}
	})
}

func TestLeaseExpiryRequeuesThenFails(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s := open()
		ctx := context.Background()
		a := mustAgent(t, s, "a", 1)
		b := mustAgent(t, s, "b", 1)
		run := mustRun(t, s, newRun("app", "main"), []Planned{job("build")}, t0)
		l1 := lease(t, s, a, t0)

		// Heartbeats keep it.
		now := t0.Add(params.Timeout - time.Second)
		if kill, err := s.Heartbeat(ctx, a.ID, []api.Attempt{l1.Attempt}, params.Timeout, now); err != nil || len(kill) != 0 {
			t.Fatalf("heartbeat: kill %v, err %v", kill, err)
		}
		if n, _ := s.Expire(ctx, now.Add(params.Timeout-time.Second)); n != 0 {
			t.Fatal("a renewed lease expired")
		}
		// Silence loses it.
		now = now.Add(params.Timeout + time.Second)
		if n, err := s.Expire(ctx, now); err != nil || n != 1 {
			t.Fatalf("expire = %d, %v; want 1 requeued", n, err)
		}
		if st, why := jobStatus(t, s, l1.Attempt.Job); st != api.Queued || !strings.Contains(why, "stopped renewing") {
			t.Fatalf("after expiry: %s (%s)", st, why)
		}
		l2 := lease(t, s, b, now)
		if l2 == nil || l2.Attempt.Attempt != 2 {
			t.Fatalf("second lease = %+v, want attempt 2", l2)
		}
		// The old agent comes back: it is told to kill its attempt, and
		// nothing it reports is taken.
		kill, err := s.Heartbeat(ctx, a.ID, []api.Attempt{l1.Attempt}, params.Timeout, now)
		if err != nil || len(kill) != 1 || kill[0] != l1.Attempt {
			t.Fatalf("returning agent: kill %v, err %v; want its old attempt", kill, err)
		}
		if _, err := s.Finish(ctx, a.ID, l1.Attempt, api.Result{Status: api.Succeeded}, now); err != errGone {
			t.Fatalf("finish by the old agent = %v, want errGone", err)
		}
		if _, err := s.AppendLog(ctx, a.ID, l1.Attempt, 0, []byte("x"), DefaultLimits.logQuota()); err != errGone {
			t.Fatalf("log by the old agent = %v, want errGone", err)
		}
		// Attempts run out.
		for i := 0; i < 2; i++ {
			now = now.Add(params.Timeout + time.Second)
			s.Expire(ctx, now)
			lease(t, s, b, now)
		}
		now = now.Add(params.Timeout + time.Second)
		s.Expire(ctx, now)
		if st, why := jobStatus(t, s, l1.Attempt.Job); st != api.Failed || !strings.Contains(why, "gave up after 3 attempts") {
			t.Fatalf("after 3 lost leases: %s (%s)", st, why)
		}
		r, _ := s.Run(ctx, run)
		if r.Status != api.Failed {
			t.Fatalf("run status %s, want failed", r.Status)
		}
	})
}

func TestLogChunks(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s := open()
		ctx := context.Background()
		a := mustAgent(t, s, "a", 1)
		mustRun(t, s, newRun("app", "main"), []Planned{job("build")}, t0)
		l := lease(t, s, a, t0)
		put := func(off int64, data string) (int64, error) {
			return s.AppendLog(ctx, a.ID, l.Attempt, off, []byte(data), DefaultLimits.logQuota())
		}
		if n, err := put(0, "hello "); err != nil || n != 6 {
			t.Fatalf("first chunk: %d, %v", n, err)
		}
		// A retry of the same chunk (its reply was lost) stores nothing.
		if n, err := put(0, "hello "); err != nil || n != 6 {
			t.Fatalf("retried chunk: %d, %v", n, err)
		}
		// A chunk that overlaps is taken from the end on.
		if n, err := put(3, "lo world\n"); err != nil || n != 12 {
			t.Fatalf("overlapping chunk: %d, %v", n, err)
		}
		// A gap is refused with the size to resend from.
		if n, err := put(20, "lost?"); err != errConflict || n != 12 {
			t.Fatalf("chunk after a gap: %d, %v; want 12 and a conflict", n, err)
		}
		got, err := s.Log(ctx, l.Attempt, 0, 1<<20)
		if err != nil || string(got) != "hello world\n" {
			t.Fatalf("log = %q, %v", got, err)
		}
		if got, _ := s.Log(ctx, l.Attempt, 8, 1<<20); string(got) != "rld\n" {
			t.Fatalf("log from 8 = %q", got)
		}
		// A page: at most max bytes, across chunks, from any offset.
		if got, _ := s.Log(ctx, l.Attempt, 4, 5); string(got) != "o wor" {
			t.Fatalf("5 bytes from 4 = %q", got)
		}
		if got, _ := s.Log(ctx, l.Attempt, 12, 5); len(got) != 0 {
			t.Fatalf("log from its end = %q", got)
		}
		if n, err := s.LogSize(ctx, l.Attempt); err != nil || n != 12 {
			t.Fatalf("log size = %d, %v", n, err)
		}
	})
}

func TestSupersede(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s := open()
		ctx := context.Background()
		a := mustAgent(t, s, "a", 1)
		old := mustRun(t, s, newRun("app", "main"), []Planned{job("build"), job("test")}, t0)
		running := lease(t, s, a, t0)
		other := mustRun(t, s, newRun("app", "feature"), []Planned{job("build")}, t0)
		mustRun(t, s, newRun("app", "main"), []Planned{job("build"), job("test")}, t0.Add(time.Second))

		r, _ := s.Run(ctx, old)
		if st := r.Jobs[1].Status; st != api.Superseded {
			t.Fatalf("queued job of the older run: %s, want superseded", st)
		}
		// By default a running job finishes.
		if st, _ := jobStatus(t, s, running.Attempt.Job); st != api.Running {
			t.Fatalf("running job of the older run: %s, want running", st)
		}
		// Positive control: another branch is left alone.
		if r, _ := s.Run(ctx, other); r.Jobs[0].Status != api.Queued {
			t.Fatalf("other branch's job: %s", r.Jobs[0].Status)
		}
		// With SupersedeRunning the running job is cancelled at the next heartbeat.
		if _, err := s.CreateRun(ctx, newRun("app", "main"), []Planned{job("build"), job("test")}, RunOptions{MaxAttempts: 3, SupersedeRunning: true}, t0.Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
		kill, _ := s.Heartbeat(ctx, a.ID, []api.Attempt{running.Attempt}, params.Timeout, t0)
		if len(kill) != 1 {
			t.Fatalf("heartbeat after supersede: kill %v", kill)
		}
	})
}

func TestNeeds(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s := open()
		ctx := context.Background()
		a := mustAgent(t, s, "a", 1)
		plan := []Planned{job("build"), {Name: "test", Key: "test", Needs: []string{"build"}}, {Name: "deploy", Key: "deploy", Needs: []string{"test"}}}
		run := mustRun(t, s, newRun("app", "main"), plan, t0)
		l := lease(t, s, a, t0)
		if l.Job != "build" {
			t.Fatalf("first lease %s", l.Job)
		}
		if l := lease(t, s, mustAgent(t, s, "b", 1), t0); l != nil {
			t.Fatalf("%s leased before what it needs", l.Job)
		}
		finish(t, s, a, l, api.Succeeded, t0)
		l = lease(t, s, a, t0)
		if l == nil || l.Job != "test" || len(l.Needs) != 1 || l.Needs[0].Key != "build" || l.Needs[0].Attempt != 1 {
			t.Fatalf("second lease %+v, want test needing build attempt 1", l)
		}
		finish(t, s, a, l, api.Failed, t0)
		r, _ := s.Run(ctx, run)
		if r.Jobs[2].Status != api.Skipped || !strings.Contains(r.Jobs[2].Reason, "needs test, which ended failed") {
			t.Fatalf("deploy: %s (%s)", r.Jobs[2].Status, r.Jobs[2].Reason)
		}
		if r.Status != api.Failed {
			t.Fatalf("run: %s", r.Status)
		}
		// Retrying the failed job brings its dependants back.
		if err := s.Retry(ctx, l.Attempt.Job, 3, t0); err != nil {
			t.Fatal(err)
		}
		l = lease(t, s, a, t0)
		if l == nil || l.Job != "test" || l.Attempt.Attempt != 2 {
			t.Fatalf("after retry: %+v", l)
		}
		finish(t, s, a, l, api.Succeeded, t0)
		l = lease(t, s, a, t0)
		finish(t, s, a, l, api.Succeeded, t0)
		if r, _ := s.Run(ctx, run); r.Status != api.Succeeded {
			t.Fatalf("run after retry: %s", r.Status)
		}
	})
}

func TestCancel(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s := open()
		ctx := context.Background()
		a := mustAgent(t, s, "a", 2)
		mustRun(t, s, newRun("app", "main"), []Planned{job("one"), job("two")}, t0)
		l := lease(t, s, a, t0)
		r, _ := s.Runs(ctx, "", "", 10)
		full, _ := s.Run(ctx, r[0].ID)
		queued := full.Jobs[1].ID
		if err := s.Cancel(ctx, queued, "cancelled by a user", t0); err != nil {
			t.Fatal(err)
		}
		if st, _ := jobStatus(t, s, queued); st != api.Cancelled {
			t.Fatalf("queued job after cancel: %s", st)
		}
		if err := s.Cancel(ctx, l.Attempt.Job, "cancelled by a user", t0); err != nil {
			t.Fatal(err)
		}
		kill, _ := s.Heartbeat(ctx, a.ID, []api.Attempt{l.Attempt}, params.Timeout, t0)
		if len(kill) != 1 {
			t.Fatal("a cancelled running job was not killed at the heartbeat")
		}
		finish(t, s, a, l, api.Cancelled, t0)
		if err := s.Cancel(ctx, l.Attempt.Job, "again", t0); err == nil {
			t.Fatal("cancelling an ended job succeeded")
		}
	})
}

func TestMigrationsOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s := open()
		s.Close()
		s = open() // applies nothing twice
		var n int
		files, _ := fs.Glob(migrations, "migrations/"+s.d.name+"/*.sql")
		if err := s.db.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(files) {
			t.Fatalf("schema_migrations rows = %d, %v; want %d", n, err, len(files))
		}
	})
}

func TestSQLiteOneServer(t *testing.T) {
	p := filepath.Join(t.TempDir(), "jobrun.db")
	s, err := OpenSQLite(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := OpenSQLite(context.Background(), p); err == nil || !strings.Contains(err.Error(), "another jobrun server") {
		t.Fatalf("second open = %v, want refused", err)
	}
}
