package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/redact"
	"github.com/jobrun/jobrun/scheduler/webhook"
)

// The commit states jobrun sends, mapped per forge in forgeState.
const (
	statePending = "pending"
	stateRunning = "running"
	stateSuccess = "success"
	stateFailure = "failure"
	stateError   = "error"
)

// statusContext names jobrun's statuses on the forge.
const statusContext = "jobrun"

// statusDue is a run whose forge may not know its latest state.
type statusDue struct {
	Run     int64
	Repo    repoRec
	Commit  string
	Status  string // the run's
	Started bool   // a job of it has started
	Sent    string // the last state sent, "" for none
}

// StatusesDue lists the runs of repositories with a forge token, created
// after since, whose sent status is not final yet.
func (s *SQL) StatusesDue(ctx context.Context, since time.Time) ([]statusDue, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT r.id, r.commit_sha, r.status,
			EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = r.id AND j.started_at IS NOT NULL), COALESCE(cs.state, ''),
			`+prefixed("p.", repoCols)+`
		FROM runs r JOIN repos p ON p.name = r.repo AND p.clone_url = r.clone_url
		LEFT JOIN commit_statuses cs ON cs.run_id = r.id
		WHERE p.token_sealed IS NOT NULL AND p.forge != '' AND r.commit_sha != '' AND r.created_at > $1
			AND (cs.state IS NULL OR cs.state NOT IN ('success', 'failure', 'error'))
		ORDER BY r.id`, ms(since))
	if err != nil {
		return nil, fmt.Errorf("runs for commit statuses: %w", err)
	}
	defer rows.Close()
	var out []statusDue
	for rows.Next() {
		var d statusDue
		var r repoRec
		var since, subs int64
		if err := rows.Scan(&d.Run, &d.Commit, &d.Status, &d.Started, &d.Sent,
			&r.Name, &r.Forge, &r.CloneURL, &r.APIURL, &r.ForgeRepo, &r.DefaultBranch, &r.Secret, &r.Token, &r.SSHKey,
			&r.Depth, &subs, &r.CronSource, &r.CronCommit, &since); err != nil {
			return nil, err
		}
		d.Repo = r
		out = append(out, d)
	}
	return out, rows.Err()
}

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

// SwapStatus moves a run's sent state from old ("" for none) to new.
func (s *SQL) SwapStatus(ctx context.Context, run int64, old, new string, now time.Time) (bool, error) {
	var res interface{ RowsAffected() (int64, error) }
	var err error
	if old == "" {
		// No row yet, or one a failed send put back to ''.
		res, err = s.db.ExecContext(ctx, `INSERT INTO commit_statuses (run_id, state, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (run_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at WHERE commit_statuses.state = ''`,
			run, new, ms(now))
	} else {
		res, err = s.db.ExecContext(ctx, `UPDATE commit_statuses SET state = $3, updated_at = $4 WHERE run_id = $1 AND state = $2`,
			run, old, new, ms(now))
	}
	if err != nil {
		return false, fmt.Errorf("commit status of run %d: %w", run, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// runState is the state a run's commit status should show.
func runState(d statusDue) string {
	switch d.Status {
	case api.Succeeded:
		return stateSuccess
	case api.Errored:
		return stateError
	case api.Failed, api.Cancelled, api.Superseded:
		return stateFailure
	}
	if d.Started {
		return stateRunning
	}
	return statePending
}

// statusLoop sends commit statuses as runs move: pending when queued,
// running once a job starts, then success or failure. It polls the store
// rather than hooking the queue's transactions, so a run moved by another
// server (or by lease expiry) is reported too; whichever server swaps the
// recorded state first sends it.
func (s *Server) statusLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Triggers.StatusEvery)
	defer t.Stop()
	for {
		s.statusPass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// statusHorizon bounds how old a run may be to still get statuses: a
// forge that was down for a day is not sent a day of stale states.
const statusHorizon = 24 * time.Hour

func (s *Server) statusPass(ctx context.Context) {
	rs := s.st.(RepoStore)
	due, err := rs.StatusesDue(ctx, time.Now().Add(-statusHorizon))
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("commit statuses", "error", err)
		}
		return
	}
	for _, d := range due {
		want := runState(d)
		if want == d.Sent || d.Sent == stateRunning && want == statePending {
			continue
		}
		won, err := rs.SwapStatus(ctx, d.Run, d.Sent, want, time.Now())
		if err != nil || !won {
			continue
		}
		if err := s.sendStatus(ctx, &d.Repo, d.Run, d.Commit, want); err != nil {
			s.log.Warn("commit status not sent; retrying", "repo", d.Repo.Name, "run", d.Run, "state", want, "error", err)
			rs.SwapStatus(ctx, d.Run, want, d.Sent, time.Now())
			continue
		}
		s.log.Debug("commit status sent", "repo", d.Repo.Name, "run", d.Run, "state", want)
	}
}

// sendPending sends a new run's first status, unless the loop did.
func (s *Server) sendPending(ctx context.Context, rec *repoRec, run int64, commit string) {
	rs := s.st.(RepoStore)
	if won, err := rs.SwapStatus(ctx, run, "", statePending, time.Now()); err != nil || !won {
		return
	}
	if err := s.sendStatus(ctx, rec, run, commit, statePending); err != nil {
		s.log.Warn("commit status not sent; retrying", "repo", rec.Name, "run", run, "state", statePending, "error", err)
		rs.SwapStatus(ctx, run, statePending, "", time.Now())
	}
}

// sendStatus posts one commit status to the repository's forge.
func (s *Server) sendStatus(ctx context.Context, rec *repoRec, run int64, commit, state string) error {
	token, err := s.openRepo(rec, "token")
	if err != nil {
		return err
	}
	link := ""
	if s.cfg.Triggers.PublicURL != "" {
		link = fmt.Sprintf("%s/runs/%d", strings.TrimSuffix(s.cfg.Triggers.PublicURL, "/"), run)
	}
	desc := map[string]string{statePending: "queued", stateRunning: "running", stateSuccess: "succeeded",
		stateFailure: "failed", stateError: "could not run"}[state]
	desc = fmt.Sprintf("jobrun run %d %s", run, desc)
	base, path, err := forgeRepoPath(rec)
	if err != nil {
		return err
	}
	var body map[string]string
	header := http.Header{}
	switch rec.Forge {
	case webhook.GitHub:
		if base == "" {
			base = "https://api.github.com"
		}
		path = "/repos/" + path + "/statuses/" + commit
		header.Set("Authorization", "Bearer "+token)
		header.Set("Accept", "application/vnd.github+json")
		header.Set("X-GitHub-Api-Version", "2022-11-28")
		body = map[string]string{"state": forgeState(rec.Forge, state), "target_url": link, "description": desc, "context": statusContext}
	case webhook.GitLab:
		if base == "" {
			base = "https://gitlab.com/api/v4"
		}
		path = "/projects/" + url.PathEscape(path) + "/statuses/" + commit
		header.Set("PRIVATE-TOKEN", token)
		body = map[string]string{"state": forgeState(rec.Forge, state), "target_url": link, "description": desc, "name": statusContext}
	case webhook.Gitea:
		if base == "" {
			return fmt.Errorf("repository %s: a Gitea repository needs --api-url (https://HOST/api/v1) for commit statuses", rec.Name)
		}
		path = "/repos/" + path + "/statuses/" + commit
		header.Set("Authorization", "token "+token)
		body = map[string]string{"state": forgeState(rec.Forge, state), "target_url": link, "description": desc, "context": statusContext}
	default:
		return fmt.Errorf("repository %s: forge %q has no commit statuses", rec.Name, rec.Forge)
	}
	if link == "" {
		delete(body, "target_url")
	}
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header = header
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.cfg.Triggers.HTTP.Do(req)
	if err != nil {
		return redact.Error(fmt.Errorf("POST %s: %w", redact.URL(base+path), err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return redact.Error(fmt.Errorf("POST %s: %s: %s", redact.URL(base+path), resp.Status, bytes.TrimSpace(msg)))
	}
	return nil
}

// forgeState maps jobrun's states to the forge's words: GitHub and Gitea
// know no "running" (it stays pending there), GitLab says failed.
func forgeState(forge, state string) string {
	switch forge {
	case webhook.GitLab:
		switch state {
		case stateFailure, stateError:
			return "failed"
		}
		return state
	default:
		if state == stateRunning {
			return statePending
		}
		return state
	}
}

// forgeRepoPath returns the forge's API base and the repository's path on
// it: ForgeRepo, or the clone URL's path without ".git".
func forgeRepoPath(rec *repoRec) (string, string, error) {
	p := rec.ForgeRepo
	if p == "" {
		u, err := url.Parse(rec.CloneURL)
		if err != nil || u.Path == "" {
			return "", "", errors.New("repository " + rec.Name + ": set its forge repository (owner/name): the clone URL does not say it")
		}
		p = strings.TrimSuffix(strings.Trim(u.Path, "/"), ".git")
	}
	return rec.APIURL, p, nil
}
