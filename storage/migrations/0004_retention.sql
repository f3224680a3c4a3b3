-- Retention: members' input images and finished clips are removed on a
-- schedule (bot/jobs/retention.py). A row keeps a note of when its file was
-- removed, so /jobs and Reroll can say the file is gone, and a sweep
-- interrupted between removing a file and writing the note simply does both
-- again next time.

ALTER TABLE quotes ADD COLUMN input_removed_at INTEGER;
ALTER TABLE jobs ADD COLUMN input_removed_at INTEGER;
ALTER TABLE jobs ADD COLUMN clip_removed_at INTEGER;

-- The sweep asks "who still needs this image?" for every candidate file.
CREATE INDEX quotes_by_image ON quotes (image_path) WHERE image_path IS NOT NULL;
CREATE INDEX jobs_by_image ON jobs (image_path) WHERE image_path IS NOT NULL;
-- Delivered clips still on disk, oldest delivery first.
CREATE INDEX jobs_clips_kept ON jobs (delivered_at)
    WHERE state = 'delivered' AND result_path IS NOT NULL AND clip_removed_at IS NULL;
