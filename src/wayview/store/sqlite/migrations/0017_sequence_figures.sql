-- wayview 0017: each sequence keeps the figures of its public images for the public profiles
-- (issue #18 item 6; wayview.store.figures): how many, the length of the line through them
-- in capture order (metres, haversine), the last capture and the extent. Hidden images count
-- nowhere; a sequence of hidden images only has image_count 0. Written by every write that
-- changes a sequence's images; filled here for the sequences stored before.
ALTER TABLE sequences ADD COLUMN image_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sequences ADD COLUMN length_m REAL NOT NULL DEFAULT 0;
ALTER TABLE sequences ADD COLUMN last_captured_at_ms INTEGER;
ALTER TABLE sequences ADD COLUMN min_lon REAL;
ALTER TABLE sequences ADD COLUMN min_lat REAL;
ALTER TABLE sequences ADD COLUMN max_lon REAL;
ALTER TABLE sequences ADD COLUMN max_lat REAL;

UPDATE sequences SET image_count = f.n, length_m = f.len, last_captured_at_ms = f.last,
    min_lon = f.west, min_lat = f.south, max_lon = f.east, max_lat = f.north
FROM (
    SELECT sequence_id, COUNT(*) AS n, MAX(t) AS last,
           TOTAL(CASE WHEN plon IS NULL THEN 0 ELSE wv_haversine_m(plat, plon, lat, lon) END)
               AS len,
           MIN(lon) AS west, MIN(lat) AS south, MAX(lon) AS east, MAX(lat) AS north
    FROM (
        SELECT i.sequence_id, i.captured_at_ms AS t, i.lon, i.lat,
               LAG(i.lon) OVER w AS plon, LAG(i.lat) OVER w AS plat
        FROM images i
        WHERE NOT EXISTS (SELECT 1 FROM hidden_images h WHERE h.image_id = i.id)
        WINDOW w AS (PARTITION BY i.sequence_id ORDER BY i.captured_at_ms, i.id)
    )
    GROUP BY sequence_id
) AS f
WHERE f.sequence_id = sequences.id;

-- An organization's profile reads its sequences (a creator's have sequences_creator).
CREATE INDEX sequences_organization ON sequences (organization_id)
    WHERE organization_id IS NOT NULL;
