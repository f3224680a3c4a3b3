-- Delivery claims: before a runner sends a finished clip it claims the job
-- with a compare-and-set on these columns (storage/jobs.py claim_delivery),
-- so two processes on one database can never both send it. A claim names
-- the runner that holds it and when it was taken; a claim older than the
-- runner's claim timeout is a runner that died mid-send, and may be taken over.

ALTER TABLE jobs ADD COLUMN delivery_claimed_by TEXT;
ALTER TABLE jobs ADD COLUMN delivery_claimed_at INTEGER;
