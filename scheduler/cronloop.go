package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/jobrun/jobrun/jobs"
	"github.com/jobrun/jobrun/scheduler/cron"
)

// cronLoop fires the `on "cron"` triggers of every repository's default
// branch job file. Every server on a shared database runs it: each tick
// has one row in cron_fires, and the server whose insert lands fires it.
func (s *Server) cronLoop(ctx context.Context) {
	t := s.cfg.Triggers
	seen := map[string]time.Time{}
	for {
		s.cronPass(ctx, t.Clock.Now(), seen)
		if err := s.st.(RepoStore).PruneDeliveries(ctx, time.Now().Add(-deliveryMemory)); err != nil && ctx.Err() == nil {
			s.log.Error("prune webhook deliveries", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.Clock.After(t.CronEvery):
		}
	}
}

// deliveryMemory is how long a webhook delivery is remembered to refuse
// its replay.
const deliveryMemory = 7 * 24 * time.Hour

// cronPass fires what is due at now. Ticks missed while no server ran
// (within the catch-up window, and not before the schedule was set) are
// claimed together and run once, at the newest: ten missed nightly runs
// are one run, not ten superseding each other. seen is the newest tick
// this server handled per trigger, to skip claims it already made.
func (s *Server) cronPass(ctx context.Context, now time.Time, seen map[string]time.Time) {
	rs := s.st.(RepoStore)
	repos, err := rs.Repos(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("cron: list repositories", "error", err)
		}
		return
	}
	for i := range repos {
		rec := &repos[i]
		if rec.CronSource == "" {
			continue
		}
		f, diags := jobs.Parse(jobFile, []byte(rec.CronSource))
		if diags.HasErrors() {
			continue // the push that brought it made a failed run saying why
		}
		for _, tr := range f.Workflow.Triggers {
			if tr.Kind != jobs.OnCron || tr.Cron == nil {
				continue
			}
			branch := tr.Branch
			if branch == "" {
				branch = rec.DefaultBranch
			}
			key := tr.Schedule + " @ " + branch
			from := now.Add(-s.cfg.Triggers.CronWindow)
			if rec.CronSince.After(from) {
				from = rec.CronSince
			}
			if last, ok := seen[rec.Name+"\x00"+key]; ok && last.After(from) {
				from = last
			}
			due := cron.Due(tr.Cron, from, now)
			if len(due) == 0 {
				continue
			}
			if err := s.fireTick(ctx, rec, key, branch, due); err != nil {
				s.log.Error("cron", "repo", rec.Name, "schedule", tr.Schedule, "branch", branch, "error", err)
				continue // not seen: the next pass tries again
			}
			seen[rec.Name+"\x00"+key] = due[len(due)-1]
		}
	}
}

// fireTick claims the due ticks of one trigger and, if this server claimed
// the newest, runs it.
func (s *Server) fireTick(ctx context.Context, rec *repoRec, key, branch string, due []time.Time) error {
	rs := s.st.(RepoStore)
	now := time.Now()
	for _, tick := range due[:len(due)-1] {
		if _, err := rs.ClaimTick(ctx, rec.Name, key, tick, now); err != nil {
			return err
		}
	}
	tick := due[len(due)-1]
	won, err := rs.ClaimTick(ctx, rec.Name, key, tick, now)
	if err != nil || !won {
		return err
	}
	id, msg, err := s.runCommit(ctx, rec, commitEvent{Kind: jobs.OnCron, Ref: branch, Branch: branch, Trigger: "cron", Scheduled: true,
		Env: map[string]string{jobs.VarCronTick: tick.UTC().Format(time.RFC3339)}})
	if err != nil {
		if uerr := rs.UnclaimTick(context.WithoutCancel(ctx), rec.Name, key, tick); uerr != nil {
			s.log.Error("cron: give back a tick", "error", uerr)
		}
		return fmt.Errorf("tick %s: %w", tick.UTC().Format(time.RFC3339), err)
	}
	s.log.Info("cron fired", "repo", rec.Name, "trigger", key, "tick", tick, "run", id, "message", msg)
	return rs.SetTickRun(ctx, rec.Name, key, tick, id)
}
