package scheduler

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/units"
)

// errGone reports an attempt that is not (or no longer) leased to the
// agent asking: it must stop the job.
var errGone = errors.New("attempt is not leased to this agent")

// errConflict reports a request that the job's state does not allow.
var errConflict = errors.New("conflict")

// Planned is one job of a new run, as the plan gives it.
type Planned struct {
	Name    string
	Key     string
	Labels  []string
	Needs   []string
	Secrets []string
	// Concurrency is the job's concurrency group: at most one job of a
	// group of a repository runs at a time. Empty means none.
	Concurrency string
}

// RunOptions say how a new run is queued.
type RunOptions struct {
	MaxAttempts int
	// SupersedeRunning also cancels running jobs of older runs of the
	// same branch and job file, not only queued ones.
	SupersedeRunning bool
	// Reason, if set, records a run that cannot run (a job file with
	// errors): it is created failed, with no jobs.
	Reason string
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain values are marshalled here
	}
	return string(b)
}

func strList(s string) []string {
	var v []string
	json.Unmarshal([]byte(s), &v)
	return v
}

// CreateRun records a run and queues its jobs (those with needs wait for
// them). Queued and waiting jobs of the older runs it replaces are
// superseded (see supersede).
func (s *SQL) CreateRun(ctx context.Context, nr api.NewRun, plan []Planned, opts RunOptions, now time.Time) (int64, error) {
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		status, finished := api.Running, sql.NullInt64{}
		if opts.Reason != "" {
			status, finished = api.Errored, sql.NullInt64{Int64: ms(now), Valid: true}
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO runs (repo, branch, commit_sha, clone_url, file, source, trigger, env, untrusted, status, reason, created_at, finished_at, fetch_ref)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id`,
			nr.Repo, nr.Branch, nr.Commit, nr.CloneURL, nr.File, nr.Source, nr.Trigger, mustJSON(nr.Env), flag(nr.Untrusted),
			status, opts.Reason, ms(now), finished, nr.FetchRef).Scan(&id)
		if err != nil {
			return fmt.Errorf("insert run: %w", err)
		}
		var pref string
		err = tx.QueryRowContext(ctx, `SELECT agent_id FROM affinity WHERE repo = $1 AND branch = $2`, nr.Repo, nr.Branch).Scan(&pref)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		for _, p := range plan {
			st := api.Queued
			if len(p.Needs) > 0 {
				st = api.Waiting
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO jobs (run_id, name, key, labels, needs, secrets, status, max_attempts, preferred_agent, queued_at, concurrency)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
				id, p.Name, p.Key, mustJSON(sorted(p.Labels)), mustJSON(p.Needs), mustJSON(p.Secrets), st, opts.MaxAttempts, pref, ms(now), p.Concurrency)
			if err != nil {
				return fmt.Errorf("insert job %s: %w", p.Name, err)
			}
		}
		if opts.Reason != "" {
			return nil
		}
		if err := s.supersede(ctx, tx, id, nr, opts.SupersedeRunning, now); err != nil {
			return err
		}
		_, err = s.settle(ctx, tx, id, now)
		return err
	})
	return id, err
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if s == nil {
		s = []string{}
	}
	return s
}

// supersede ends the queued and waiting jobs of older runs that the new
// one replaces, and asks agents to cancel their running ones if running
// is set. A run replaces an older one of the same repository, branch and
// file, started the same way (push, cron, manual, ...), whose every job
// it has too: a manual `--job lint` or a cron run leaves the last push
// run alone, and a push run one with a job fewer.
func (s *SQL) supersede(ctx context.Context, tx *sql.Tx, run int64, nr api.NewRun, running bool, now time.Time) error {
	older := `run_id IN (SELECT r.id FROM runs r WHERE r.repo = $1 AND r.branch = $2 AND r.file = $3 AND r.id < $4
		AND r.finished_at IS NULL AND r.trigger = $5
		AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.run_id = r.id
			AND o.name NOT IN (SELECT n.name FROM jobs n WHERE n.run_id = $4)))`
	why := fmt.Sprintf("superseded by run %d", run)
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT run_id FROM jobs WHERE status IN ('queued', 'waiting', 'running') AND `+older,
		nr.Repo, nr.Branch, nr.File, run, nr.Trigger)
	if err != nil {
		return fmt.Errorf("supersede: %w", err)
	}
	runs, err := scanInts(rows)
	if err != nil {
		return err
	}
	slices.Sort(runs) // one order for every locker
	for _, r := range runs {
		if err := s.lockRun(ctx, tx, r); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE jobs SET status = 'superseded', reason = $6, finished_at = $7
		WHERE status IN ('queued', 'waiting') AND `+older, nr.Repo, nr.Branch, nr.File, run, nr.Trigger, why, ms(now)); err != nil {
		return fmt.Errorf("supersede: %w", err)
	}
	if running {
		if _, err := tx.ExecContext(ctx, `UPDATE jobs SET cancel_requested = 1, reason = $6
			WHERE status = 'running' AND `+older, nr.Repo, nr.Branch, nr.File, run, nr.Trigger, why); err != nil {
			return fmt.Errorf("supersede: %w", err)
		}
	}
	for _, r := range runs {
		if _, err := s.settle(ctx, tx, r, now); err != nil {
			return err
		}
	}
	return nil
}

func scanInts(rows *sql.Rows) ([]int64, error) {
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// lockRun takes run's lock for the rest of tx (PostgreSQL; SQLite has one
// writer at a time anyway). Whoever changes a run's jobs takes it first.
func (s *SQL) lockRun(ctx context.Context, tx *sql.Tx, run int64) error {
	var id int64
	if err := tx.QueryRowContext(ctx, `SELECT id FROM runs WHERE id = $1`+s.d.lockRun, run).Scan(&id); err != nil {
		return fmt.Errorf("lock run %d: %w", run, err)
	}
	return nil
}

type runJob struct {
	id     int64
	name   string
	needs  []string
	status string
}

// settle moves a run forward after a change: waiting jobs whose needs all
// succeeded are queued, those with a need that did not are skipped, and a
// run whose jobs have all ended gets its final status.
func (s *SQL) settle(ctx context.Context, tx *sql.Tx, run int64, now time.Time) (int, error) {
	if err := s.lockRun(ctx, tx, run); err != nil {
		return 0, err
	}
	counts, err := statusCounts(ctx, tx, run)
	if err != nil {
		return 0, err
	}
	queued := 0
	if counts[api.Waiting] > 0 {
		// Only a run with waiting jobs needs them one by one.
		if queued, err = s.release(ctx, tx, run, now); err != nil {
			return 0, err
		}
		if counts, err = statusCounts(ctx, tx, run); err != nil {
			return 0, err
		}
	}
	status := runStatus(counts)
	if status == api.Running {
		_, err = tx.ExecContext(ctx, `UPDATE runs SET status = 'running', finished_at = NULL WHERE id = $1 AND status <> 'running'`, run)
		return queued, err
	}
	_, err = tx.ExecContext(ctx, `UPDATE runs SET status = $1, finished_at = $2 WHERE id = $3 AND (finished_at IS NULL OR status <> $1)`, status, ms(now), run)
	return queued, err
}

func statusCounts(ctx context.Context, tx *sql.Tx, run int64) (map[string]int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT status, COUNT(*) FROM jobs WHERE run_id = $1 GROUP BY status`, run)
	if err != nil {
		return nil, fmt.Errorf("settle run %d: %w", run, err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		counts[st] = n
	}
	return counts, rows.Err()
}

// release queues the waiting jobs of run whose needs all succeeded and
// skips those with a need that did not, until nothing changes. It returns
// how many it queued.
func (s *SQL) release(ctx context.Context, tx *sql.Tx, run int64, now time.Time) (int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, name, needs, status FROM jobs WHERE run_id = $1 ORDER BY id`, run)
	if err != nil {
		return 0, fmt.Errorf("settle run %d: %w", run, err)
	}
	var js []*runJob
	byName := map[string]*runJob{}
	for rows.Next() {
		j := &runJob{}
		var needs string
		if err := rows.Scan(&j.id, &j.name, &needs, &j.status); err != nil {
			rows.Close()
			return 0, err
		}
		j.needs = strList(needs)
		js = append(js, j)
		byName[j.name] = j
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	queued := 0
	for changed := true; changed; {
		changed = false
		for _, j := range js {
			if j.status != api.Waiting {
				continue
			}
			st, reason := needsState(j, byName)
			if st == "" {
				continue
			}
			j.status, changed = st, true
			q := `UPDATE jobs SET status = $1, reason = $2, finished_at = $3 WHERE id = $4`
			if st == api.Queued {
				q = `UPDATE jobs SET status = $1, reason = $2, queued_at = $3 WHERE id = $4`
				queued++
			}
			if _, err := tx.ExecContext(ctx, q, st, reason, ms(now), j.id); err != nil {
				return 0, err
			}
		}
	}
	return queued, nil
}

// needsState is what a waiting job becomes given its needs: queued, skipped
// (with why), or "" to keep waiting.
func needsState(j *runJob, byName map[string]*runJob) (string, string) {
	for _, n := range j.needs {
		need := byName[n]
		if need == nil {
			return api.Skipped, fmt.Sprintf("needs %s, which is not in this run", n)
		}
		if api.Final(need.status) && need.status != api.Succeeded {
			return api.Skipped, fmt.Sprintf("needs %s, which ended %s", n, need.status)
		}
	}
	for _, n := range j.needs {
		if byName[n].status != api.Succeeded {
			return "", ""
		}
	}
	return api.Queued, ""
}

// runStatus is a run's status from its jobs': running until every job
// ended, then the worst outcome.
func runStatus(counts map[string]int) string {
	worst := api.Succeeded
	rank := map[string]int{api.Succeeded: 0, api.Skipped: 1, api.Superseded: 2, api.Cancelled: 3, api.Failed: 4, api.Errored: 5}
	for st, n := range counts {
		if n == 0 {
			continue
		}
		if !api.Final(st) {
			return api.Running
		}
		if rank[st] > rank[worst] {
			worst = st
		}
	}
	if worst == api.Skipped {
		worst = api.Succeeded
	}
	return worst
}

// agentRec is an agent's row.
type agentRec struct {
	ID       string
	Name     string
	Labels   []string
	Slots    int
	Version  string
	LastSeen time.Time
	Gone     bool
	// RegToken names the registration token the agent joined with ("" for
	// the server's --registration-token); Repos are the globs of the
	// repositories whose jobs it may lease.
	RegToken string
	Repos    []string
}

// RegisterAgent records a new agent with its token's hash.
func (s *SQL) RegisterAgent(ctx context.Context, a agentRec, tokenHash string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO agents (id, name, token_hash, labels, slots, version, last_seen, created_at, reg_token, repos)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9)`, a.ID, a.Name, tokenHash, mustJSON(sorted(a.Labels)), a.Slots, a.Version, ms(now),
		a.RegToken, mustJSON(a.Repos))
	if err != nil {
		return fmt.Errorf("register agent %s: %w", a.Name, err)
	}
	return nil
}

// AgentByToken finds the live agent a token hash belongs to.
func (s *SQL) AgentByToken(ctx context.Context, tokenHash string) (*agentRec, error) {
	var a agentRec
	var labels, repos string
	var seen int64
	err := s.db.QueryRowContext(ctx, `SELECT id, name, labels, slots, version, last_seen, reg_token, repos FROM agents WHERE token_hash = $1 AND gone = 0`, tokenHash).
		Scan(&a.ID, &a.Name, &labels, &a.Slots, &a.Version, &seen, &a.RegToken, &repos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	a.Labels, a.LastSeen, a.Repos = strList(labels), fromMS(seen), strList(repos)
	return &a, nil
}

// Deregister marks an agent gone and requeues what it was running.
func (s *SQL) Deregister(ctx context.Context, id string, now time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE agents SET gone = 1, last_seen = $2 WHERE id = $1`, id, ms(now)); err != nil {
			return err
		}
		// Its leases end now rather than at their timeout.
		_, err := tx.ExecContext(ctx, `UPDATE jobs SET lease_expires = 0 WHERE agent_id = $1 AND status = 'running'`, id)
		return err
	})
}

// leaseRec is what a lease hands out, read from the job's and run's rows.
type leaseRec struct {
	api.Lease
	secrets []string
	// runSecrets are the secrets any job of the run names: their values
	// are masked in this job's output too (api.Lease.Mask).
	runSecrets []string
	// fetchRef is the ref the server fetched the run's commit by, if it
	// recorded one (see api.NewRun.FetchRef).
	fetchRef string
}

// LeaseParams tune the assignment.
type LeaseParams struct {
	Timeout      time.Duration
	AffinityWait time.Duration
}

// Lease gives agent a the oldest queued job it may run: its labels cover
// the job's, it has a free slot, and the job either prefers it, prefers
// nobody, prefers an agent that is gone or offline, or has waited
// longer than the affinity wait. It returns nil if there is none.
func (s *SQL) Lease(ctx context.Context, a *agentRec, p LeaseParams, now time.Time) (*leaseRec, error) {
	var l *leaseRec
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE agents SET last_seen = $2 WHERE id = $1`, a.ID, ms(now)); err != nil {
			return err
		}
		var busy int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs WHERE agent_id = $1 AND status = 'running'`, a.ID).Scan(&busy); err != nil {
			return err
		}
		if busy >= a.Slots {
			return nil
		}
		id, err := s.pick(ctx, tx, a, p, now)
		if err != nil || id == 0 {
			return err
		}
		l, err = s.leaseOf(ctx, tx, id)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO affinity (repo, branch, agent_id) VALUES ($1, $2, $3)
			ON CONFLICT (repo, branch) DO UPDATE SET agent_id = excluded.agent_id`, l.Repo, l.Branch, a.ID)
		return err
	})
	return l, err
}

// pick claims the job for a, returning its id, or 0.
func (s *SQL) pick(ctx context.Context, tx *sql.Tx, a *agentRec, p LeaseParams, now time.Time) (int64, error) {
	const page = 50
	offline := ms(now.Add(-p.Timeout))
	waited := ms(now.Add(-p.AffinityWait))
	for after := int64(0); ; {
		rows, err := tx.QueryContext(ctx, `SELECT j.id, j.labels, j.preferred_agent, j.queued_at, COALESCE(pa.last_seen, 0), COALESCE(pa.gone, 1), r.repo, j.concurrency
			FROM jobs j JOIN runs r ON r.id = j.run_id LEFT JOIN agents pa ON pa.id = j.preferred_agent
			WHERE j.status = 'queued' AND j.id > $1 ORDER BY j.id LIMIT `+fmt.Sprint(page), after)
		if err != nil {
			return 0, fmt.Errorf("queued jobs: %w", err)
		}
		var cands []candidate
		n := 0
		for rows.Next() {
			var id, queued, seen, gone int64
			var labels, pref, repo, group string
			if err := rows.Scan(&id, &labels, &pref, &queued, &seen, &gone, &repo, &group); err != nil {
				rows.Close()
				return 0, err
			}
			n, after = n+1, id
			if !covers(a.Labels, strList(labels)) || !repoAllowed(a.Repos, repo) {
				continue // not for its labels, or a repository its token does not admit
			}
			if pref == "" || pref == a.ID || queued <= waited || gone == 1 || seen < offline {
				cands = append(cands, candidate{id: id, repo: repo, group: group})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, err
		}
		for _, c := range cands {
			ok, err := s.claim(ctx, tx, c, a, p, now)
			if err != nil || ok {
				return c.id, err
			}
		}
		if n < page {
			return 0, nil
		}
	}
}

// covers reports whether have includes every label of want.
func covers(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func (s *SQL) leaseOf(ctx context.Context, tx *sql.Tx, id int64) (*leaseRec, error) {
	l := &leaseRec{}
	var env, needs, secrets string
	var untrusted int
	var run int64
	err := tx.QueryRowContext(ctx, `SELECT j.attempt, j.name, j.needs, j.secrets, r.id, r.repo, r.branch, r.commit_sha, r.clone_url, r.file, r.source, r.env, r.untrusted, r.fetch_ref
		FROM jobs j JOIN runs r ON r.id = j.run_id WHERE j.id = $1`, id).
		Scan(&l.Attempt.Attempt, &l.Job, &needs, &secrets, &run, &l.Repo, &l.Branch, &l.Commit, &l.CloneURL, &l.File, &l.Source, &env, &untrusted, &l.fetchRef)
	if err != nil {
		return nil, fmt.Errorf("lease job %d: %w", id, err)
	}
	l.Attempt.Job, l.Run, l.Untrusted, l.secrets = id, fmt.Sprint(run), untrusted == 1, strList(secrets)
	json.Unmarshal([]byte(env), &l.Env)
	for _, n := range strList(needs) {
		var need api.Need
		err := tx.QueryRowContext(ctx, `SELECT id, key, attempt FROM jobs WHERE run_id = $1 AND name = $2`, run, n).Scan(&need.ID, &need.Key, &need.Attempt)
		if err != nil {
			return nil, fmt.Errorf("lease job %d: need %s: %w", id, n, err)
		}
		l.Needs = append(l.Needs, need)
	}
	rows, err := tx.QueryContext(ctx, `SELECT secrets FROM jobs WHERE run_id = $1`, run)
	if err != nil {
		return nil, fmt.Errorf("lease job %d: run secrets: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var names string
		if err := rows.Scan(&names); err != nil {
			return nil, fmt.Errorf("lease job %d: run secrets: %w", id, err)
		}
		for _, n := range strList(names) {
			if !contains(l.runSecrets, n) {
				l.runSecrets = append(l.runSecrets, n)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lease job %d: run secrets: %w", id, err)
	}
	return l, nil
}

// Heartbeat renews the leases agent holds on running, and returns those
// it must kill: leased to another agent now, ended, or cancelled.
func (s *SQL) Heartbeat(ctx context.Context, agent string, running []api.Attempt, timeout time.Duration, now time.Time) ([]api.Attempt, error) {
	var kill []api.Attempt
	err := s.tx(ctx, func(tx *sql.Tx) error {
		kill = kill[:0]
		if _, err := tx.ExecContext(ctx, `UPDATE agents SET last_seen = $2 WHERE id = $1`, agent, ms(now)); err != nil {
			return err
		}
		for _, a := range running {
			res, err := tx.ExecContext(ctx, `UPDATE jobs SET lease_expires = $1
				WHERE id = $2 AND attempt = $3 AND agent_id = $4 AND status = 'running' AND cancel_requested = 0`,
				ms(now.Add(timeout)), a.Job, a.Attempt, agent)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				kill = append(kill, a)
			}
		}
		return nil
	})
	return kill, err
}

// holds checks, inside tx, that agent holds the lease of attempt a.
func holds(ctx context.Context, tx *sql.Tx, agent string, a api.Attempt) (int64, error) {
	var run int64
	err := tx.QueryRowContext(ctx, `SELECT run_id FROM jobs WHERE id = $1 AND attempt = $2 AND agent_id = $3 AND status = 'running'`,
		a.Job, a.Attempt, agent).Scan(&run)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, errGone
	}
	return run, err
}

// CheckLease reports errGone unless agent holds the lease of a.
func (s *SQL) CheckLease(ctx context.Context, agent string, a api.Attempt) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := holds(ctx, tx, agent, a)
		return err
	})
}

// AppendLog stores data at byte offset off of attempt a's log, from what
// the store holds on, and returns the log's size. An offset past the size
// is a gap: nothing is stored and errConflict returned with the size. A
// chunk that would take the log past q is not stored: errQuota.
func (s *SQL) AppendLog(ctx context.Context, agent string, a api.Attempt, off int64, data []byte, q logQuota) (int64, error) {
	var size int64
	var over error
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := holds(ctx, tx, agent, a); err != nil {
			return err
		}
		var out int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(off + size), 0), COALESCE(SUM(out_bytes), 0) FROM log_chunks WHERE job_id = $1 AND attempt = $2`,
			a.Job, a.Attempt).Scan(&size, &out); err != nil {
			return err
		}
		if off > size {
			return errConflict
		}
		if end := off + int64(len(data)); end > size {
			tail := data[size-off:]
			n := outputBytes(tail)
			switch {
			case out+n > q.Output:
				over = fmt.Errorf("%w: %s, and %s for jobrun's own lines", errQuota,
					quotaText(fmt.Sprintf("the log of %s would hold %d bytes of output", a, out+n), q.Output-logAllowance), units.FormatSize(logAllowance))
			case end > q.Stored:
				over = fmt.Errorf("%w: %s", errQuota, quotaText(fmt.Sprintf("the log of %s would be %d bytes stored", a, end), q.Stored))
			}
			if over != nil {
				return closeLog(ctx, tx, a, size, out, q, over)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO log_chunks (job_id, attempt, off, size, data, out_bytes) VALUES ($1, $2, $3, $4, $5, $6)`,
				a.Job, a.Attempt, size, len(tail), tail, n); err != nil {
				return err
			}
			size = end
		}
		return nil
	})
	if err == nil && over != nil {
		err = over
	}
	return size, err
}

// closeLog ends a log that reached its quota with a line saying so, once:
// the line's output is counted as what takes the log just past the quota,
// which later chunks then find it is.
func closeLog(ctx context.Context, tx *sql.Tx, a api.Attempt, size, out int64, q logQuota, why error) error {
	if out > q.Output {
		return nil // closed before
	}
	line, err := json.Marshal(api.LogLine{Time: time.Now(), Kind: "notice", Text: "log cut: " + why.Error() + "; later output is not kept"})
	if err != nil {
		return err
	}
	line = append(line, '\n')
	var last []byte
	err = tx.QueryRowContext(ctx, `SELECT substr(data, CAST(size AS INTEGER), 1) FROM log_chunks WHERE job_id = $1 AND attempt = $2 AND off + size = $3`,
		a.Job, a.Attempt, size).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if len(last) == 1 && last[0] != '\n' {
		line = append([]byte{'\n'}, line...) // the agent's chunk ended inside a line
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO log_chunks (job_id, attempt, off, size, data, out_bytes) VALUES ($1, $2, $3, $4, $5, $6)`,
		a.Job, a.Attempt, size, len(line), line, q.Output-out+1)
	return err
}

// ReserveArtifact records that agent uploads file path of size bytes for
// attempt a, which it must hold; errQuota if that takes the attempt past
// lim's file count or bytes. A file uploaded again replaces its record.
func (s *SQL) ReserveArtifact(ctx context.Context, agent string, a api.Attempt, path string, size int64, lim Limits) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := holds(ctx, tx, agent, a); err != nil {
			return err
		}
		var files, total int64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(size), 0) FROM artifact_files WHERE job_id = $1 AND attempt = $2 AND path <> $3`,
			a.Job, a.Attempt, path).Scan(&files, &total); err != nil {
			return err
		}
		switch {
		case files+1 > int64(lim.ArtifactFiles):
			return fmt.Errorf("%w: %s would store more than %d artifact files", errQuota, a, lim.ArtifactFiles)
		case total+size > lim.ArtifactBytes:
			return fmt.Errorf("%w: %s", errQuota, quotaText(fmt.Sprintf("%s of %d bytes takes the artifacts of %s to %d bytes", path, size, a, total+size), lim.ArtifactBytes))
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO artifact_files (job_id, attempt, path, size) VALUES ($1, $2, $3, $4)
			ON CONFLICT (job_id, attempt, path) DO UPDATE SET size = excluded.size`, a.Job, a.Attempt, path, size)
		return err
	})
}

// ForgetArtifacts drops the records of attempt a's uploads: its upload
// was aborted and the store's files removed.
func (s *SQL) ForgetArtifacts(ctx context.Context, a api.Attempt) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM artifact_files WHERE job_id = $1 AND attempt = $2`, a.Job, a.Attempt)
	return err
}

// UploadedArtifacts returns the files recorded for attempt a with their
// sizes.
func (s *SQL) UploadedArtifacts(ctx context.Context, a api.Attempt) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT path, size FROM artifact_files WHERE job_id = $1 AND attempt = $2`, a.Job, a.Attempt)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var p string
		var n int64
		if err := rows.Scan(&p, &n); err != nil {
			return nil, err
		}
		out[p] = n
	}
	return out, rows.Err()
}

// Log returns at most max bytes of attempt a's log from byte offset from
// on; nothing at its end. Only the bytes asked for leave the database,
// so a read costs its page, not the log.
func (s *SQL) Log(ctx context.Context, a api.Attempt, from, max int64) ([]byte, error) {
	if from < 0 || max <= 0 {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT off, substr(data, CAST(CASE WHEN off < $3 THEN $3 - off + 1 ELSE 1 END AS INTEGER), CAST($4 AS INTEGER))
		FROM log_chunks WHERE job_id = $1 AND attempt = $2 AND off + size > $3 AND off < $3 + $4 ORDER BY off`,
		a.Job, a.Attempt, from, max)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []byte
	for rows.Next() {
		var off int64
		var data []byte
		if err := rows.Scan(&off, &data); err != nil {
			return nil, err
		}
		out = append(out, data[:min(int64(len(data)), max-int64(len(out)))]...)
	}
	return out, rows.Err()
}

// LogSize returns the size of attempt a's log.
func (s *SQL) LogSize(ctx context.Context, a api.Attempt) (int64, error) {
	var size int64
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(off + size), 0) FROM log_chunks WHERE job_id = $1 AND attempt = $2`,
		a.Job, a.Attempt).Scan(&size)
	return size, err
}

// Step records a step's state.
func (s *SQL) Step(ctx context.Context, agent string, a api.Attempt, st api.Step) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := holds(ctx, tx, agent, a); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO steps (job_id, attempt, idx, name, status, started_at, duration_ms, exit, allowed_failure)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (job_id, attempt, idx) DO UPDATE SET status = excluded.status, duration_ms = excluded.duration_ms,
				exit = excluded.exit, allowed_failure = excluded.allowed_failure`,
			a.Job, a.Attempt, st.Index, st.Name, st.Status, ms(st.Started), time.Duration(st.Duration).Milliseconds(), st.Exit, flag(st.AllowedFailure))
		return err
	})
}

// Finish closes attempt a with its result and moves its run forward,
// returning how many jobs that queued. A repeated Finish of the same
// attempt by the same agent succeeds again.
func (s *SQL) Finish(ctx context.Context, agent string, a api.Attempt, r api.Result, now time.Time) (int, error) {
	queued := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		run, err := holds(ctx, tx, agent, a)
		if errors.Is(err, errGone) {
			var n int
			tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs WHERE id = $1 AND attempt = $2 AND agent_id = $3 AND status = $4`,
				a.Job, a.Attempt, agent, r.Status).Scan(&n)
			if n == 1 {
				return nil // a retry of a Finish that got through
			}
		}
		if err != nil {
			return err
		}
		if !api.Final(r.Status) {
			return fmt.Errorf("%w: status %q is not final", errConflict, r.Status)
		}
		if err := s.lockRun(ctx, tx, run); err != nil {
			return err
		}
		// The lease is checked again under the run's lock: another server
		// may have taken it back in between.
		res, err := tx.ExecContext(ctx, `UPDATE jobs SET status = $1, reason = $2, result = $3, finished_at = $4, cancel_requested = 0
			WHERE id = $5 AND attempt = $6 AND agent_id = $7 AND status = 'running'`,
			r.Status, r.Reason, mustJSON(r), ms(now), a.Job, a.Attempt, agent)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errGone
		}
		if queued, err = s.settle(ctx, tx, run, now); err != nil {
			return err
		}
		freed, err := groupFreed(ctx, tx, a.Job)
		queued += freed
		return err
	})
	return queued, err
}

// Expire ends the leases that were not renewed in time: the job is queued
// again, or failed once its attempts are used up, or cancelled if a
// cancel was waiting for the agent. It returns how many jobs it queued.
func (s *SQL) Expire(ctx context.Context, now time.Time) (int, error) {
	requeued := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT j.id, j.run_id, j.attempt, j.max_attempts, j.cancel_requested, a.name
			FROM jobs j LEFT JOIN agents a ON a.id = j.agent_id WHERE j.status = 'running' AND j.lease_expires < $1`, ms(now))
		if err != nil {
			return err
		}
		type expired struct {
			id, run      int64
			attempt, max int
			cancel       int
			agent        sql.NullString
		}
		var es []expired
		for rows.Next() {
			var e expired
			if err := rows.Scan(&e.id, &e.run, &e.attempt, &e.max, &e.cancel, &e.agent); err != nil {
				rows.Close()
				return err
			}
			es = append(es, e)
		}
		rows.Close()
		for _, e := range es {
			if err := s.lockRun(ctx, tx, e.run); err != nil {
				return err
			}
			lost := fmt.Sprintf("agent %s stopped renewing the lease of attempt %d", e.agent.String, e.attempt)
			q := `UPDATE jobs SET status = $1, reason = $2, finished_at = $3 WHERE id = $4 AND attempt = $5 AND status = 'running'`
			st, why := api.Failed, fmt.Sprintf("%s; gave up after %d attempts", lost, e.attempt)
			switch {
			case e.cancel == 1:
				st, why = api.Cancelled, "cancelled; "+lost
			case e.attempt < e.max:
				st, why = api.Queued, lost+"; queued again"
				q = `UPDATE jobs SET status = $1, reason = $2, queued_at = $3, agent_id = '', preferred_agent = '' WHERE id = $4 AND attempt = $5 AND status = 'running'`
				requeued++
			}
			if _, err := tx.ExecContext(ctx, q, st, why, ms(now), e.id, e.attempt); err != nil {
				return err
			}
			n, err := s.settle(ctx, tx, e.run, now)
			if err != nil {
				return err
			}
			requeued += n
		}
		return nil
	})
	return requeued, err
}

// Cancel ends a job that has not started, or asks its agent to stop it.
func (s *SQL) Cancel(ctx context.Context, job int64, why string, now time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var run int64
		var status string
		err := tx.QueryRowContext(ctx, `SELECT run_id, status FROM jobs WHERE id = $1`, job).Scan(&run, &status)
		if errors.Is(err, sql.ErrNoRows) {
			return errNotFound
		}
		if err != nil {
			return err
		}
		if err := s.lockRun(ctx, tx, run); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT status FROM jobs WHERE id = $1`, job).Scan(&status); err != nil {
			return err
		}
		switch status {
		case api.Queued, api.Waiting:
			if _, err := tx.ExecContext(ctx, `UPDATE jobs SET status = 'cancelled', reason = $2, finished_at = $3 WHERE id = $1`, job, why, ms(now)); err != nil {
				return err
			}
			_, err := s.settle(ctx, tx, run, now)
			return err
		case api.Running:
			_, err := tx.ExecContext(ctx, `UPDATE jobs SET cancel_requested = 1, reason = $2 WHERE id = $1`, job, why)
			return err
		}
		return fmt.Errorf("%w: job %d has ended (%s)", errConflict, job, status)
	})
}

// Retry queues an ended job again; its next lease is a new attempt.
func (s *SQL) Retry(ctx context.Context, job int64, budget int, now time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var run int64
		var status string
		var attempt int
		err := tx.QueryRowContext(ctx, `SELECT run_id, status, attempt FROM jobs WHERE id = $1`, job).Scan(&run, &status, &attempt)
		if errors.Is(err, sql.ErrNoRows) {
			return errNotFound
		}
		if err != nil {
			return err
		}
		if err := s.lockRun(ctx, tx, run); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT status, attempt FROM jobs WHERE id = $1`, job).Scan(&status, &attempt); err != nil {
			return err
		}
		if !api.Final(status) || status == api.Skipped {
			return fmt.Errorf("%w: job %d is %s", errConflict, job, status)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE jobs SET status = 'queued', reason = '', result = '', queued_at = $2, finished_at = NULL,
			agent_id = '', cancel_requested = 0, max_attempts = $3 WHERE id = $1`, job, ms(now), attempt+budget); err != nil {
			return err
		}
		// Jobs skipped because this one failed wait for it again.
		if _, err := tx.ExecContext(ctx, `UPDATE jobs SET status = 'waiting', reason = '', finished_at = NULL
			WHERE run_id = $1 AND status = 'skipped'`, run); err != nil {
			return err
		}
		_, err = s.settle(ctx, tx, run, now)
		return err
	})
}
