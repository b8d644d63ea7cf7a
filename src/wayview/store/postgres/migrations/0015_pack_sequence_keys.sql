-- wayview 0015: a z14 tile's pack also holds its sequences' keys (issue #21). Reading a pack
-- looked the keys up by `sequence_no` on every request, and below a few thousand sequences
-- the planner does that with a sequential scan of `sequences` (500 rows read per tile at
-- 100 k images): about 40 % of the server's CPU per cold z14 tile. A sequence's key never
-- changes, and any change of an image's `sequence_no` already rebuilds its pack (0005's
-- trigger), so the keys are kept with the pack, aligned with `nos` (both by `seq_no`).
ALTER TABLE tile_image_packs ADD COLUMN keys text[];

-- Rebuild the packs of some z14 tiles from their images (0005's function, now with the keys;
-- the parameter is renamed, so the function is replaced, not altered).
DROP FUNCTION wv_refresh_tile_packs(bigint[]);
CREATE FUNCTION wv_refresh_tile_packs(tiles bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
BEGIN
    FOR k IN SELECT DISTINCT u FROM unnest(tiles) AS u ORDER BY u LOOP
        PERFORM pg_advisory_xact_lock(14, k::integer);
    END LOOP;
    DELETE FROM tile_image_packs WHERE tile = ANY(tiles);
    INSERT INTO tile_image_packs (tile, recs, nos, keys)
    SELECT t.tile, p.recs, s.nos, s.keys
    FROM (SELECT DISTINCT u AS tile FROM unnest(tiles) AS u) t,
    LATERAL (SELECT string_agg(i.tile_rec, ''::bytea ORDER BY i.qk, i.id) AS recs,
                    array_agg(DISTINCT i.sequence_no) AS nos
             FROM images i WHERE i.qk BETWEEN t.tile << 24 AND ((t.tile + 1) << 24) - 1) p,
    LATERAL (SELECT array_agg(q.seq_no ORDER BY q.seq_no) AS nos,
                    array_agg(q.id ORDER BY q.seq_no) AS keys
             FROM sequences q WHERE q.seq_no = ANY(p.nos)) s
    WHERE p.recs IS NOT NULL;
END
$$;

UPDATE tile_image_packs p SET (nos, keys) = (
    SELECT array_agg(q.seq_no ORDER BY q.seq_no), array_agg(q.id ORDER BY q.seq_no)
    FROM sequences q WHERE q.seq_no = ANY(p.nos));
ALTER TABLE tile_image_packs ALTER COLUMN keys SET NOT NULL;
