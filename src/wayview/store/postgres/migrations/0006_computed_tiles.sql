-- wayview 0006: the tile index of `mly1_computed_public` (spec §4.2), beside the one of
-- `mly1_public`: the same rows at the computed positions and angles, falling back to the
-- original ones (wayview.tiles.index.sequence_rows(..., computed=True)), with its own epoch
-- group 'computed', so a change of computed positions never invalidates `mly1_public`. As
-- SQLite 0010. Its z14 tiles are range scans of `images_computed_tile` (no packs).

-- Per image: the z26 Morton code and integer compass angle drawn, and their packed record.
ALTER TABLE images ADD COLUMN computed_qk bigint;
ALTER TABLE images ADD COLUMN computed_tile_compass_deg integer NOT NULL DEFAULT 0;
-- Right for every image of a sequence without computed values; the others are rebuilt when
-- the store opens (see below).
UPDATE images SET computed_qk = qk, computed_tile_compass_deg = tile_compass_deg;
ALTER TABLE images ALTER COLUMN computed_qk SET NOT NULL;
ALTER TABLE images ADD COLUMN computed_tile_rec bytea NOT NULL GENERATED ALWAYS AS (
    int8send(id) || int8send(computed_qk) || int8send(captured_at_ms)
    || int8send(computed_tile_compass_deg::bigint) || int8send(is_pano::integer::bigint)
    || int8send(COALESCE(organization_id, 0)) || int8send(creator_id)
    || int8send(sequence_no)) STORED;
CREATE INDEX images_computed_tile ON images (computed_qk, id)
    INCLUDE (computed_tile_rec, sequence_no);

-- As tile_overview and tile_sequence_lines; a sequence's rows are replaced whenever its
-- computed positions change (set_computed_fields), hence the sequence_id indexes.
CREATE TABLE tile_overview_computed (
    z           integer NOT NULL,
    cell        bigint NOT NULL,
    sequence_id text NOT NULL,
    image_id    bigint NOT NULL,
    PRIMARY KEY (z, cell, sequence_id)
);
CREATE INDEX tile_overview_computed_sequence ON tile_overview_computed (sequence_id);
CREATE TABLE tile_sequence_lines_computed (
    z           integer NOT NULL,
    tile        bigint NOT NULL,
    sequence_id text NOT NULL REFERENCES sequences (id),
    coords      bytea NOT NULL,
    PRIMARY KEY (z, tile, sequence_id)
);
CREATE INDEX tile_sequence_lines_computed_sequence
    ON tile_sequence_lines_computed (sequence_id);

-- true once the sequence's computed tile index is built. A sequence without any computed
-- value is drawn alike in both tilesets: its original rows are copied here. The others
-- (stored by the processing pipeline before this migration) are rebuilt in Python when the
-- store opens (PostgresStore.open).
ALTER TABLE sequences ADD COLUMN computed_tiles boolean NOT NULL DEFAULT false;
CREATE INDEX sequences_computed_pending ON sequences (id) WHERE NOT computed_tiles;
UPDATE sequences s SET computed_tiles = true WHERE NOT EXISTS (
    SELECT 1 FROM images i WHERE i.sequence_id = s.id
    AND (i.computed_compass_deg IS NOT NULL
         OR (i.computed_lon IS NOT NULL AND i.computed_lat IS NOT NULL)));
INSERT INTO tile_overview_computed (z, cell, sequence_id, image_id)
    SELECT o.z, o.cell, o.sequence_id, o.image_id FROM tile_overview o
    JOIN sequences s ON s.id = o.sequence_id WHERE s.computed_tiles;
INSERT INTO tile_sequence_lines_computed (z, tile, sequence_id, coords)
    SELECT l.z, l.tile, l.sequence_id, l.coords FROM tile_sequence_lines l
    JOIN sequences s ON s.id = l.sequence_id WHERE s.computed_tiles;
INSERT INTO tile_epochs (grp, z, tile, epoch)
    SELECT 'computed', z, tile, epoch FROM tile_epochs WHERE grp = 'images';
