"""wayview.tiles.prerender: keep the generalised z6–13 image tiles rendered in the store.

Writes bump the epochs of every tile they touch (wayview.tiles.index); a z6–13 tile then needs
a new rendering, which at city density takes tens of milliseconds (every sequence line of a
z8 tile is read and thinned by coverage). The job runner calls `Prerenderer.run_once` every
`tiles.prerender_interval_s` (and `wayview tiles prerender` runs it until nothing is stale), so
a request finds the current body in the store and a cold z8 tile is a read. A burst of writes
costs one rendering per tile per interval, not one per write. Several runners may render the
same tile; the store keeps one body per tile and epoch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from wayview.store.base import Store
from wayview.tiles.policy import GENERALISED_ZOOMS
from wayview.tiles.service import TileService

log = logging.getLogger("wayview.tiles")

#: The image tileset drawn from each epoch group.
_TILESET = {"images": "mly1_public", "computed": "mly1_computed_public"}


@dataclass(slots=True)
class Pass:
    """What one `run_once` did."""

    rendered: int = 0
    seconds: float = 0.0
    more: bool = False  # stopped by its batch or time budget with stale tiles left


class Prerenderer:
    """Renders stale z6–13 image tiles into the store, lowest zoom first."""

    def __init__(self, store: Store, *, line_tile_max_bytes: int = 500_000,
                 batch: int = 256) -> None:
        self.store = store
        self.batch = batch
        # No cache: every tile here is rendered once and goes to the store.
        self.tiles = TileService(store, cache_max_bytes=0,
                                 line_tile_max_bytes=line_tile_max_bytes)

    async def run_once(self, budget_s: float = 5.0) -> Pass:
        """Render up to `batch` stale tiles, stopping after `budget_s` seconds."""
        started = time.perf_counter()
        done = Pass()
        stale = await self.store.stale_rendered_tiles(
            GENERALISED_ZOOMS.start, GENERALISED_ZOOMS.stop - 1, self.batch)
        for group, z, x, y in stale:
            if time.perf_counter() - started > budget_s:
                done.more = True
                break
            # The epoch is read before the rows: a write landing in between makes the
            # stored body stale at once (the store keeps it only under the epoch read).
            epoch = await self.store.tile_epoch(group, z, x, y)
            _, kept = await self.tiles.render_stored(_TILESET[group], group, z, x, y, epoch)
            done.rendered += 1
            if not kept:  # the store refuses writes (disk full, outage): next interval
                break
        else:
            done.more = len(stale) >= self.batch
        done.seconds = time.perf_counter() - started
        if done.rendered:
            log.debug("prerendered %d z%d–%d tiles in %.2f s", done.rendered,
                      GENERALISED_ZOOMS.start, GENERALISED_ZOOMS.stop - 1, done.seconds)
        return done

    async def run_all(self) -> int:
        """Run passes until no tile is stale; tiles rendered."""
        total = 0
        for _ in range(10_000):  # bounded even under a steady stream of writes
            done = await self.run_once(budget_s=60.0)
            total += done.rendered
            if not done.more:
                break
        return total
