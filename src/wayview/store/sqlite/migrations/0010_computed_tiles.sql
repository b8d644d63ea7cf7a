-- wayview 0010: the tile index of `mly1_computed_public` (spec §4.2), beside the one of
-- `mly1_public` (0002-0004): the same rows at the computed positions and angles, falling back
-- to the original ones (wayview.tiles.index.sequence_rows(..., computed=True)), with its own
-- epoch group 'computed', so a change of computed positions never invalidates `mly1_public`.

-- Per image: the z26 Morton code and integer compass angle drawn, and their packed record.
ALTER TABLE images ADD COLUMN computed_qk INTEGER NOT NULL DEFAULT 0;
ALTER TABLE images ADD COLUMN computed_tile_compass_deg INTEGER NOT NULL DEFAULT 0;
ALTER TABLE images ADD COLUMN computed_tile_rec BLOB NOT NULL DEFAULT x'';
-- Right for every image of a sequence without computed values; the others are rebuilt below.
UPDATE images SET computed_qk = qk, computed_tile_compass_deg = tile_compass_deg,
                  computed_tile_rec = tile_rec;
-- Covering, in (code, id) order: images at one computed position come by id, as on PostgreSQL.
CREATE INDEX images_computed_tile ON images (computed_qk, id, computed_tile_rec);
CREATE TRIGGER images_computed_tile_rec AFTER UPDATE OF computed_qk, captured_at_ms,
    computed_tile_compass_deg, is_pano, organization_id, creator_id, sequence_rowid ON images
BEGIN
    UPDATE images SET computed_tile_rec = wv_tile_rec(NEW.id, NEW.computed_qk,
        NEW.captured_at_ms, NEW.computed_tile_compass_deg, NEW.is_pano, NEW.organization_id,
        NEW.creator_id, NEW.sequence_rowid) WHERE id = NEW.id;
END;

-- As tile_overview and tile_sequence_lines; a sequence's rows are replaced whenever its
-- computed positions change (set_computed_fields), hence the sequence_id indexes.
CREATE TABLE tile_overview_computed (
    z           INTEGER NOT NULL,
    cell        INTEGER NOT NULL,
    sequence_id TEXT NOT NULL,
    image_id    INTEGER NOT NULL,
    PRIMARY KEY (z, cell, sequence_id)
) WITHOUT ROWID;
CREATE INDEX tile_overview_computed_sequence ON tile_overview_computed (sequence_id);
CREATE TABLE tile_sequence_lines_computed (
    z           INTEGER NOT NULL,
    tile        INTEGER NOT NULL,
    sequence_id TEXT NOT NULL REFERENCES sequences (id),
    coords      BLOB NOT NULL,
    PRIMARY KEY (z, tile, sequence_id)
) WITHOUT ROWID;
CREATE INDEX tile_sequence_lines_computed_sequence ON tile_sequence_lines_computed (sequence_id);

-- 1 once the sequence's computed tile index is built. A sequence without any computed value
-- is drawn alike in both tilesets: its original rows are copied here. The others (stored by
-- the processing pipeline before this migration) are rebuilt in Python when the store opens
-- (SqliteStore.open).
ALTER TABLE sequences ADD COLUMN computed_tiles INTEGER NOT NULL DEFAULT 0;
CREATE INDEX sequences_computed_pending ON sequences (id) WHERE computed_tiles = 0;
UPDATE sequences SET computed_tiles = 1 WHERE NOT EXISTS (
    SELECT 1 FROM images i WHERE i.sequence_id = sequences.id
    AND (i.computed_compass_deg IS NOT NULL
         OR (i.computed_lon IS NOT NULL AND i.computed_lat IS NOT NULL)));
INSERT INTO tile_overview_computed (z, cell, sequence_id, image_id)
    SELECT o.z, o.cell, o.sequence_id, o.image_id FROM tile_overview o
    JOIN sequences s ON s.id = o.sequence_id WHERE s.computed_tiles = 1;
INSERT INTO tile_sequence_lines_computed (z, tile, sequence_id, coords)
    SELECT l.z, l.tile, l.sequence_id, l.coords FROM tile_sequence_lines l
    JOIN sequences s ON s.id = l.sequence_id WHERE s.computed_tiles = 1;
INSERT INTO tile_epochs (grp, z, tile, epoch)
    SELECT 'computed', z, tile, epoch FROM tile_epochs WHERE grp = 'images';
