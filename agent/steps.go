package agent

import (
	"context"
	"path"
	"time"

	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/jobs"
)

// CleanupGrace is how long the `if = "always"` and `if = "failure"` steps
// left after a job's timeout get, all together, beyond the timeout (as
// GitLab's after_script gets five minutes). A step still running when it
// is spent is stopped like a timed-out one. A cancelled job runs no
// further step, clean-up steps included: cancel means stop now.
const CleanupGrace = 5 * time.Minute

// steps runs the job's steps in order in c, under the job's timeout
// (jc, which began with the job), and
// returns their results and how the job ended. After a timeout, the
// clean-up steps (`if = "always"` or `"failure"`) still run, under
// CleanupGrace; after a cancel (ctx done), nothing more runs.
func (r *Runner) steps(jc *jobClock, j *Job, c *sandbox.Container, l *jobLog) ([]StepResult, Status, string) {
	ctx, sctx := jc.parent, jc.ctx
	var results []StepResult
	status, reason := Succeeded, ""
	for _, s := range j.Steps {
		run := sctx
		timedOut := jc.timedOut()
		if timedOut && status == Succeeded {
			// The timeout came between steps, or during an
			// allow_failure step: the job has failed all the same.
			status, reason = Failed, jc.reason()
		}
		want := shouldRun(s.If, status == Succeeded) && ctx.Err() == nil
		if want && timedOut {
			// What runs now is clean-up, under its own bound.
			run = jc.afterTimeout(l, `clean-up steps (if = "always" or "failure")`)
		}
		if !want || run.Err() != nil {
			results = append(results, StepResult{Name: s.Name, Status: Skipped})
			l.emit(Event{Kind: StepFinished, Step: s.Name, StepResult: &results[len(results)-1]})
			continue
		}
		sr := r.step(run, c, s, l)
		if hint := buildsImagesHint(j.Job, s, sr); hint != "" {
			l.notice(s.Name, hint)
		}
		results = append(results, sr)
		l.emit(Event{Kind: StepFinished, Step: s.Name, StepResult: &sr})
		if sr.Status != Succeeded && !sr.AllowedFailure && status == Succeeded {
			status = sr.Status
			reason = "step " + s.Name + ": " + sr.Exit
		}
	}
	return results, status, reason
}

// shouldRun applies a step's `if`: "success" (the default) runs while all
// went well, "failure" only after a failure, "always" either way.
func shouldRun(cond jobs.StepIf, ok bool) bool {
	switch cond {
	case jobs.IfAlways:
		return true
	case jobs.IfFailure:
		return !ok
	default:
		return ok
	}
}

func (r *Runner) step(ctx context.Context, c *sandbox.Container, s jobs.Step, l *jobLog) StepResult {
	l.emit(Event{Kind: StepStarted, Step: s.Name})
	stdout, stderr := l.output(s.Name, "stdout"), l.output(s.Name, "stderr")
	start := time.Now()
	exit, err := c.Exec(ctx, sandbox.Process{
		Args:   c.Shell(s.Run),
		Cwd:    workdir(s.Workdir),
		Stdout: stdout,
		Stderr: stderr,
	})
	stdout.Close()
	stderr.Close()
	sr := StepResult{Name: s.Name, Duration: time.Since(start), Status: Succeeded}
	switch {
	case err != nil:
		sr.Status, sr.Exit = Errored, err.Error()
	case exit.Cancelled:
		sr.Status, sr.Exit = Cancelled, exit.String()
	case !exit.Success():
		sr.Status, sr.Exit = Failed, exit.String()
	}
	sr.AllowedFailure = sr.Status == Failed && s.AllowFailure
	return sr
}

// workdir resolves a step's workdir against /workspace.
func workdir(dir string) string {
	if dir == "" {
		return "/workspace"
	}
	if path.IsAbs(dir) {
		return path.Clean(dir)
	}
	return path.Join("/workspace", dir)
}
