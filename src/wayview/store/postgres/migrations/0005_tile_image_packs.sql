-- wayview 0005: the packed image records of every z14 tile in one row (PostgreSQL only).
-- A z14 tile's `image` layer was one range scan of the covering index `images_tile` plus an
-- aggregate over ~2,400 rows per request (about 1 ms of server CPU, more while the visibility
-- map lags behind writes); it is now one primary-key read.
CREATE TABLE tile_image_packs (
    tile  bigint PRIMARY KEY,  -- Morton code of the z14 tile (qk >> 24)
    recs  bytea NOT NULL,      -- `images.tile_rec` of the tile's images in (qk, id) order
    nos   bigint[] NOT NULL    -- the distinct `sequence_no` of those images
);
-- Packs are read whole and hold mostly distinct integers: no compression to undo per read.
ALTER TABLE tile_image_packs ALTER COLUMN recs SET STORAGE EXTERNAL;

-- Rebuild the packs of some z14 tiles from their images. `insert_sequence` calls it once for
-- the tiles it wrote to; the trigger below for any other change of a packed column. Writers
-- of one tile take turns (an advisory lock per tile, in key order, held to commit), and each
-- statement after the locks reads a fresh snapshot: the pack always holds every committed
-- image of its tile, whatever the interleaving.
CREATE FUNCTION wv_refresh_tile_packs(keys bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
BEGIN
    FOR k IN SELECT DISTINCT u FROM unnest(keys) AS u ORDER BY u LOOP
        PERFORM pg_advisory_xact_lock(14, k::integer);
    END LOOP;
    DELETE FROM tile_image_packs WHERE tile = ANY(keys);
    INSERT INTO tile_image_packs (tile, recs, nos)
    SELECT t.tile, p.recs, p.nos
    FROM (SELECT DISTINCT u AS tile FROM unnest(keys) AS u) t,
    LATERAL (SELECT string_agg(i.tile_rec, ''::bytea ORDER BY i.qk, i.id) AS recs,
                    array_agg(DISTINCT i.sequence_no) AS nos
             FROM images i WHERE i.qk BETWEEN t.tile << 24 AND ((t.tile + 1) << 24) - 1) p
    WHERE p.recs IS NOT NULL;
END
$$;

CREATE FUNCTION wv_tile_pack_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM wv_refresh_tile_packs(ARRAY[OLD.qk >> 24]);
    ELSE
        PERFORM wv_refresh_tile_packs(ARRAY[OLD.qk >> 24, NEW.qk >> 24]);
    END IF;
    RETURN NULL;
END
$$;
-- Inserts are packed by `insert_sequence` (once per tile, not once per row); updates of the
-- packed columns and deletes, which no wayview code path makes, still cannot leave a pack stale.
CREATE TRIGGER images_tile_pack
    AFTER UPDATE OF id, qk, captured_at_ms, tile_compass_deg, is_pano, organization_id,
                    creator_id, sequence_no OR DELETE
    ON images FOR EACH ROW EXECUTE FUNCTION wv_tile_pack_changed();

INSERT INTO tile_image_packs (tile, recs, nos)
SELECT qk >> 24, string_agg(tile_rec, ''::bytea ORDER BY qk, id),
       array_agg(DISTINCT sequence_no)
FROM images GROUP BY qk >> 24;
