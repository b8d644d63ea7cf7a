-- wayview 0018: generalised z6–13 image tiles are kept rendered in the store (issue #21):
-- one body per (group, zoom, tile) with the tile epoch it was rendered at and its ETag. A
-- body is served only while its epoch equals the tile's current epoch in tile_epochs, so a
-- write is never followed by an old tile; the job runner re-renders stale ones in the
-- background (wayview.tiles.prerender) and a request that finds none renders and stores it.
-- A rowid table: bodies reach hundreds of KB, which WITHOUT ROWID tables store badly.
CREATE TABLE rendered_tiles (
    grp   TEXT NOT NULL,
    z     INTEGER NOT NULL,
    tile  INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    etag  TEXT NOT NULL,
    body  BLOB NOT NULL
);
CREATE UNIQUE INDEX rendered_tiles_key ON rendered_tiles (grp, z, tile);
