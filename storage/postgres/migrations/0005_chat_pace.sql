-- Per-chat pacing shared by every replica (bot/pacing.py): one row per chat
-- the bot has sent its own messages to, holding the time (Unix seconds) its
-- next slot is computed from. A reservation is one INSERT ... ON CONFLICT DO
-- UPDATE ... RETURNING under the row's lock, so two replicas never get the
-- same slot.
--
-- UNLOGGED: a reservation writes no WAL and waits for no disk flush. After a
-- crash of the server the table comes back empty, which only lets each chat
-- have one more burst; it is not copied to standbys, where nobody sends.
CREATE UNLOGGED TABLE chat_pace (
    chat    TEXT PRIMARY KEY,
    next_at DOUBLE PRECISION NOT NULL
);
