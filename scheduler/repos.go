package scheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/git"
	"github.com/jobrun/jobrun/internal/redact"
	"github.com/jobrun/jobrun/jobs"
	"github.com/jobrun/jobrun/scheduler/webhook"
)

// RepoStore is what repositories, webhooks, cron and commit statuses keep
// in the store. *SQL implements it; a Store without it serves no
// repositories (the routes answer 501).
type RepoStore interface {
	PutRepo(ctx context.Context, r repoRec, now time.Time) error
	Repo(ctx context.Context, name string) (*repoRec, error)
	Repos(ctx context.Context) ([]repoRec, error)
	SetCronSource(ctx context.Context, repo, commit, source string, now time.Time) error
	// Deliver records a webhook delivery's keys; false if one of them
	// was seen before (a replay).
	Deliver(ctx context.Context, repo string, keys []string, now time.Time) (bool, error)
	Undeliver(ctx context.Context, keys []string) error
	// PruneDeliveries forgets deliveries received before t.
	PruneDeliveries(ctx context.Context, before time.Time) error
	// ClaimTick records that the tick of a repository's cron trigger
	// fires; false if another server (or an earlier run of this one) did.
	ClaimTick(ctx context.Context, repo, trigger string, tick time.Time, now time.Time) (bool, error)
	SetTickRun(ctx context.Context, repo, trigger string, tick time.Time, run int64) error
	UnclaimTick(ctx context.Context, repo, trigger string, tick time.Time) error
	// StatusesDue returns the runs of repositories with a forge token
	// whose last sent commit status is not final, created after since.
	StatusesDue(ctx context.Context, since time.Time) ([]statusDue, error)
	// SwapStatus moves a run's sent status from old to new; false if
	// another server did first.
	SwapStatus(ctx context.Context, run int64, old, new string, now time.Time) (bool, error)
}

// repoRec is a registered repository's row; the sealed fields are opened
// with the server's Sealer under the repository's name.
type repoRec struct {
	api.Repo
	Secret, Token, SSHKey []byte // sealed
	CronSource            string
	CronCommit            string
	CronSince             time.Time
}

var repoName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$`)

// PutRepo adds or replaces a repository. Sealed fields left nil keep
// their stored values.
func (s *SQL) PutRepo(ctx context.Context, r repoRec, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO repos (name, forge, clone_url, api_url, forge_repo, default_branch, secret_sealed, token_sealed, ssh_key_sealed, depth, submodules, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (name) DO UPDATE SET forge = excluded.forge, clone_url = excluded.clone_url, api_url = excluded.api_url,
			forge_repo = excluded.forge_repo, default_branch = excluded.default_branch, depth = excluded.depth, submodules = excluded.submodules,
			secret_sealed = COALESCE(excluded.secret_sealed, repos.secret_sealed),
			token_sealed = COALESCE(excluded.token_sealed, repos.token_sealed),
			ssh_key_sealed = COALESCE(excluded.ssh_key_sealed, repos.ssh_key_sealed)`,
		r.Name, r.Forge, r.CloneURL, r.APIURL, r.ForgeRepo, r.DefaultBranch, r.Secret, r.Token, r.SSHKey, r.Depth, flag(r.Submodules), ms(now))
	if err != nil {
		return fmt.Errorf("store repository %s: %w", r.Name, err)
	}
	return nil
}

const repoCols = `name, forge, clone_url, api_url, forge_repo, default_branch, secret_sealed, token_sealed, ssh_key_sealed, depth, submodules, cron_source, cron_commit, cron_since`

func scanRepo(sc interface{ Scan(...any) error }) (repoRec, error) {
	var r repoRec
	var since, subs int64
	err := sc.Scan(&r.Name, &r.Forge, &r.CloneURL, &r.APIURL, &r.ForgeRepo, &r.DefaultBranch, &r.Secret, &r.Token, &r.SSHKey,
		&r.Depth, &subs, &r.CronSource, &r.CronCommit, &since)
	r.CronSince, r.Submodules = fromMS(since), subs == 1
	r.HasSecret, r.HasToken, r.HasSSHKey = len(r.Secret) > 0, len(r.Token) > 0, len(r.SSHKey) > 0
	return r, err
}

// Repo returns the repository called name.
func (s *SQL) Repo(ctx context.Context, name string) (*repoRec, error) {
	r, err := scanRepo(s.db.QueryRowContext(ctx, `SELECT `+repoCols+` FROM repos WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("repository %q: %w (register it with jobrun repo add)", name, errNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", name, err)
	}
	return &r, nil
}

// Repos returns every repository by name.
func (s *SQL) Repos(ctx context.Context) ([]repoRec, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+repoCols+` FROM repos ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("repositories: %w", err)
	}
	defer rows.Close()
	var out []repoRec
	for rows.Next() {
		r, err := scanRepo(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// SetCronSource keeps the default branch's job file at commit. A changed
// file restarts the catch-up window at now, so a schedule added today
// does not fire for the ticks before it existed.
func (s *SQL) SetCronSource(ctx context.Context, repo, commit, source string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE repos SET cron_commit = $2,
		cron_since = CASE WHEN cron_source = $3 THEN cron_since ELSE $4 END, cron_source = $3 WHERE name = $1`,
		repo, commit, source, ms(now))
	return err
}

// Deliver records a delivery's keys in one transaction.
func (s *SQL) Deliver(ctx context.Context, repo string, keys []string, now time.Time) (bool, error) {
	fresh := true
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for _, k := range keys {
			res, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (key, repo, received_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING`,
				k, repo, ms(now))
			if err != nil {
				return fmt.Errorf("record delivery: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				fresh = false
			}
		}
		if !fresh {
			return errReplay // rolls back the keys this one added
		}
		return nil
	})
	if errors.Is(err, errReplay) {
		return false, nil
	}
	return fresh, err
}

var errReplay = errors.New("replayed delivery")

// Undeliver forgets a delivery that could not be acted on, so the forge's
// redelivery is not taken for a replay.
func (s *SQL) Undeliver(ctx context.Context, keys []string) error {
	for _, k := range keys {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE key = $1`, k); err != nil {
			return err
		}
	}
	return nil
}

// PruneDeliveries forgets deliveries received before t: a forge
// redelivers within hours, not weeks.
func (s *SQL) PruneDeliveries(ctx context.Context, before time.Time) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE received_at < $1`, ms(before))
	return err
}

// ClaimTick inserts the tick's row; the server whose insert lands fires.
func (s *SQL) ClaimTick(ctx context.Context, repo, trigger string, tick, now time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO cron_fires (repo, trigger_key, tick, fired_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (repo, trigger_key, tick) DO NOTHING`, repo, trigger, ms(tick), ms(now))
	if err != nil {
		return false, fmt.Errorf("claim cron tick: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// SetTickRun records the run a tick started.
func (s *SQL) SetTickRun(ctx context.Context, repo, trigger string, tick time.Time, run int64) error {
	_, err := s.db.ExecContext(ctx, `UPDATE cron_fires SET run_id = $4 WHERE repo = $1 AND trigger_key = $2 AND tick = $3`, repo, trigger, ms(tick), run)
	return err
}

// UnclaimTick gives a tick that could not start its run back, so the
// next pass tries again.
func (s *SQL) UnclaimTick(ctx context.Context, repo, trigger string, tick time.Time) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM cron_fires WHERE repo = $1 AND trigger_key = $2 AND tick = $3`, repo, trigger, ms(tick))
	return err
}

// repoAPI turns a request into a repository record, sealing its secrets.
func (s *Server) repoRecord(req api.NewRepo) (repoRec, error) {
	r := repoRec{Repo: api.Repo{Name: req.Name, CloneURL: req.CloneURL, Forge: req.Forge, APIURL: strings.TrimSuffix(req.APIURL, "/"),
		ForgeRepo: req.ForgeRepo, DefaultBranch: req.DefaultBranch, Depth: req.Depth, Submodules: req.Submodules}}
	switch {
	case !repoName.MatchString(req.Name):
		return r, fmt.Errorf("repository name %q: want letters, digits, '.', '_', '-', with '/' between parts", req.Name)
	case req.CloneURL == "":
		return r, fmt.Errorf("repository %s needs a clone URL", req.Name)
	case req.Depth < 0:
		return r, fmt.Errorf("depth %d: want 0 (full history) or more", req.Depth)
	}
	switch req.Forge {
	case "", webhook.GitHub, webhook.GitLab, webhook.Gitea:
	default:
		return r, fmt.Errorf("forge %q: want github, gitlab or gitea", req.Forge)
	}
	if r.DefaultBranch == "" {
		r.DefaultBranch = "main"
	}
	if s.cfg.Secrets == nil && (req.Secret != "" || req.Token != "" || req.SSHKey != "") {
		return r, fmt.Errorf("the server has no secret key file to keep the repository's secrets")
	}
	seal := func(what, v string) []byte {
		if v == "" {
			return nil
		}
		return s.cfg.Secrets.Seal(r.Name, what, v)
	}
	r.Secret, r.Token, r.SSHKey = seal("webhook-secret", req.Secret), seal("token", req.Token), seal("ssh-key", req.SSHKey)
	return r, nil
}

// open opens one of a repository's sealed values; empty if it has none.
func (s *Server) openRepo(r *repoRec, what string) (string, error) {
	var sealed []byte
	switch what {
	case "webhook-secret":
		sealed = r.Secret
	case "token":
		sealed = r.Token
	case "ssh-key":
		sealed = r.SSHKey
	}
	if len(sealed) == 0 || s.cfg.Secrets == nil {
		return "", nil
	}
	return s.cfg.Secrets.Open(r.Name, what, sealed)
}

func (s *Server) repoStore(w http.ResponseWriter) RepoStore {
	rs, ok := s.st.(RepoStore)
	if !ok {
		reply(w, http.StatusNotImplemented, api.Error{Error: "this server's store keeps no repositories"})
	}
	return rs
}

func (s *Server) addRepo(w http.ResponseWriter, r *http.Request) {
	rs := s.repoStore(w)
	if rs == nil {
		return
	}
	var req api.NewRepo
	if !decode(w, r, &req) {
		return
	}
	rec, err := s.repoRecord(req)
	if err != nil {
		bad(w, "%v", err)
		return
	}
	if err := rs.PutRepo(r.Context(), rec, time.Now()); err != nil {
		s.fail(w, r, err)
		return
	}
	got, err := rs.Repo(r.Context(), rec.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.cfg.Triggers.MirrorDir != "" {
		// The schedules of the default branch hold from now on, without
		// waiting for its next push. A repository the server cannot
		// fetch yet is still registered; its first webhook says why.
		if err := s.readSchedules(r.Context(), got); err != nil {
			s.log.Warn("repository registered, its cron schedules not read", "repo", got.Name, "error", err)
		} else if got, err = rs.Repo(r.Context(), rec.Name); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	s.log.Info("repository registered", "repo", rec.Name, "url", redact.URL(rec.CloneURL), "forge", rec.Forge)
	reply(w, http.StatusCreated, s.repoView(got))
}

func (s *Server) listRepos(w http.ResponseWriter, r *http.Request) {
	rs := s.repoStore(w)
	if rs == nil {
		return
	}
	recs, err := rs.Repos(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []api.Repo{}
	for i := range recs {
		out = append(out, s.repoView(&recs[i]))
	}
	reply(w, http.StatusOK, out)
}

// repoView is a repository as the API shows it: credentials written into
// its clone URL are the server's and the agents' alone.
func (s *Server) repoView(r *repoRec) api.Repo {
	v := r.Repo
	v.CloneURL = redact.URL(v.CloneURL)
	if r.CronSource != "" {
		f, _ := jobs.Parse(".ci.hcl", []byte(r.CronSource))
		for _, t := range f.Workflow.Triggers {
			if t.Kind == jobs.OnCron {
				v.Schedules = append(v.Schedules, t.Schedule)
			}
		}
	}
	return v
}

// readSchedules reads the job file at the head of the repository's
// default branch and keeps it for the cron loop.
func (s *Server) readSchedules(ctx context.Context, rec *repoRec) error {
	mirror, err := s.mirror(ctx, rec, "")
	if err != nil {
		return err
	}
	head, err := git.Resolve(ctx, mirror, "refs/heads/"+rec.DefaultBranch)
	if err != nil {
		return err
	}
	src, err := git.ReadFile(ctx, mirror, head, jobFile)
	if err != nil && !errors.Is(err, git.ErrNoFile) {
		return err
	}
	return s.st.(RepoStore).SetCronSource(ctx, rec.Name, head, string(src), time.Now())
}
