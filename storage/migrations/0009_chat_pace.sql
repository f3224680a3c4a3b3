-- Per-chat pacing shared by every process on this database (bot/pacing.py):
-- one row per chat the bot has sent its own messages to, holding the time
-- (Unix seconds) its next slot is computed from. A reservation is one
-- INSERT ... ON CONFLICT DO UPDATE ... RETURNING, so two processes never
-- get the same slot. Losing a row only lets one more burst through.
CREATE TABLE chat_pace (
    chat    TEXT PRIMARY KEY,
    next_at REAL NOT NULL
) STRICT, WITHOUT ROWID;
