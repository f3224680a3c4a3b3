-- Personal defaults (issue 18 part 5): what /settings stores for a member.
--
-- One row per wallet, keyed by the identity that owns the wallet: an identity linked
-- to another (wallets.linked_*) reads and writes its partner's row, so two linked
-- accounts share their settings. The redeemer's own row, if it had one, stays as it
-- was and applies again after an unlink. NULL means "not set": the tier is none in
-- particular, the duration 5 s, the language the platform's, and nothing is asked
-- before a press.

CREATE TABLE member_settings (
    platform      TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    tier          TEXT,
    duration_s    INTEGER CHECK (duration_s IN (5, 10)),
    locale        TEXT CHECK (locale IN ('en', 'zh-CN')),
    confirm_above INTEGER CHECK (confirm_above > 0),
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (platform, user_id)
) STRICT;
