-- API and registration tokens (issue #16): only a token's sha256 is kept.
-- Roles: read, operate, admin (users), agent (registration). Agent tokens
-- list the labels their agents may register and globs of the repositories
-- whose jobs and secrets they may receive. expires_at 0: never.
CREATE TABLE api_tokens (
	name       TEXT PRIMARY KEY,
	hash       TEXT NOT NULL UNIQUE,
	role       TEXT NOT NULL,
	labels     TEXT NOT NULL DEFAULT '[]',
	repos      TEXT NOT NULL DEFAULT '[]',
	expires_at BIGINT NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL
);

-- Web sessions: the sha256 of a random session id, the hash of the token
-- signed in with (a removed token ends its sessions), the role, the
-- session's CSRF token and its server-side expiry.
CREATE TABLE web_sessions (
	id_hash    TEXT PRIMARY KEY,
	token_hash TEXT NOT NULL,
	role       TEXT NOT NULL,
	csrf       TEXT NOT NULL,
	expires_at BIGINT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_token ON web_sessions (token_hash);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

-- The registration token an agent joined with ('' for the server's
-- --registration-token) and the repositories it may receive jobs of.
ALTER TABLE agents ADD COLUMN reg_token TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN repos TEXT NOT NULL DEFAULT '["**"]';
