-- Issue #22: a job's concurrency group (at most one job of a group of a
-- repository runs at a time, across servers).
ALTER TABLE jobs ADD COLUMN concurrency TEXT NOT NULL DEFAULT '';
CREATE INDEX jobs_concurrency ON jobs (concurrency, status) WHERE concurrency <> '';
