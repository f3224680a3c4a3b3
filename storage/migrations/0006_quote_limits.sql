-- Floods cost nothing: a member has at most a few open quotes (a new one
-- retires the oldest, whose input image is removed at once) and asks for at
-- most a few quotes a minute (bot/generation.py, storage/jobs.py).

-- When a newer quote of the same member closed this one (state 'cancelled').
ALTER TABLE quotes ADD COLUMN retired_at INTEGER;

-- A member's open quotes, newest first, for the retirement of the oldest.
CREATE INDEX quotes_open_by_user ON quotes (platform, user_id, created_at) WHERE state = 'open';

-- One row per quote request admitted in the last minute: the rate is
-- counted here, in the same transaction that admits the request, so two
-- processes or a burst of concurrent updates cannot both slip past it.
-- Rows older than the window are deleted as new requests arrive.
CREATE TABLE quote_requests (
    platform     TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    requested_at INTEGER NOT NULL
) STRICT;

CREATE INDEX quote_requests_by_user ON quote_requests (platform, user_id, requested_at);
CREATE INDEX quote_requests_by_time ON quote_requests (requested_at);
