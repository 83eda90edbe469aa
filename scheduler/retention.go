package scheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jobrun/jobrun/artifacts"
)

// Retention configures the sweeper (issue #21). Every server runs it; one
// server a period does a pass (the sweeps row in the store).
type Retention struct {
	// Age is how long a finished run is kept with its jobs, steps, logs,
	// artifacts and commit status; 0 keeps runs forever (expired
	// artifacts are still removed).
	Age time.Duration
	// KeepRuns is how many of the newest runs of every repository and
	// branch stay whatever their age.
	KeepRuns int
	// Every is how often a pass runs (default Age/4, at most an hour, at
	// least a second).
	Every time.Duration
}

func (r Retention) every() time.Duration {
	if r.Every > 0 {
		return r.Every
	}
	e := time.Hour
	if r.Age > 0 {
		e = min(e, r.Age/4)
	}
	return max(e, time.Second)
}

// sweepBatch is how many runs one transaction removes.
const sweepBatch = 50

// RetentionStore is what the sweeper needs of a store; *SQL implements it.
type RetentionStore interface {
	// ClaimSweep moves the named pass's next time to next if it is due at
	// now, and says whether this caller did (and so does the pass).
	ClaimSweep(ctx context.Context, name, holder string, now, next time.Time) (bool, error)
	// ExpiredRuns lists up to limit finished runs created before cutoff
	// that are not among the keep newest of their repository and branch.
	ExpiredRuns(ctx context.Context, cutoff time.Time, keep, limit int) ([]sweptRun, error)
	// DeleteRuns removes the runs (those still finished) with their
	// jobs, steps, logs, artifact records and commit statuses, leaving
	// tombstones; it returns how many it removed.
	DeleteRuns(ctx context.Context, ids []int64, now time.Time) (int, error)
	// PruneCronFires forgets the cron ticks before before.
	PruneCronFires(ctx context.Context, before time.Time) error
	// Reclaim gives the space of deleted rows back to the filesystem
	// where the database does not do it itself (SQLite).
	Reclaim(ctx context.Context) error
}

// sweptRun is a run the sweeper removes, with where its artifacts are.
type sweptRun struct {
	ID   int64
	Repo string
	Jobs []sweptJob
}

type sweptJob struct {
	Key      string
	Attempts int
}

// errSwept reports a run or job removed by retention. It is also
// errNotFound, for callers that only ask whether a thing exists.
var errSwept = errors.New("removed by retention")

// sweptError says what was removed and when.
type sweptError struct {
	what string
	at   time.Time
}

func (e sweptError) Error() string {
	return fmt.Sprintf("%s was removed on %s by the server's retention (--retain, --retain-runs)", e.what, e.at.Format(time.RFC3339))
}

func (e sweptError) Is(target error) bool { return target == errSwept || target == errNotFound }

// sweepLoop runs retention passes until ctx ends.
func (s *Server) sweepLoop(ctx context.Context) {
	rs, ok := s.st.(RetentionStore)
	if !ok {
		return
	}
	holder := NewToken()[:12]
	every := s.cfg.Retention.every()
	for {
		now := time.Now()
		won, err := rs.ClaimSweep(ctx, "retention", holder, now, now.Add(every))
		if err != nil && ctx.Err() == nil {
			s.log.Error("retention: claim the pass", "error", err)
		}
		if won {
			if _, err := s.sweep(ctx, now); err != nil && ctx.Err() == nil {
				s.log.Error("retention", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// sweepResult counts what a pass removed.
type sweepResult struct {
	Artifacts int // expired (or abandoned) attempts' artifacts
	Runs      int
}

// sweep does one retention pass at now: expired artifacts, then runs
// older than the retention with their artifacts, then the space.
func (s *Server) sweep(ctx context.Context, now time.Time) (sweepResult, error) {
	var res sweepResult
	var errs []error
	if s.cfg.Artifacts != nil {
		refs, err := s.cfg.Artifacts.Sweep(ctx, now)
		res.Artifacts = len(refs)
		if err != nil {
			errs = append(errs, fmt.Errorf("expired artifacts: %w", err))
		}
	}
	rs := s.st.(RetentionStore)
	if s.cfg.Retention.Age > 0 {
		cutoff := now.Add(-s.cfg.Retention.Age)
		// Runs this pass could not remove the artifacts of stay until
		// the next; the batches look past them.
		failed := map[int64]bool{}
		for ctx.Err() == nil {
			runs, err := rs.ExpiredRuns(ctx, cutoff, s.cfg.Retention.KeepRuns, sweepBatch+len(failed))
			if err != nil {
				errs = append(errs, fmt.Errorf("list expired runs: %w", err))
				break
			}
			var ids []int64
			for _, r := range runs {
				if failed[r.ID] {
					continue
				}
				if err := s.removeArtifacts(ctx, r); err != nil {
					failed[r.ID] = true
					errs = append(errs, err)
					continue
				}
				ids = append(ids, r.ID)
			}
			if len(ids) == 0 {
				break
			}
			n, err := rs.DeleteRuns(ctx, ids, now)
			res.Runs += n
			if err != nil {
				errs = append(errs, fmt.Errorf("delete runs: %w", err))
				break
			}
		}
	}
	if s.cfg.Retention.Age > 0 {
		// A tick older than the catch-up window is never claimed again.
		before := now.Add(-max(s.cfg.Retention.Age, s.cfg.Triggers.CronWindow))
		if err := rs.PruneCronFires(ctx, before); err != nil {
			errs = append(errs, fmt.Errorf("prune cron ticks: %w", err))
		}
	}
	if res.Runs > 0 {
		if err := rs.Reclaim(ctx); err != nil {
			errs = append(errs, fmt.Errorf("reclaim space: %w", err))
		}
	}
	if res.Runs > 0 || res.Artifacts > 0 {
		s.log.Info("retention", "runs", res.Runs, "artifacts", res.Artifacts)
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("and %d more errors", len(errs)-10))
	}
	return res, errors.Join(errs...)
}

// removeArtifacts removes every attempt of r's jobs from the store.
func (s *Server) removeArtifacts(ctx context.Context, r sweptRun) error {
	if s.cfg.Artifacts == nil {
		return nil
	}
	var errs []error
	for _, j := range r.Jobs {
		for n := 1; n <= j.Attempts; n++ {
			ref := artifacts.Ref{Repo: r.Repo, Run: strconv.FormatInt(r.ID, 10), Job: j.Key, Attempt: n}
			if ref.Validate() != nil {
				continue // nothing can have been stored under it
			}
			if err := s.cfg.Artifacts.Abort(ctx, ref); err != nil {
				errs = append(errs, fmt.Errorf("run %d: %w", r.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ClaimSweep implements RetentionStore.
func (s *SQL) ClaimSweep(ctx context.Context, name, holder string, now, next time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE sweeps SET next_at = $1, holder = $2 WHERE name = $3 AND next_at <= $4`,
		ms(next), holder, name, ms(now))
	if err != nil {
		return false, fmt.Errorf("claim %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// ExpiredRuns implements RetentionStore.
func (s *SQL) ExpiredRuns(ctx context.Context, cutoff time.Time, keep, limit int) ([]sweptRun, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, repo FROM (
			SELECT id, repo, created_at, finished_at,
				ROW_NUMBER() OVER (PARTITION BY repo, branch ORDER BY id DESC) AS n
			FROM runs) r
		WHERE n > $1 AND created_at < $2 AND finished_at IS NOT NULL ORDER BY id LIMIT $3`, keep, ms(cutoff), limit)
	if err != nil {
		return nil, err
	}
	var runs []sweptRun
	for rows.Next() {
		var r sweptRun
		if err := rows.Scan(&r.ID, &r.Repo); err != nil {
			rows.Close()
			return nil, err
		}
		runs = append(runs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range runs {
		jr, err := s.db.QueryContext(ctx, `SELECT key, attempt FROM jobs WHERE run_id = $1 ORDER BY id`, runs[i].ID)
		if err != nil {
			return nil, err
		}
		for jr.Next() {
			var j sweptJob
			if err := jr.Scan(&j.Key, &j.Attempts); err != nil {
				jr.Close()
				return nil, err
			}
			runs[i].Jobs = append(runs[i].Jobs, j)
		}
		jr.Close()
		if err := jr.Err(); err != nil {
			return nil, err
		}
	}
	return runs, nil
}

// DeleteRuns implements RetentionStore.
func (s *SQL) DeleteRuns(ctx context.Context, ids []int64, now time.Time) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	var n int
	err := s.tx(ctx, func(tx *sql.Tx) error {
		// Only runs still finished: a retried job reopens its run.
		args := make([]any, len(ids))
		in := make([]string, len(ids))
		for i, id := range ids {
			args[i], in[i] = id, "$"+strconv.Itoa(i+1)
		}
		rows, err := tx.QueryContext(ctx, `SELECT id FROM runs WHERE id IN (`+strings.Join(in, ", ")+`) AND finished_at IS NOT NULL ORDER BY id`+s.d.lockRun, args...)
		if err != nil {
			return err
		}
		var keep []any
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			keep = append(keep, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(keep) == 0 {
			return nil
		}
		n = len(keep)
		// marks returns the placeholders $from.. for keep.
		marks := func(from int) string {
			m := make([]string, len(keep))
			for i := range keep {
				m[i] = "$" + strconv.Itoa(i+from)
			}
			return "(" + strings.Join(m, ", ") + ")"
		}
		set := marks(1)
		jobsOf := "(SELECT id FROM jobs WHERE run_id IN " + set + ")"
		withNow := append([]any{ms(now)}, keep...)
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO swept_runs (id, repo, branch, swept_at) SELECT id, repo, branch, CAST($1 AS BIGINT) FROM runs WHERE id IN ` + marks(2), withNow},
			{`INSERT INTO swept_jobs (id, run_id, swept_at) SELECT id, run_id, CAST($1 AS BIGINT) FROM jobs WHERE run_id IN ` + marks(2), withNow},
			{`DELETE FROM log_chunks WHERE job_id IN ` + jobsOf, keep},
			{`DELETE FROM steps WHERE job_id IN ` + jobsOf, keep},
			{`DELETE FROM artifact_files WHERE job_id IN ` + jobsOf, keep},
			{`DELETE FROM jobs WHERE run_id IN ` + set, keep},
			{`DELETE FROM commit_statuses WHERE run_id IN ` + set, keep},
			{`DELETE FROM runs WHERE id IN ` + set, keep},
		} {
			if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
				return fmt.Errorf("%s: %w", firstLine(q.sql), err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// PruneCronFires implements RetentionStore.
func (s *SQL) PruneCronFires(ctx context.Context, before time.Time) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM cron_fires WHERE tick < $1`, ms(before))
	return err
}

// Reclaim implements RetentionStore: under SQLite, free pages go back to
// the filesystem; under PostgreSQL the swept tables are vacuumed now, so
// new rows reuse the space rather than wait for autovacuum (a plain
// VACUUM takes no lock writers wait on).
func (s *SQL) Reclaim(ctx context.Context) error {
	if s.d.name != "sqlite" {
		_, err := s.db.ExecContext(ctx, `VACUUM (SKIP_LOCKED) runs, jobs, steps, log_chunks, artifact_files, commit_statuses`)
		return err
	}
	var mode int
	if err := s.db.QueryRowContext(ctx, `PRAGMA auto_vacuum`).Scan(&mode); err != nil {
		return err
	}
	if mode == 2 { // incremental: databases made since migration 006
		if _, err := s.db.ExecContext(ctx, `PRAGMA incremental_vacuum`); err != nil {
			return err
		}
	} else {
		// An older file: once a quarter of it is free, VACUUM rewrites it
		// in incremental mode, so later passes are cheap.
		var free, pages int64
		if err := s.db.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil {
			return err
		}
		if err := s.db.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
			return err
		}
		if free*4 >= pages {
			if _, err := s.db.ExecContext(ctx, `PRAGMA auto_vacuum = INCREMENTAL`); err != nil {
				return err
			}
			if _, err := s.db.ExecContext(ctx, `VACUUM`); err != nil {
				return err
			}
		}
	}
	// The write-ahead log holds the freed pages too until a checkpoint.
	var busy, logged, moved int
	return s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logged, &moved)
}

// sweptRunErr returns the tombstone of run id as an error, or errNotFound.
func sweptRunErr(ctx context.Context, db *sql.DB, id int64) error {
	var at int64
	err := db.QueryRowContext(ctx, `SELECT swept_at FROM swept_runs WHERE id = $1`, id).Scan(&at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return errNotFound
	case err != nil:
		return err
	}
	return sweptError{what: fmt.Sprintf("run %d", id), at: fromMS(at)}
}

// sweptJobErr is sweptRunErr for job id.
func sweptJobErr(ctx context.Context, db *sql.DB, id int64) error {
	var at, run int64
	err := db.QueryRowContext(ctx, `SELECT swept_at, run_id FROM swept_jobs WHERE id = $1`, id).Scan(&at, &run)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return errNotFound
	case err != nil:
		return err
	}
	return sweptError{what: fmt.Sprintf("job %d (of run %d)", id, run), at: fromMS(at)}
}
