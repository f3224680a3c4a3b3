-- One wallet on several platforms (issue 18 part 3).
--
-- A member's identities are linked with a one-time code: /link on one platform gives
-- a code (only its SHA-256 is stored, in link_codes), /link <code> on another platform
-- redeems it. The redeemer's wallet row then points at the issuer's (linked_platform,
-- linked_user_id): every ledger operation resolves an identity to that wallet first.
-- Its balance and held credits moved over as a 'link_out' entry on its own wallet and
-- a 'link_in' on the issuer's, in the same transaction, and its open holds with them.
-- An unlink writes the split the same way ('link_out' on the shared wallet, 'link_in'
-- on the one that leaves, either may be 0). link_failures counts wrong codes per
-- member, so codes cannot be guessed.
--
-- SQLite cannot change a CHECK in place: the ledger is rebuilt as in 0010.

ALTER TABLE wallets ADD COLUMN linked_platform TEXT;
ALTER TABLE wallets ADD COLUMN linked_user_id TEXT;
ALTER TABLE wallets ADD COLUMN link_id TEXT;

CREATE INDEX wallets_by_link ON wallets (linked_platform, linked_user_id)
    WHERE linked_platform IS NOT NULL;

CREATE TABLE link_codes (
    code_hash  TEXT PRIMARY KEY,
    platform   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    used_by    TEXT
) STRICT;

CREATE INDEX link_codes_by_user ON link_codes (platform, user_id, created_at);

CREATE TABLE link_failures (
    platform TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    at       INTEGER NOT NULL
) STRICT;

CREATE INDEX link_failures_by_user ON link_failures (platform, user_id, at);

CREATE TABLE ledger_new (
    seq           INTEGER PRIMARY KEY,
    idem_key      TEXT NOT NULL UNIQUE,
    platform      TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('topup', 'hold', 'capture', 'release', 'adjust',
                                                'purchase', 'purchase_refund',
                                                'link_in', 'link_out')),
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
        (kind = 'release' AND amount > 0  AND held_delta = -amount AND hold_id IS NOT NULL) OR
        (kind = 'purchase'        AND amount > 0  AND held_delta = 0 AND hold_id IS NULL) OR
        (kind = 'purchase_refund' AND amount <= 0 AND held_delta = 0 AND hold_id IS NULL) OR
        (kind = 'link_in'  AND amount >= 0 AND held_delta >= 0 AND hold_id IS NULL) OR
        (kind = 'link_out' AND amount <= 0 AND held_delta <= 0 AND hold_id IS NULL)
    )
) STRICT;

INSERT INTO ledger_new (seq, idem_key, platform, user_id, kind, amount, held_delta,
                        balance_after, held_after, hold_id, actor, reason, created_at)
SELECT seq, idem_key, platform, user_id, kind, amount, held_delta,
       balance_after, held_after, hold_id, actor, reason, created_at
FROM ledger ORDER BY seq;

DROP TABLE ledger;

ALTER TABLE ledger_new RENAME TO ledger;

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
