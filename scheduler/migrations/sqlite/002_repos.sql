-- Repositories the server receives webhooks for (issue #8). Secrets are
-- sealed with the server's key (scheduler/secrets.go).
CREATE TABLE repos (
	name           TEXT PRIMARY KEY,
	forge          TEXT NOT NULL DEFAULT '',
	clone_url      TEXT NOT NULL,
	api_url        TEXT NOT NULL DEFAULT '',
	forge_repo     TEXT NOT NULL DEFAULT '',
	default_branch TEXT NOT NULL DEFAULT 'main',
	secret_sealed  BLOB,
	token_sealed   BLOB,
	ssh_key_sealed BLOB,
	depth          INTEGER NOT NULL DEFAULT 0,
	submodules     INTEGER NOT NULL DEFAULT 0,
	-- The default branch's job file, where cron schedules come from, and
	-- since when it holds them (no catch-up before that).
	cron_source    TEXT NOT NULL DEFAULT '',
	cron_commit    TEXT NOT NULL DEFAULT '',
	cron_since     INTEGER NOT NULL DEFAULT 0,
	created_at     INTEGER NOT NULL
);

-- One row per delivery id and one per body hash: a replayed delivery
-- conflicts on either.
CREATE TABLE webhook_deliveries (
	key         TEXT PRIMARY KEY,
	repo        TEXT NOT NULL,
	received_at INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_age ON webhook_deliveries (received_at);

-- One row per repository, cron trigger and tick: whoever inserts it fires.
CREATE TABLE cron_fires (
	repo        TEXT NOT NULL,
	trigger_key TEXT NOT NULL,
	tick        INTEGER NOT NULL,
	run_id      INTEGER NOT NULL DEFAULT 0,
	fired_at    INTEGER NOT NULL,
	PRIMARY KEY (repo, trigger_key, tick)
);

-- The status loop reads the runs of the last day every second.
CREATE INDEX runs_created ON runs (created_at);

-- The last commit status sent to the forge for a run.
CREATE TABLE commit_statuses (
	run_id     INTEGER PRIMARY KEY,
	state      TEXT NOT NULL,
	updated_at INTEGER NOT NULL
);
