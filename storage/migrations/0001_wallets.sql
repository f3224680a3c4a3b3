-- Users, wallets, holds and the append-only credit ledger.
-- Money is INTEGER credits everywhere; the CHECKs make a negative balance
-- or a hold that ends twice impossible, whatever the Python code does.

CREATE TABLE users (
    platform     TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    username     TEXT,
    locale       TEXT NOT NULL DEFAULT 'en',
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (platform, user_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX users_by_username ON users (platform, username COLLATE NOCASE);

CREATE TABLE wallets (
    platform   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    balance    INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0 AND balance <= 1000000000000000),
    held       INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (platform, user_id),
    FOREIGN KEY (platform, user_id) REFERENCES users (platform, user_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE holds (
    hold_id    TEXT PRIMARY KEY,
    platform   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount > 0),
    state      TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'captured', 'released')),
    created_at INTEGER NOT NULL,
    ended_at   INTEGER,
    FOREIGN KEY (platform, user_id) REFERENCES wallets (platform, user_id)
) STRICT;

CREATE INDEX holds_open_by_user ON holds (platform, user_id) WHERE state = 'open';

CREATE TABLE ledger (
    seq           INTEGER PRIMARY KEY,
    idem_key      TEXT NOT NULL UNIQUE,
    platform      TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('topup', 'hold', 'capture', 'release', 'adjust')),
    amount        INTEGER NOT NULL,
    held_delta    INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    held_after    INTEGER NOT NULL CHECK (held_after >= 0),
    hold_id       TEXT REFERENCES holds (hold_id),
    actor         TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    FOREIGN KEY (platform, user_id) REFERENCES wallets (platform, user_id),
    CHECK (
        (kind = 'topup'   AND amount > 0  AND held_delta = 0       AND hold_id IS NULL) OR
        (kind = 'adjust'  AND amount <> 0 AND held_delta = 0       AND hold_id IS NULL) OR
        (kind = 'hold'    AND amount < 0  AND held_delta = -amount AND hold_id IS NOT NULL) OR
        (kind = 'capture' AND amount = 0  AND held_delta < 0       AND hold_id IS NOT NULL) OR
        (kind = 'release' AND amount > 0  AND held_delta = -amount AND hold_id IS NOT NULL)
    )
) STRICT;

CREATE INDEX ledger_by_user ON ledger (platform, user_id, seq);

-- A hold ends exactly once: at most one capture or release per hold.
CREATE UNIQUE INDEX ledger_one_end_per_hold ON ledger (hold_id) WHERE kind IN ('capture', 'release');

CREATE TRIGGER ledger_is_append_only_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_is_append_only_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;
