-- Delivery retries: a made clip whose upload failed stays 'succeeded' ("made,
-- not yet delivered") and is tried again on a schedule (bot/jobs/delivery.py).
-- The schedule lives in these columns, so a restart resumes it where it was.

ALTER TABLE jobs ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN delivery_failing_since INTEGER;
ALTER TABLE jobs ADD COLUMN delivery_retry_at INTEGER;
