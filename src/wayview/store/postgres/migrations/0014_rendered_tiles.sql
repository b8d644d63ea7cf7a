-- wayview 0014: generalised z6–13 image tiles are kept rendered in the store (issue #21):
-- one body per (group, zoom, tile) with the tile epoch it was rendered at and its ETag. A
-- body is served only while its epoch equals the tile's current epoch in tile_epochs, so a
-- write is never followed by an old tile; the job runner re-renders stale ones in the
-- background (wayview.tiles.prerender) and a request that finds none renders and stores it.
CREATE TABLE rendered_tiles (
    grp   text NOT NULL,
    z     integer NOT NULL,
    tile  bigint NOT NULL,
    epoch bigint NOT NULL,
    etag  text NOT NULL,
    body  bytea NOT NULL,
    PRIMARY KEY (grp, z, tile)
);
-- Bodies are already compact protobuf; skip TOAST compression attempts on them.
ALTER TABLE rendered_tiles ALTER COLUMN body SET STORAGE EXTERNAL;
