package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jobrun/jobrun/agent"
	"github.com/jobrun/jobrun/jobs"
)

// Options say how to run a workflow locally.
type Options struct {
	Runner *agent.Runner
	Sink   agent.Sink
	// Source is the directory the workspaces are made from; BaseDir the job
	// file's directory.
	Source, BaseDir string
	// Clean exports HEAD of Source's repository instead of a
	// copy-on-write view of the directory.
	Clean bool
	// Parallel is the most jobs that run at once.
	Parallel int
	// Env is added to every job's environment, and Secrets to the
	// environment of the jobs that name them; every job masks them all.
	Env, Secrets map[string]string
}

// Run runs jobs (in topological order, as the plan gives them) and returns
// one result per job, in the same order: jobs that did not run are
// reported skipped or cancelled, with the reason.
func Run(ctx context.Context, plan []*jobs.Job, opts Options) []agent.Result {
	run := RunID(time.Now())
	repo := RepoName(opts.Source)
	byName := make(map[string]*jobs.Job, len(plan))
	tasks := make([]Task, 0, len(plan))
	for _, j := range plan {
		byName[j.Name] = j
		tasks = append(tasks, Task{Name: j.Name, Needs: j.Needs, Group: j.Concurrency})
	}
	// Every job masks every secret of the run: one it does not name may
	// reach it through an artifact.
	mask := make([]string, 0, len(opts.Secrets))
	for _, v := range opts.Secrets {
		mask = append(mask, v)
	}
	var mu sync.Mutex
	results := map[string]agent.Result{}
	Schedule(ctx, tasks, opts.Parallel, func(ctx context.Context, name string) bool {
		j := byName[name]
		var res agent.Result
		secrets, err := jobSecrets(j, opts.Secrets)
		var login string
		if err == nil && j.ImageCredentials != "" {
			var ok bool
			if login, ok = opts.Secrets[j.ImageCredentials]; !ok {
				err = fmt.Errorf("job %q needs secret %s (image_credentials): pass it with --secret %s=USER:PASSWORD or --secret %s", j.Name, j.ImageCredentials, j.ImageCredentials, j.ImageCredentials)
			}
		}
		if err != nil {
			res = agent.Result{Job: name, Status: agent.Errored, Reason: err.Error()}
			opts.Sink.Event(agent.Event{Time: time.Now(), Kind: agent.JobFinished, Job: name, Result: &res})
		} else {
			res = opts.Runner.Run(ctx, &agent.Job{
				Job: j, Repo: repo, Run: run, Attempt: 1,
				Source: opts.Source, BaseDir: opts.BaseDir, Clean: opts.Clean,
				Env: opts.Env, Secrets: secrets, Mask: mask, ImageLogin: login, NeedAttempts: needAttempts(j, byName),
			}, opts.Sink)
		}
		mu.Lock()
		results[name] = res
		mu.Unlock()
		return res.Status == agent.Succeeded
	}, func(name string, o Outcome) {
		r := agent.Result{Job: name, Status: agent.Status(o.State), Reason: o.Reason}
		mu.Lock()
		results[name] = r
		mu.Unlock()
		opts.Sink.Event(agent.Event{Time: time.Now(), Kind: agent.JobFinished, Job: name, Result: &r})
	})
	out := make([]agent.Result, 0, len(plan))
	for _, j := range plan {
		out = append(out, results[j.Name])
	}
	return out
}

// jobSecrets gives a job the secrets its `secrets` list names, and no
// others: a job sees only what it asks for.
func jobSecrets(j *jobs.Job, all map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(j.Secrets))
	for _, name := range j.Secrets {
		v, ok := all[name]
		if !ok {
			return nil, fmt.Errorf("job %q needs secret %s: pass it with --secret %s=VALUE or --secret %s", j.Name, name, name, name)
		}
		out[name] = v
	}
	return out, nil
}

// needAttempts names the needed jobs' attempts: locally, every job runs
// once, as attempt 1.
func needAttempts(j *jobs.Job, byName map[string]*jobs.Job) []agent.NeedAttempt {
	var needs []agent.NeedAttempt
	for _, n := range j.Needs {
		if d, ok := byName[n]; ok {
			needs = append(needs, agent.NeedAttempt{ID: d.ID, Attempt: 1})
		}
	}
	return needs
}

// RunID names one local run in the artifact store: sortable by time.
func RunID(t time.Time) string {
	return t.UTC().Format("20060102-150405.000")
}

// RepoName names a local source directory for cache scoping and the
// artifact store: its base name, and a hash of its absolute path so that
// two checkouts called "app" never share a cache.
func RepoName(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	sum := sha256.Sum256([]byte(abs))
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, filepath.Base(abs))
	return fmt.Sprintf("%s-%s", strings.Trim(base, ".-"), hex.EncodeToString(sum[:4]))
}
