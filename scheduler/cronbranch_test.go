package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/scheduler/cron"
)

// nightlyRelease is main's job file: a schedule that runs the release
// branch.
const nightlyRelease = `
workflow {
  on "push" { branches = ["main"] }
  on "cron" {
    schedule = "*/10 * * * *"
    branch   = "release"
  }
}
job "build" {
  image = "busybox"
  step "b" { run = "true" }
}
`

// releaseOnly is the release branch's job file: it names no schedule of
// its own.
const releaseOnly = `
workflow {
  on "push" { branches = ["release"] }
}
job "release" {
  image = "busybox"
  step "r" { run = "true" }
}
`

// TestCronScheduleDecidesForItsBranch fires a schedule of main's job file
// that names the release branch: the schedule that fired decides, so the
// run is queued though the release branch's own job file has no cron
// block (and its jobs are the ones that run).
func TestCronScheduleDecidesForItsBranch(t *testing.T) {
	st := sqliteStore(t)
	start := time.Now().Truncate(time.Hour).Add(time.Hour + time.Minute) // hh:01
	clock := cron.NewFake(start)
	base, srv := startTriggerServer(t, st, func(c *Config) {
		c.Triggers.Clock = clock
		c.Triggers.CronEvery = time.Minute
	}, false)
	repo := newForgeRepo(t, nightlyRelease)
	release := repo.push("release", map[string]string{".ci.hcl": releaseOnly})
	addRepo(t, base, api.NewRepo{Name: "hello", CloneURL: repo.bare, Secret: hookSecret})
	st.db.Exec(`UPDATE repos SET cron_since = $1`, ms(start))
	ctx := context.Background()
	clock.Advance(9 * time.Minute) // hh:10
	srv.cronPass(ctx, clock.Now(), map[string]time.Time{})
	var got []api.Run
	for _, r := range runCount(t, base, "hello") {
		if r.Trigger == "cron" {
			got = append(got, r)
		}
	}
	if len(got) != 1 || got[0].Branch != "release" || got[0].Commit != release {
		t.Fatalf("cron runs: %+v; want one of the release branch's head", got)
	}
	run, err := admin(base).Run(ctx, got[0].ID)
	if err != nil || len(run.Jobs) != 1 || run.Jobs[0].Name != "release" {
		t.Fatalf("cron run: %+v, %v; want the release branch's job", run, err)
	}
}
