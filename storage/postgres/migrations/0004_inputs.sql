-- Members' input images, kept in the database so that every replica reaches them:
-- a quote's image arrives at one replica and its tier may be pressed at another,
-- and a job moved to another replica still has its image (docs/ARCHITECTURE.md,
-- "Inputs and clips across replicas"). Quotes and jobs name an image as
-- 'pg:' || name in their image_path column (storage/postgres/inputs.py); the
-- retention sweep deletes the row once nothing needs it.
CREATE TABLE inputs (
    name       TEXT PRIMARY KEY,      -- '<quote id><extension>', e.g. '3f2a9c1d0b4e.jpg'
    data       BYTEA NOT NULL,
    created_at BIGINT NOT NULL DEFAULT extract(epoch FROM now())::bigint,
    -- The 10 MB image limit of bot/media.py (MAX_IMAGE_BYTES), and never an empty image.
    CONSTRAINT inputs_size CHECK (octet_length(data) BETWEEN 1 AND 10485760)
);

-- JPEG and PNG do not compress: keep them out of line without trying.
ALTER TABLE inputs ALTER COLUMN data SET STORAGE EXTERNAL;
