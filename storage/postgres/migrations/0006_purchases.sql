-- Purchases (SQLite 0010): credits a member bought (Telegram Stars, Discord SKUs) are
-- ledger entries of kind 'purchase', and a refund of one is 'purchase_refund'. Each is
-- keyed by its payment ('purchase:<source>:<charge id>'), so the unique idem_key credits
-- a charge once and refunds it once. A forced refund of spent credits takes what is
-- there, so a 'purchase_refund' may be 0 but never positive.

ALTER TABLE ledger
    DROP CONSTRAINT ledger_kind_check,
    DROP CONSTRAINT ledger_check,
    ADD CONSTRAINT ledger_kind_check CHECK (
        kind IN ('topup', 'hold', 'capture', 'release', 'adjust', 'purchase', 'purchase_refund')
    ),
    ADD CONSTRAINT ledger_check CHECK (
        (kind = 'topup'   AND amount > 0  AND held_delta = 0       AND hold_id IS NULL) OR
        (kind = 'adjust'  AND amount <> 0 AND held_delta = 0       AND hold_id IS NULL) OR
        (kind = 'hold'    AND amount < 0  AND held_delta = -amount AND hold_id IS NOT NULL) OR
        (kind = 'capture' AND amount = 0  AND held_delta < 0       AND hold_id IS NOT NULL) OR
        (kind = 'release' AND amount > 0  AND held_delta = -amount AND hold_id IS NOT NULL) OR
        (kind = 'purchase'        AND amount > 0  AND held_delta = 0 AND hold_id IS NULL) OR
        (kind = 'purchase_refund' AND amount <= 0 AND held_delta = 0 AND hold_id IS NULL)
    );
