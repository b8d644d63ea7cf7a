-- wayview 0004: one packed tile record per image. The eight integers a tile's `image` layer
-- needs (id, qk, captured_at_ms, tile_compass_deg, is_pano, organization_id, creator_id,
-- sequence_rowid) as 64 little-endian bytes, kept in the covering index so a tile is one range
-- scan concatenated into one BLOB and read with numpy (no per-row Python objects).
-- `wv_tile_rec` is registered on every connection by wayview.store.sqlite.connection; the
-- trigger keeps records in step with any later UPDATE, and a tool without the function gets
-- "no such function" instead of silently stale tiles.
ALTER TABLE images ADD COLUMN tile_rec BLOB NOT NULL DEFAULT x'';
UPDATE images SET tile_rec = wv_tile_rec(id, qk, captured_at_ms, tile_compass_deg, is_pano,
                                         organization_id, creator_id, sequence_rowid);
DROP INDEX images_qk;
CREATE INDEX images_tile ON images (qk, tile_rec);
CREATE TRIGGER images_tile_rec AFTER UPDATE OF qk, captured_at_ms, tile_compass_deg, is_pano,
    organization_id, creator_id, sequence_rowid ON images
BEGIN
    UPDATE images SET tile_rec = wv_tile_rec(NEW.id, NEW.qk, NEW.captured_at_ms,
        NEW.tile_compass_deg, NEW.is_pano, NEW.organization_id, NEW.creator_id,
        NEW.sequence_rowid) WHERE id = NEW.id;
END
