-- wayview 0015: re-blurring (issue #17). `images.media_version` names the rendering of an
-- image's pixels that is served (0: ingest's, unversioned keys and URLs; N: the N-th
-- re-blur, under …/v<N>/). One `image_blurs` row per image whose blur regions were looked
-- at or edited: the blurrer's regions (recorded once, JSON), the regions people added and the
-- automatic ones they removed (JSON), and `revision`, the media version the newest edit is
-- rendered as (the image is up to date once its media_version reaches it).
ALTER TABLE images ADD COLUMN media_version INTEGER NOT NULL DEFAULT 0;
CREATE TABLE image_blurs (
    image_id      INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    revision      INTEGER NOT NULL DEFAULT 0,
    automatic     TEXT,
    added         TEXT NOT NULL DEFAULT '[]',
    removed       TEXT NOT NULL DEFAULT '[]',
    updated_at_ms INTEGER NOT NULL DEFAULT 0,
    updated_by    INTEGER,
    error         TEXT
) WITHOUT ROWID;
