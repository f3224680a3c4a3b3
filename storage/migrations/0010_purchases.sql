-- Purchases: credits a member bought (Telegram Stars, Discord SKUs) are ledger entries
-- of kind 'purchase', and a refund of one is 'purchase_refund'. Each is keyed by its
-- payment ('purchase:<source>:<charge id>'), so the unique idem_key credits a charge once
-- and refunds it once. A forced refund of spent credits takes what is there, so a
-- 'purchase_refund' may be 0 but never positive.
--
-- SQLite cannot change a CHECK in place: the ledger is rebuilt (same columns, rows and
-- seq numbers), then its indexes and append-only triggers are made again. The
-- migration runs in one transaction, like every migration.

CREATE TABLE ledger_new (
    seq           INTEGER PRIMARY KEY,
    idem_key      TEXT NOT NULL UNIQUE,
    platform      TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('topup', 'hold', 'capture', 'release', 'adjust',
                                                'purchase', 'purchase_refund')),
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
        (kind = 'purchase_refund' AND amount <= 0 AND held_delta = 0 AND hold_id IS NULL)
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
