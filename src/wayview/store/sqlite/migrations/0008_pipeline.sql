-- wayview 0008: what the processing pipeline computes per image (spec §3.2, §6).
-- computed_rotation: JSON [rx, ry, rz] angle-axis (OpenSfM shot rotation), NULL = none.
-- assets: bit flags of the derived blobs that exist: 1 = mesh, 2 = sfm_cluster (per sequence),
-- 4 = image pyramid tiles.
ALTER TABLE images ADD COLUMN computed_rotation TEXT;
ALTER TABLE images ADD COLUMN atomic_scale REAL;
ALTER TABLE images ADD COLUMN merge_cc INTEGER;
ALTER TABLE images ADD COLUMN assets INTEGER NOT NULL DEFAULT 0;
CREATE INDEX images_merge_cc ON images (merge_cc) WHERE merge_cc IS NOT NULL;
