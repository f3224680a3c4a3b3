-- Personal defaults (SQLite 0012): what /settings stores for a member, one row per
-- wallet, keyed by the identity that owns it (a linked identity uses its partner's
-- row). NULL means "not set".

CREATE TABLE member_settings (
    platform      text NOT NULL,
    user_id       text NOT NULL,
    tier          text,
    duration_s    integer CHECK (duration_s IN (5, 10)),
    locale        text CHECK (locale IN ('en', 'zh-CN')),
    confirm_above integer CHECK (confirm_above > 0),
    updated_at    bigint NOT NULL,
    PRIMARY KEY (platform, user_id)
);
