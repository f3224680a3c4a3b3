-- /compare (bot/compare.py): one row per press that ran several tiers on the same
-- inputs, and its jobs in tier order (the same tables as SQLite's 0014_compares.sql). The runner that settles the last of them
-- claims the row (state open -> making, compare-and-set) and sends the
-- side-by-side clip once; a claim older than a lease may be taken over.

CREATE TABLE compares (
    compare_id  TEXT PRIMARY KEY,
    quote_id    TEXT NOT NULL,
    platform    TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    chat_id     TEXT NOT NULL,
    locale      TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'open'
                CHECK (state IN ('open', 'making', 'sent', 'too_few', 'failed')),
    claimed_by  TEXT,
    claimed_at  BIGINT,
    created_at  BIGINT NOT NULL,
    finished_at BIGINT
);

CREATE TABLE compare_jobs (
    compare_id TEXT NOT NULL REFERENCES compares (compare_id),
    job_id     TEXT NOT NULL UNIQUE REFERENCES jobs (job_id),
    position   INTEGER NOT NULL,
    PRIMARY KEY (compare_id, position)
);
