-- wayview 0009: owners correct their images (issue #17). `lon`, `lat`, `compass_angle_deg`
-- and `captured_at_ms` hold the values served (corrected); the first correction of an image
-- keeps the values as uploaded here (NULL: never corrected; `original_compass_deg` NULL with
-- `corrected_at_ms` set: uploaded without a compass angle).
ALTER TABLE images ADD COLUMN original_lon double precision;
ALTER TABLE images ADD COLUMN original_lat double precision;
ALTER TABLE images ADD COLUMN original_compass_deg double precision;
ALTER TABLE images ADD COLUMN original_captured_at_ms bigint;
ALTER TABLE images ADD COLUMN corrected_at_ms bigint;
-- An owner's page lists their sequences.
CREATE INDEX sequences_creator ON sequences (creator_id);
