package scheduler

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// candidate is a queued job an agent may be leased.
type candidate struct {
	id    int64
	repo  string
	group string // the job's concurrency group; empty for none
}

// claim takes c for agent a if it is still queued and, when it has a
// concurrency group, no job of that group of its repository is running:
// at most one job of a group runs at a time, across every server of the
// database. It reports whether c was claimed.
//
// SQLite runs one transaction at a time, so the check and the claim in
// one statement are atomic. Under PostgreSQL two transactions could each
// see the group idle and both claim, so the claimer first takes the
// group's transaction lock, and the claim's statement (a new snapshot,
// read committed) then sees any claim committed before the lock was
// free. The lock is tried, not waited for: a group another server is
// claiming in is skipped, as a row it is claiming is.
func (s *SQL) claim(ctx context.Context, tx *sql.Tx, c candidate, a *agentRec, p LeaseParams, now time.Time) (bool, error) {
	if c.group != "" && s.d.groupLock != "" {
		var got bool
		if err := tx.QueryRowContext(ctx, s.d.groupLock, fmt.Sprintf("%d:%s%s", len(c.repo), c.repo, c.group)).Scan(&got); err != nil {
			return false, fmt.Errorf("lock concurrency group %q of %s: %w", c.group, c.repo, err)
		}
		if !got {
			return false, nil
		}
	}
	res, err := tx.ExecContext(ctx, `UPDATE jobs SET status = 'running', attempt = attempt + 1, agent_id = $2, lease_expires = $3,
		started_at = $4, finished_at = NULL, reason = '' WHERE `+s.d.claim+`
		AND ($5 = '' OR NOT EXISTS (SELECT 1 FROM jobs o JOIN runs r ON r.id = o.run_id
			WHERE o.concurrency = $5 AND o.status = 'running' AND r.repo = $6))`,
		c.id, a.ID, ms(now.Add(p.Timeout)), ms(now), c.group, c.repo)
	if err != nil {
		return false, fmt.Errorf("claim job %d: %w", c.id, err)
	}
	k, err := res.RowsAffected()
	return k == 1, err
}

// groupFreed returns 1 if job, just ended, has a concurrency group with a
// queued job of its repository waiting for it (a lease request to wake),
// else 0.
func groupFreed(ctx context.Context, tx *sql.Tx, job int64) (int, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs j JOIN runs r ON r.id = j.run_id
		JOIN jobs o ON o.concurrency = j.concurrency AND o.status = 'queued'
		JOIN runs ro ON ro.id = o.run_id AND ro.repo = r.repo
		WHERE j.id = $1 AND j.concurrency <> ''`, job).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("concurrency group of job %d: %w", job, err)
	}
	return min(n, 1), nil
}
