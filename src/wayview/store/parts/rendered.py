"""wayview.store.parts.rendered: generalised z6–13 image tiles kept rendered in the store
(Store protocol part, issue #21; migration sqlite 0018 / postgres 0014).

A body is stored with the tile epoch it was rendered at and is served only while that epoch is
the tile's current one (`tile_epochs`), so a write is never followed by an old tile in any
process. The job runner re-renders stale tiles in the background (wayview.tiles.prerender);
a request that finds none renders the tile and stores it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from wayview.tiles.index import unmorton_array

#: The tile_epochs groups whose z6–13 tiles are kept rendered (the two image tilesets).
RENDERED_GROUPS = ("images", "computed")


def rendered_sql(p: str) -> dict[str, str]:
    """The statements of both backends, `p` their parameter placeholder."""
    key = f"grp = {p} AND z = {p} AND tile = {p}"
    return {
        # The tile's epoch, and the stored body when it was rendered at that epoch.
        "get": (
            "SELECT e.epoch, r.etag, r.body FROM tile_epochs e LEFT JOIN rendered_tiles r"
            " ON r.grp = e.grp AND r.z = e.z AND r.tile = e.tile AND r.epoch = e.epoch"
            f" WHERE e.grp = {p} AND e.z = {p} AND e.tile = {p}"
        ),
        # Stored only while the epoch is still current, never over a newer rendering.
        "put": (
            "INSERT INTO rendered_tiles (grp, z, tile, epoch, etag, body)"
            f" SELECT {p}, {p}, {p}, {p}, {p}, {p} WHERE EXISTS"
            f" (SELECT 1 FROM tile_epochs WHERE {key} AND epoch = {p})"
            " ON CONFLICT (grp, z, tile) DO UPDATE SET epoch = excluded.epoch,"
            " etag = excluded.etag, body = excluded.body"
            " WHERE excluded.epoch > rendered_tiles.epoch"
        ),
        # Tiles of a zoom range whose stored body is missing or older than their epoch.
        "stale": (
            "SELECT e.grp, e.z, e.tile FROM tile_epochs e LEFT JOIN rendered_tiles r"
            " ON r.grp = e.grp AND r.z = e.z AND r.tile = e.tile"
            f" WHERE e.grp IN ({p}, {p}) AND e.z BETWEEN {p} AND {p}"
            " AND (r.epoch IS NULL OR r.epoch < e.epoch)"
            " ORDER BY e.z, e.grp, e.tile LIMIT " + p
        ),
    }


class RenderedTilesStore(Protocol):
    """Rendered z6–13 image tiles (see the module text)."""

    async def rendered_tile(self, group: str, z: int, x: int, y: int
                            ) -> tuple[int, str | None, bytes | None]:
        """The tile's current epoch (0 = never written) and, when a body rendered at that
        epoch is stored, its ETag and body (else None, None). One read. Called by tile
        requests at z6–13 of the image tilesets."""

    async def put_rendered_tile(self, group: str, z: int, x: int, y: int, epoch: int,
                                etag: str, body: bytes) -> bool:
        """Store a tile rendered at `epoch`, only while that is still the tile's epoch (a
        write since the render makes it stale, and it is not stored); whether it was stored.
        """

    async def stale_rendered_tiles(self, min_z: int, max_z: int, limit: int
                                   ) -> list[tuple[str, int, int, int]]:
        """Up to `limit` (group, z, x, y) of the image groups at zooms `min_z`..`max_z`
        whose stored body is missing or older than the tile's epoch, lowest zoom first."""


def with_xy(rows: list[tuple[str, int, int]]) -> list[tuple[str, int, int, int]]:
    """(group, z, Morton code) rows as (group, z, x, y).

    >>> with_xy([("images", 8, 3)])
    [('images', 8, 1, 1)]
    """
    if not rows:
        return []
    xs, ys = unmorton_array(np.array([r[2] for r in rows], dtype=np.int64))
    return [(r[0], int(r[1]), int(x), int(y))
            for r, x, y in zip(rows, xs.tolist(), ys.tolist(), strict=True)]
