-- wayview 0003: cheaper tile reads. Morton codes move to z26 (exact tile pixels at z14 with
-- extent 4096, so tiles need no lon/lat and no projection), and images carry their sequence's
-- rowid so a tile's image rows are all integers.

ALTER TABLE images ADD COLUMN sequence_rowid INTEGER NOT NULL DEFAULT 0;
UPDATE images SET sequence_rowid = (SELECT rowid FROM sequences s WHERE s.id = images.sequence_id);
-- z24 -> z26: two more bits per axis (positions written before this migration lose < 1 px).
UPDATE images SET qk = qk * 16;
UPDATE map_features SET qk = qk * 16;
DROP INDEX images_qk;
CREATE INDEX images_qk ON images (qk, id, captured_at_ms, tile_compass_deg, is_pano,
                                  organization_id, creator_id, sequence_rowid);
