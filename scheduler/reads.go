package scheduler

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jobrun/jobrun/api"
)

const runColumns = `id, repo, branch, commit_sha, file, trigger, status, reason, created_at, finished_at`

func scanRun(sc interface{ Scan(...any) error }) (api.Run, error) {
	var r api.Run
	var created int64
	var finished sql.NullInt64
	err := sc.Scan(&r.ID, &r.Repo, &r.Branch, &r.Commit, &r.File, &r.Trigger, &r.Status, &r.Reason, &created, &finished)
	r.Created, r.Finished = fromMS(created), fromNullMS(finished)
	return r, err
}

// Run returns a run with its jobs.
func (s *SQL) Run(ctx context.Context, id int64) (*api.Run, error) {
	r, err := scanRun(s.db.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, sweptRunErr(ctx, s.db, id)
	}
	if err != nil {
		return nil, err
	}
	r.Jobs, err = s.jobs(ctx, `WHERE run_id = $1 ORDER BY id`, id)
	return &r, err
}

// Runs lists the newest runs, of repo and branch if set.
func (s *SQL) Runs(ctx context.Context, repo, branch string, limit int) ([]api.Run, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+runColumns+` FROM runs
		WHERE ($1 = '' OR repo = $1) AND ($2 = '' OR branch = $2) ORDER BY id DESC LIMIT $3`, repo, branch, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	runs := []api.Run{}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	return runs, rows.Err()
}

const jobColumns = `id, run_id, name, key, labels, needs, status, reason, attempt, agent_id, queued_at, started_at, finished_at, result`

func (s *SQL) jobs(ctx context.Context, where string, args ...any) ([]api.Job, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []api.Job
	for rows.Next() {
		var j api.Job
		var labels, needs, result string
		var queued int64
		var started, finished sql.NullInt64
		if err := rows.Scan(&j.ID, &j.Run, &j.Name, &j.Key, &labels, &needs, &j.Status, &j.Reason, &j.Attempt, &j.Agent,
			&queued, &started, &finished, &result); err != nil {
			return nil, err
		}
		j.Labels, j.Needs = strList(labels), strList(needs)
		j.Queued, j.Started, j.Finished = fromMS(queued), fromNullMS(started), fromNullMS(finished)
		if result != "" {
			j.Result = &api.Result{}
			json.Unmarshal([]byte(result), j.Result)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// Job returns a job with its current attempt's steps.
func (s *SQL) Job(ctx context.Context, id int64) (*api.Job, error) {
	js, err := s.jobs(ctx, `WHERE id = $1`, id)
	if err != nil {
		return nil, err
	}
	if len(js) == 0 {
		return nil, sweptJobErr(ctx, s.db, id)
	}
	j := js[0]
	rows, err := s.db.QueryContext(ctx, `SELECT idx, name, status, started_at, duration_ms, exit, allowed_failure
		FROM steps WHERE job_id = $1 AND attempt = $2 ORDER BY idx`, id, j.Attempt)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var st api.Step
		var started, dur int64
		var allowed int
		if err := rows.Scan(&st.Index, &st.Name, &st.Status, &started, &dur, &st.Exit, &allowed); err != nil {
			return nil, err
		}
		st.Started, st.Duration, st.AllowedFailure = fromMS(started), api.Duration(time.Duration(dur)*time.Millisecond), allowed == 1
		j.Steps = append(j.Steps, st)
	}
	return &j, rows.Err()
}

// Agents lists the agents that have not left, with what they run.
func (s *SQL) Agents(ctx context.Context, timeout time.Duration, now time.Time) ([]api.Agent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, labels, slots, version, last_seen FROM agents WHERE gone = 0 ORDER BY name, id`)
	if err != nil {
		return nil, err
	}
	out := []api.Agent{}
	for rows.Next() {
		var a api.Agent
		var labels string
		var seen int64
		if err := rows.Scan(&a.ID, &a.Name, &labels, &a.Slots, &a.Version, &seen); err != nil {
			rows.Close()
			return nil, err
		}
		a.Labels, a.LastSeen = strList(labels), fromMS(seen)
		a.Online = now.Sub(a.LastSeen) < timeout
		out = append(out, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		js, err := s.jobs(ctx, `WHERE agent_id = $1 AND status = 'running' ORDER BY id`, out[i].ID)
		if err != nil {
			return nil, err
		}
		for _, j := range js {
			out[i].Running = append(out[i].Running, api.Attempt{Job: j.ID, Attempt: j.Attempt})
		}
		out[i].Busy = len(js)
	}
	return out, nil
}

// attemptInfo names an attempt in the artifact store.
type attemptInfo struct {
	Repo, Run, Key string
	Attempt        int
	Status         string
}

// AttemptInfo returns where attempt a's artifacts live.
func (s *SQL) AttemptInfo(ctx context.Context, a api.Attempt) (*attemptInfo, error) {
	var in attemptInfo
	var run int64
	var current int
	err := s.db.QueryRowContext(ctx, `SELECT r.repo, r.id, j.key, j.attempt, j.status FROM jobs j JOIN runs r ON r.id = j.run_id WHERE j.id = $1`, a.Job).
		Scan(&in.Repo, &run, &in.Key, &current, &in.Status)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, sweptJobErr(ctx, s.db, a.Job)
	}
	if err != nil {
		return nil, err
	}
	if a.Attempt < 1 || a.Attempt > current {
		return nil, fmt.Errorf("%w: job %d has no attempt %d", errNotFound, a.Job, a.Attempt)
	}
	in.Run, in.Attempt = fmt.Sprint(run), a.Attempt
	return &in, nil
}

// secretRec is a sealed secret.
type secretRec struct {
	Name     string
	Branches []string
	Sealed   []byte
}

// SetSecret stores a sealed secret, replacing one of the same name.
func (s *SQL) SetSecret(ctx context.Context, repo string, r secretRec) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO secrets (repo, name, branches, sealed) VALUES ($1, $2, $3, $4)
		ON CONFLICT (repo, name) DO UPDATE SET branches = excluded.branches, sealed = excluded.sealed`,
		repo, r.Name, mustJSON(sorted(r.Branches)), r.Sealed)
	return err
}

// Secrets returns repo's sealed secrets.
func (s *SQL) Secrets(ctx context.Context, repo string) ([]secretRec, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, branches, sealed FROM secrets WHERE repo = $1 ORDER BY name`, repo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []secretRec
	for rows.Next() {
		var r secretRec
		var branches string
		if err := rows.Scan(&r.Name, &branches, &r.Sealed); err != nil {
			return nil, err
		}
		r.Branches = strList(branches)
		out = append(out, r)
	}
	return out, rows.Err()
}
