-- wayview 0002: the vector-tile index, maintained on write (issue: vector tiles).

-- z24 Morton code of the Web-Mercator position: a tile at zoom z is one contiguous range.
ALTER TABLE images ADD COLUMN qk INTEGER NOT NULL DEFAULT 0;
-- The compass angle tiles carry: the original, else the direction to the next image, else 0.
ALTER TABLE images ADD COLUMN tile_compass_deg INTEGER NOT NULL DEFAULT 0;
CREATE INDEX images_qk ON images (qk, id, captured_at_ms, sequence_id, is_pano, organization_id,
                                  creator_id, tile_compass_deg, lon, lat);

ALTER TABLE map_features ADD COLUMN qk INTEGER NOT NULL DEFAULT 0;
CREATE INDEX map_features_qk ON map_features (object_type, qk);

-- z0-5 "overview": one image per sequence per grid cell, at most OVERVIEW_PER_CELL sequences
-- per cell; cell = Morton code at zoom z + 5 (32 x 32 cells per tile), so a tile is one
-- contiguous cell range. Sparse coverage keeps every sequence; dense coverage stays bounded.
CREATE TABLE tile_overview (
    z           INTEGER NOT NULL,
    cell        INTEGER NOT NULL,
    sequence_id TEXT NOT NULL,
    image_id    INTEGER NOT NULL,
    PRIMARY KEY (z, cell, sequence_id)
) WITHOUT ROWID;

-- z6-14 "sequence": each sequence's line clipped (with a buffer) and simplified for one tile,
-- as little-endian int32 pairs in tile pixels (extent 4096); several parts are separated by
-- the pair (-2147483648, -2147483648).
CREATE TABLE tile_sequence_lines (
    z           INTEGER NOT NULL,
    tile        INTEGER NOT NULL,   -- Morton code of (x, y) at zoom z
    sequence_id TEXT NOT NULL REFERENCES sequences (id),
    coords      BLOB NOT NULL,
    PRIMARY KEY (z, tile, sequence_id)
) WITHOUT ROWID;

-- Every write bumps the epoch of each tile it touches (all zooms), in the same transaction:
-- rendered tiles are cached under (tile, epoch) and can never be served stale.
CREATE TABLE tile_epochs (
    grp   TEXT NOT NULL,            -- 'images' or 'features'
    z     INTEGER NOT NULL,
    tile  INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    PRIMARY KEY (grp, z, tile)
) WITHOUT ROWID;

-- Properties of a sequence's `sequence` feature (spec §4.3): its first image.
ALTER TABLE sequences ADD COLUMN first_image_id INTEGER;
ALTER TABLE sequences ADD COLUMN first_captured_at_ms INTEGER;
ALTER TABLE sequences ADD COLUMN is_pano INTEGER NOT NULL DEFAULT 0;
