-- One wallet on several platforms (SQLite 0011): a redeemed /link code points the
-- redeemer's wallet row at the issuer's (linked_platform, linked_user_id); every ledger
-- statement resolves an identity to that wallet. The move and the split are ledger
-- entries of kinds 'link_out' and 'link_in'. Only a code's SHA-256 is stored.

ALTER TABLE wallets
    ADD COLUMN linked_platform text,
    ADD COLUMN linked_user_id text,
    ADD COLUMN link_id text;

CREATE INDEX wallets_by_link ON wallets (linked_platform, linked_user_id)
    WHERE linked_platform IS NOT NULL;

CREATE TABLE link_codes (
    code_hash  text PRIMARY KEY,
    platform   text NOT NULL,
    user_id    text NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    used_at    bigint,
    used_by    text
);

CREATE INDEX link_codes_by_user ON link_codes (platform, user_id, created_at);

CREATE TABLE link_failures (
    platform text NOT NULL,
    user_id  text NOT NULL,
    at       bigint NOT NULL
);

CREATE INDEX link_failures_by_user ON link_failures (platform, user_id, at);

ALTER TABLE ledger
    DROP CONSTRAINT ledger_kind_check,
    DROP CONSTRAINT ledger_check,
    ADD CONSTRAINT ledger_kind_check CHECK (
        kind IN ('topup', 'hold', 'capture', 'release', 'adjust', 'purchase', 'purchase_refund',
                 'link_in', 'link_out')
    ),
    ADD CONSTRAINT ledger_check CHECK (
        (kind = 'topup'   AND amount > 0  AND held_delta = 0       AND hold_id IS NULL) OR
        (kind = 'adjust'  AND amount <> 0 AND held_delta = 0       AND hold_id IS NULL) OR
        (kind = 'hold'    AND amount < 0  AND held_delta = -amount AND hold_id IS NOT NULL) OR
        (kind = 'capture' AND amount = 0  AND held_delta < 0       AND hold_id IS NOT NULL) OR
        (kind = 'release' AND amount > 0  AND held_delta = -amount AND hold_id IS NOT NULL) OR
        (kind = 'purchase'        AND amount > 0  AND held_delta = 0 AND hold_id IS NULL) OR
        (kind = 'purchase_refund' AND amount <= 0 AND held_delta = 0 AND hold_id IS NULL) OR
        (kind = 'link_in'  AND amount >= 0 AND held_delta >= 0 AND hold_id IS NULL) OR
        (kind = 'link_out' AND amount <= 0 AND held_delta <= 0 AND hold_id IS NULL)
    );
