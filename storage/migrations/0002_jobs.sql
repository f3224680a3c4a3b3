-- Quotes and generation jobs. A job's id is also its hold's id and the
-- provider's external task id, so every retry and restart finds the same job.

CREATE TABLE quotes (
    quote_id        TEXT PRIMARY KEY,
    platform        TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    chat_id         TEXT NOT NULL,
    locale          TEXT NOT NULL,
    image_path      TEXT,
    prompt          TEXT NOT NULL,
    negative_prompt TEXT NOT NULL DEFAULT '',
    duration_s      INTEGER NOT NULL CHECK (duration_s IN (5, 10)),
    tiers           TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'used', 'cancelled')),
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE jobs (
    job_id          TEXT PRIMARY KEY,
    quote_id        TEXT NOT NULL UNIQUE REFERENCES quotes (quote_id),
    platform        TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    chat_id         TEXT NOT NULL,
    locale          TEXT NOT NULL,
    tier            TEXT NOT NULL,
    model           TEXT NOT NULL,
    mode            TEXT,
    resolution      INTEGER NOT NULL,
    duration_s      INTEGER NOT NULL CHECK (duration_s IN (5, 10)),
    price           INTEGER NOT NULL CHECK (price > 0),
    expected_wait_s INTEGER NOT NULL,
    prompt          TEXT NOT NULL,
    negative_prompt TEXT NOT NULL DEFAULT '',
    image_path      TEXT,
    state           TEXT NOT NULL CHECK (state IN
                      ('held', 'submitted', 'running', 'succeeded', 'delivered', 'failed', 'cancelled')),
    provider        TEXT NOT NULL,
    task_id         TEXT,
    progress        INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    attempts        INTEGER NOT NULL DEFAULT 0,
    error_kind      TEXT,
    error_detail    TEXT,
    result_path     TEXT,
    status_message  TEXT,
    delivery        TEXT,
    refunded        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    submitted_at    INTEGER,
    started_at      INTEGER,
    finished_at     INTEGER,
    delivered_at    INTEGER,
    FOREIGN KEY (job_id) REFERENCES holds (hold_id)
) STRICT;

CREATE INDEX jobs_by_user ON jobs (platform, user_id, created_at);
CREATE INDEX jobs_active ON jobs (state) WHERE state IN ('held', 'submitted', 'running', 'succeeded');
CREATE INDEX jobs_finished_by_tier ON jobs (tier, finished_at) WHERE started_at IS NOT NULL;
