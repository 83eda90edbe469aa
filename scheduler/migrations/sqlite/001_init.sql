-- Times are Unix milliseconds; flags are 0 or 1.
CREATE TABLE runs (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	repo        TEXT NOT NULL,
	branch      TEXT NOT NULL,
	commit_sha  TEXT NOT NULL DEFAULT '',
	clone_url   TEXT NOT NULL DEFAULT '',
	file        TEXT NOT NULL,
	source      TEXT NOT NULL,
	trigger     TEXT NOT NULL,
	env         TEXT NOT NULL DEFAULT '{}',
	untrusted   INTEGER NOT NULL DEFAULT 0,
	status      TEXT NOT NULL,
	reason      TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	finished_at INTEGER
);
CREATE INDEX runs_branch ON runs (repo, branch, file, id);

CREATE TABLE jobs (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	run_id           INTEGER NOT NULL REFERENCES runs (id),
	name             TEXT NOT NULL,
	key              TEXT NOT NULL,
	labels           TEXT NOT NULL DEFAULT '[]',
	needs            TEXT NOT NULL DEFAULT '[]',
	secrets          TEXT NOT NULL DEFAULT '[]',
	status           TEXT NOT NULL,
	reason           TEXT NOT NULL DEFAULT '',
	attempt          INTEGER NOT NULL DEFAULT 0,
	max_attempts     INTEGER NOT NULL,
	agent_id         TEXT NOT NULL DEFAULT '',
	preferred_agent  TEXT NOT NULL DEFAULT '',
	lease_expires    INTEGER NOT NULL DEFAULT 0,
	cancel_requested INTEGER NOT NULL DEFAULT 0,
	queued_at        INTEGER NOT NULL,
	started_at       INTEGER,
	finished_at      INTEGER,
	result           TEXT NOT NULL DEFAULT ''
);
CREATE INDEX jobs_status ON jobs (status, id);
CREATE INDEX jobs_run ON jobs (run_id);

CREATE TABLE steps (
	job_id          INTEGER NOT NULL,
	attempt         INTEGER NOT NULL,
	idx             INTEGER NOT NULL,
	name            TEXT NOT NULL,
	status          TEXT NOT NULL,
	started_at      INTEGER NOT NULL,
	duration_ms     INTEGER NOT NULL DEFAULT 0,
	exit            TEXT NOT NULL DEFAULT '',
	allowed_failure INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (job_id, attempt, idx)
);

CREATE TABLE agents (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	token_hash TEXT NOT NULL UNIQUE,
	labels     TEXT NOT NULL,
	slots      INTEGER NOT NULL,
	version    TEXT NOT NULL DEFAULT '',
	last_seen  INTEGER NOT NULL,
	gone       INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL
);

CREATE TABLE affinity (
	repo     TEXT NOT NULL,
	branch   TEXT NOT NULL,
	agent_id TEXT NOT NULL,
	PRIMARY KEY (repo, branch)
);

CREATE TABLE log_chunks (
	job_id  INTEGER NOT NULL,
	attempt INTEGER NOT NULL,
	off     INTEGER NOT NULL,
	size    INTEGER NOT NULL,
	data    BLOB NOT NULL,
	PRIMARY KEY (job_id, attempt, off)
);

CREATE TABLE secrets (
	repo     TEXT NOT NULL,
	name     TEXT NOT NULL,
	branches TEXT NOT NULL DEFAULT '[]',
	sealed   BLOB NOT NULL,
	PRIMARY KEY (repo, name)
);
