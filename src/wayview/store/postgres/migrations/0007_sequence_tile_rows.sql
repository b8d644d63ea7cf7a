-- wayview 0007: the `mly1_public` tile rows of one sequence, found by sequence (as those of
-- `mly1_computed_public` since 0006): Store.delete_images rebuilds or deletes them, and
-- deleting a sequence checks the foreign key of tile_sequence_lines. As SQLite 0011.
CREATE INDEX tile_overview_sequence ON tile_overview (sequence_id);
CREATE INDEX tile_sequence_lines_sequence ON tile_sequence_lines (sequence_id);
