-- wayview 0012: images a moderator hid (issue #17); SQLite 0016. A hidden image keeps its
-- rows but is left out of both tile indexes (its codes are -1, outside every tile) and out of
-- every Graph answer except to its owner and moderators.
CREATE TABLE hidden_images (
    image_id     bigint PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    hidden_at_ms bigint NOT NULL,
    hidden_by    bigint,
    reason       text NOT NULL DEFAULT ''
);
