"""What tipg serves: a schema `tipg` in wayview's PostgreSQL database (created after
`wayview migrate-store`; tipg only reads it).

- `tipg.images`: a view of wayview's `images` (its GiST-indexed `geom`, primary key `id`), with
  the columns a client shows (capture time as timestamptz, compass, sequence, creator, camera).
- `tipg.sequence_lines`: one LineString per sequence in capture order, a table with a GiST
  index (tipg has no way to draw lines from points; a view with the aggregate would rebuild every
  line on every tile).
"""

SCHEMA_SQL = """
DROP SCHEMA IF EXISTS tipg CASCADE;
CREATE SCHEMA tipg;
CREATE VIEW tipg.images AS
  SELECT id, geom, to_timestamp(captured_at_ms / 1000.0) AS captured_at, sequence_id,
         compass_angle_deg, creator_id, organization_id, is_pano, camera_type, make, model,
         width, height
  FROM public.images;
CREATE TABLE tipg.sequence_lines AS
  SELECT sequence_id AS id, min(creator_id) AS creator_id,
         to_timestamp(min(captured_at_ms) / 1000.0) AS captured_at, bool_or(is_pano) AS is_pano,
         count(*) AS images,
         ST_MakeLine(geom ORDER BY captured_at_ms, id)::geometry(LineString, 4326) AS geom
  FROM public.images GROUP BY sequence_id;
ALTER TABLE tipg.sequence_lines ADD PRIMARY KEY (id);
CREATE INDEX sequence_lines_geom ON tipg.sequence_lines USING gist (geom);
"""
