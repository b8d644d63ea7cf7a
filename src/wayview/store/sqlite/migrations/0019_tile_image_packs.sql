-- wayview 0019: the packed image records of every z14 tile in one row, as PostgreSQL has had
-- since its 0005 (issue #21). A z14 tile's `image` layer was a range scan of the covering index
-- `images_tile` and a group_concat over every image of the tile (~370 rows at 100 k images,
-- ~2,400 at 1 M), 28 % of a cold z14 request's CPU at 100 k; it is now one primary-key read.
-- `tile` is the Morton code of the z14 tile (qk >> 24); `recs` the tiles' `images.tile_rec`
-- in the order of that range scan. Hidden images (qk = -1) are in no pack.
CREATE TABLE tile_image_packs (
    tile INTEGER PRIMARY KEY,
    recs BLOB NOT NULL
);

-- `insert_sequence` packs the tiles it wrote to once (not once per row). Any other change of
-- a record is packed here, so no code path can leave a pack stale: a changed record rebuilds
-- its tile's pack (a record that moves also changes, through the trigger of 0004, and comes
-- back here with its new code), a record that leaves a tile rebuilds the old tile's, and a
-- deleted image its tile's.
CREATE TRIGGER images_pack_record AFTER UPDATE OF tile_rec ON images
WHEN OLD.tile_rec IS NOT NEW.tile_rec
BEGIN
    DELETE FROM tile_image_packs WHERE tile = NEW.qk >> 24;
    INSERT INTO tile_image_packs (tile, recs)
    SELECT NEW.qk >> 24, r FROM (SELECT CAST(group_concat(tile_rec, '') AS BLOB) AS r FROM
        (SELECT tile_rec FROM images WHERE qk BETWEEN (NEW.qk >> 24) << 24 AND ((NEW.qk >> 24) << 24) + 16777215
         ORDER BY qk))
    WHERE r IS NOT NULL AND NEW.qk >> 24 >= 0;
END;
CREATE TRIGGER images_pack_leave AFTER UPDATE OF qk ON images
WHEN (OLD.qk >> 24) IS NOT (NEW.qk >> 24)
BEGIN
    DELETE FROM tile_image_packs WHERE tile = OLD.qk >> 24;
    INSERT INTO tile_image_packs (tile, recs)
    SELECT OLD.qk >> 24, r FROM (SELECT CAST(group_concat(tile_rec, '') AS BLOB) AS r FROM
        (SELECT tile_rec FROM images WHERE qk BETWEEN (OLD.qk >> 24) << 24 AND ((OLD.qk >> 24) << 24) + 16777215
         ORDER BY qk))
    WHERE r IS NOT NULL AND OLD.qk >> 24 >= 0;
END;
CREATE TRIGGER images_pack_delete AFTER DELETE ON images
BEGIN
    DELETE FROM tile_image_packs WHERE tile = OLD.qk >> 24;
    INSERT INTO tile_image_packs (tile, recs)
    SELECT OLD.qk >> 24, r FROM (SELECT CAST(group_concat(tile_rec, '') AS BLOB) AS r FROM
        (SELECT tile_rec FROM images WHERE qk BETWEEN (OLD.qk >> 24) << 24 AND ((OLD.qk >> 24) << 24) + 16777215
         ORDER BY qk))
    WHERE r IS NOT NULL AND OLD.qk >> 24 >= 0;
END;

INSERT INTO tile_image_packs (tile, recs)
SELECT t.tile, (SELECT CAST(group_concat(tile_rec, '') AS BLOB) FROM
    (SELECT tile_rec FROM images WHERE qk BETWEEN t.tile << 24 AND (t.tile << 24) + 16777215
     ORDER BY qk))
FROM (SELECT DISTINCT qk >> 24 AS tile FROM images WHERE qk >= 0) AS t;
