-- Retention (issue #21): what the sweeper removed leaves a tombstone, so
-- the API answers a swept run or job with 410 Gone, not 404.
CREATE TABLE swept_runs (
	id       BIGINT PRIMARY KEY,
	repo     TEXT NOT NULL,
	branch   TEXT NOT NULL,
	swept_at BIGINT NOT NULL
);
CREATE TABLE swept_jobs (
	id       BIGINT PRIMARY KEY,
	run_id   BIGINT NOT NULL,
	swept_at BIGINT NOT NULL
);

-- Once-per-cluster work on a timer: the server whose update moves
-- next_at past now does the pass.
CREATE TABLE sweeps (
	name    TEXT PRIMARY KEY,
	next_at BIGINT NOT NULL,
	holder  TEXT NOT NULL DEFAULT ''
);
INSERT INTO sweeps (name, next_at) VALUES ('retention', 0);
