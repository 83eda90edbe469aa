-- Issue #22: a job's concurrency group (at most one job of a group of a
-- repository runs at a time, across servers), and the ref the server
-- fetched a run's commit by (a pull request's refs/pull/N/head, a GitLab
-- merge request's refs/merge-requests/N/head), which its leases carry.
ALTER TABLE jobs ADD COLUMN concurrency TEXT NOT NULL DEFAULT '';
CREATE INDEX jobs_concurrency ON jobs (concurrency, status) WHERE concurrency <> '';
ALTER TABLE runs ADD COLUMN fetch_ref TEXT NOT NULL DEFAULT '';
