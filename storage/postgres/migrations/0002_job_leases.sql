-- Jobs across replicas (bot/jobs/leases.py): the replica that owns a job and
-- until when (wall-clock Unix seconds; renewed while the job is unfinished),
-- and whether the job holds one of the running slots that the per-provider
-- and per-user limits count across all replicas. A job already at the
-- provider holds its slot. The same columns as SQLite's 0008_job_leases.sql.

ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN slot INTEGER NOT NULL DEFAULT 0 CHECK (slot IN (0, 1));

UPDATE jobs SET slot = 1
    WHERE state IN ('submitted', 'running') OR (state = 'held' AND attempts > 0);

CREATE INDEX jobs_leased ON jobs (owner) WHERE lease_expires_at IS NOT NULL;
CREATE INDEX jobs_slots ON jobs (provider) WHERE slot = 1;
CREATE INDEX jobs_queued ON jobs (seq) WHERE state = 'held' AND slot = 0;
