package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
)

// TestSupersedeNeedsSameKindAndJobs: a newer run of the same branch
// supersedes an older one only if it was started the same way (push,
// manual, cron) and has every job the older one has. A manual run of one
// job, a cron run, or a push run with a job fewer leaves the last push run
// alone; the control, a push run with all its jobs and one more,
// supersedes it and nothing else.
func TestSupersedeNeedsSameKindAndJobs(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s := open()
		ctx := context.Background()
		run := func(trigger string) api.NewRun {
			nr := newRun("app", "main")
			nr.Trigger = trigger
			return nr
		}
		plan := func(names ...string) []Planned {
			var p []Planned
			for _, n := range names {
				p = append(p, job(n))
			}
			return p
		}
		at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
		push := mustRun(t, s, run("push"), plan("build", "test"), at(0))
		manual := mustRun(t, s, run("manual"), plan("lint"), at(1))
		cron := mustRun(t, s, run("cron"), plan("build", "test"), at(2))
		mustRun(t, s, run("manual"), plan("build", "test"), at(3))
		mustRun(t, s, run("push"), plan("build"), at(4))
		status := func(id int64) []string {
			r, err := s.Run(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			var st []string
			for _, j := range r.Jobs {
				st = append(st, j.Status)
			}
			return st
		}
		for name, id := range map[string]int64{"push": push, "manual --job lint": manual, "cron": cron} {
			for _, st := range status(id) {
				if st != api.Queued {
					t.Errorf("%s run %d: %v, want all queued: no newer run of its kind with its jobs", name, id, status(id))
					break
				}
			}
		}
		// Control: a push run with every job of the first and more.
		mustRun(t, s, run("push"), plan("build", "test", "lint"), at(5))
		for _, st := range status(push) {
			if st != api.Superseded {
				t.Errorf("push run %d after a newer push run with its jobs: %v, want superseded", push, status(push))
				break
			}
		}
		if st := status(cron); st[0] != api.Queued {
			t.Errorf("cron run after a newer push run: %v, want queued", st)
		}
	})
}
