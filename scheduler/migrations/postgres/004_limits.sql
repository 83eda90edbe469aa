-- What an agent sent, counted for the per-attempt quotas (issue #16):
-- the output bytes of each log chunk (the text of its lines, not the JSON
-- around it), and the artifact files uploaded with their sizes, which the
-- manifest is checked against before it is committed.
ALTER TABLE log_chunks ADD COLUMN out_bytes BIGINT NOT NULL DEFAULT 0;
CREATE TABLE artifact_files (
	job_id  BIGINT NOT NULL,
	attempt BIGINT NOT NULL,
	path    TEXT NOT NULL,
	size    BIGINT NOT NULL,
	PRIMARY KEY (job_id, attempt, path)
);
