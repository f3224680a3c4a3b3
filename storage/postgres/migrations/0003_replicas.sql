-- One row per replica (KLINGBOT_REPLICA_ID): who runs it, since when, and until when
-- its lease runs. The lease itself is the session advisory lock "replica:<id>"
-- (storage/postgres/locks.py), which PostgreSQL drops the moment the replica's
-- connection ends; this row is what an operator, a refused second process and
-- the other replicas read. Times are the server's, so replicas' clocks never matter.
CREATE TABLE replicas (
    replica_id   TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL
);
