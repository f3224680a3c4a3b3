-- Small facts the adapters keep between runs, by key: e.g. the hash of the
-- Discord command definitions last synced to each scope, so a restart with
-- unchanged commands makes no sync call (Discord limits command creations).

CREATE TABLE app_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
