"""wayview.store.columns: the SELECT lists both SQL backends read entities with (the same
column names and order on SQLite and PostgreSQL; each backend converts its own types)."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from wayview.model.entities import (
    ComputedFields,
    Image,
    MapFeature,
    TileContent,
    TileImageColumns,
    TileLine,
    UploadSession,
)
from wayview.tiles.index import IMAGE_ZOOM, QK_ZOOM, point_keys, tile_position

#: Image columns, in the order the backends' `_image_from_row` read them.
IMAGE_COLUMNS = (
    "i.id, i.sequence_id, i.creator_id, i.captured_at_ms, i.lon, i.lat, i.width, i.height,"
    " i.altitude_m, i.compass_angle_deg, i.camera_type, i.camera_parameters,"
    " i.exif_orientation, i.make, i.model, i.is_pano, i.organization_id, i.quality_score,"
    " i.computed_lon, i.computed_lat, i.computed_altitude_m, i.computed_compass_deg,"
    " i.content_sha256, i.created_at_ms, u.username, i.computed_rotation, i.atomic_scale,"
    " i.merge_cc, i.assets, i.media_version,"
    # Hidden (issue #17): one primary-key probe, so a Graph answer needs no second query.
    " EXISTS (SELECT 1 FROM hidden_images h WHERE h.image_id = i.id)"
)
#: The images columns the computed tile index is drawn from, in the order of
#: `wayview.tiles.index.computed_position`'s arguments, after the id.
COMPUTED_SOURCE_COLUMNS = (
    "id, lon, lat, compass_angle_deg, computed_lon, computed_lat, computed_compass_deg"
)
#: The FROM clause `IMAGE_COLUMNS` needs (the creator's username is a join).
IMAGE_FROM = "images i JOIN users u ON u.id = i.creator_id"
#: Detection columns, in the order `_detection_from_row` reads them.
DETECTION_COLUMNS = "d.id, d.image_id, d.value, d.geometry, d.created_at_ms, d.map_feature_id"

#: Upload session columns, in the order `upload_session_from_row` reads them.
UPLOAD_SESSION_COLUMNS = (
    "id, user_id, session_key, handle, size, created_at_ms, updated_at_ms, expires_at_ms"
)
#: Upload finishes with their session's handle (`result` is JSON text on SQLite, decoded by
#: the driver on PostgreSQL).
UPLOAD_FINISH_SQL = (
    "SELECT f.id, f.session_id, s.handle, f.user_id, f.file_type, f.organization_id, f.job_id,"
    " f.result, f.created_at_ms FROM upload_finishes f JOIN upload_sessions s"
    " ON s.id = f.session_id"
)


@dataclass(frozen=True, slots=True)
class TileIndex:
    """Where the tile index of one image tileset lives (the same names on both backends).

    `mly1_public` draws images at their original positions, `mly1_computed_public` at their
    computed ones (falling back to the original ones, spec §4.2): each has its own Morton
    code and packed record per image, its own overview cells and sequence lines, and its own
    `tile_epochs` group, so a change of computed positions never invalidates `mly1_public`.
    """

    group: str  # tile_epochs group
    qk: str  # images column: z26 Morton code of the position drawn
    compass: str  # images column: the integer compass angle drawn
    rec: str  # images column: the packed tile record (migration 0004)
    overview: str  # table of the z0–5 overview cells
    lines: str  # table of the z6–14 pre-clipped sequence lines

    @property
    def lines_sql(self) -> str:
        """A tile's pre-clipped sequence lines with their first image's properties, in the
        order `tile_line_from_row` reads them; the backend adds `WHERE l.z = … AND l.tile = …`.
        """
        return (
            "SELECT l.sequence_id, l.coords, s.first_image_id, s.first_captured_at_ms, s.is_pano,"
            f" s.organization_id, s.creator_id FROM {self.lines} l"
            " JOIN sequences s ON s.id = l.sequence_id"
        )


ORIGINAL_INDEX = TileIndex("images", "qk", "tile_compass_deg", "tile_rec", "tile_overview",
                           "tile_sequence_lines")
COMPUTED_INDEX = TileIndex("computed", "computed_qk", "computed_tile_compass_deg",
                           "computed_tile_rec", "tile_overview_computed",
                           "tile_sequence_lines_computed")
#: The index of each image tileset, by `computed`.
TILE_INDEXES = {False: ORIGINAL_INDEX, True: COMPUTED_INDEX}
TILE_LINES_SQL = ORIGINAL_INDEX.lines_sql


def upload_session_from_row(r: tuple[Any, ...]) -> UploadSession:
    """An UploadSession from a row of `UPLOAD_SESSION_COLUMNS` (same types on both backends)."""
    return UploadSession(id=r[0], user_id=r[1], session_key=r[2], handle=r[3], size=r[4],
                         created_at_ms=r[5], updated_at_ms=r[6], expires_at_ms=r[7])


def unique_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, return_inverse=True)`, by a lookup table when the range is small.

    A tile's sequence rowids usually span a few thousand: marking them in a table of that size
    costs a fraction of `np.unique`'s sort (~100 µs on an 8,000-image tile).

    >>> [a.tolist() for a in unique_codes(np.array([7, 3, 7, 9]))]
    [[3, 7, 9], [1, 0, 1, 2]]
    """
    if values.size == 0:
        return values, np.empty(0, dtype=np.intp)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo > values.size + 4096:
        uniq, inverse = np.unique(values, return_inverse=True)
        return uniq, inverse.reshape(-1)
    offset = values - lo
    seen = np.zeros(hi - lo + 1, dtype=bool)
    seen[offset] = True
    rank = np.cumsum(seen, dtype=np.intp)
    rank -= 1
    return np.flatnonzero(seen) + lo, rank[offset]


def tile_image_columns(
    table: np.ndarray, sequence_index: np.ndarray, sequence_keys: tuple[str, ...]
) -> TileImageColumns:
    """The columns of a tile's packed image records (`tile_rec`: id, z26 code, capture time,
    compass, pano, organization, creator, sequence row number; one row per image)."""
    return TileImageColumns(
        ids=table[:, 0], codes=table[:, 1], captured_at_ms=table[:, 2],
        compass_deg=table[:, 3], is_pano=table[:, 4].astype(bool),
        organization_ids=table[:, 5], creator_ids=table[:, 6],
        sequence_index=sequence_index.reshape(-1), sequence_keys=sequence_keys,
    )


def tile_line_from_row(r: tuple[Any, ...]) -> TileLine:
    """A TileLine from a row of `TILE_LINES_SQL` (`coords` as bytes on both backends)."""
    return TileLine(r[0], bytes(r[1]), r[2], r[3], bool(r[4]), r[5], r[6])


class SingleLayerTileReads:
    """`tile_images`, `tile_overview` and `tile_sequence_lines` of the Store protocol as the
    one-layer forms of the backend's `tile_content`."""

    async def tile_content(self, z: int, x: int, y: int, layers: Seq[str], *,
                           computed: bool = False, epoch: int | None = None) -> TileContent:
        raise NotImplementedError

    async def tile_images(self, z: int, x: int, y: int) -> TileImageColumns:
        """Every image inside a tile (the z14 `image` layer)."""
        images = (await self.tile_content(z, x, y, ("image",))).images
        assert images is not None
        return images

    async def tile_overview(self, z: int, x: int, y: int) -> TileImageColumns:
        """The representative images of a z0–5 tile."""
        overview = (await self.tile_content(z, x, y, ("overview",))).overview
        assert overview is not None
        return overview

    async def tile_sequence_lines(self, z: int, x: int, y: int) -> list[TileLine]:
        """The pre-clipped sequence lines of a z6–14 tile."""
        lines = (await self.tile_content(z, x, y, ("sequence",))).lines
        assert lines is not None
        return lines


def with_computed(image: Image, fields: ComputedFields) -> Image:
    """`image` with the computed fields of `fields` (`merge_cc` None keeps the stored one)."""
    return replace(
        image, computed_lon=fields.computed_lon, computed_lat=fields.computed_lat,
        computed_altitude_m=fields.computed_altitude_m,
        computed_compass_angle_deg=fields.computed_compass_angle_deg,
        computed_rotation=fields.computed_rotation, atomic_scale=fields.atomic_scale,
        camera_parameters=fields.camera_parameters, assets=fields.assets,
        merge_cc=image.merge_cc if fields.merge_cc is None else fields.merge_cc)


def computed_updates(
    stored: dict[int, Image], fields: Seq[ComputedFields]
) -> tuple[list[Image], list[str]]:
    """What `Store.set_computed_fields` writes: the stored images whose fields change (with
    their new values; unknown ids are skipped, the last entry of an id wins), and the
    sequences, in order, whose computed tile index must be rebuilt (an image's computed
    position or angle changed)."""
    latest = {f.image_id: f for f in fields}
    changed: list[Image] = []
    moved: set[str] = set()
    for image_id, f in latest.items():
        old = stored.get(image_id)
        if old is None:
            continue
        new = with_computed(old, f)
        if new != old:
            changed.append(new)
            if tile_position(new, computed=True) != tile_position(old, computed=True):
                moved.add(new.sequence_id)
    return changed, sorted(moved)


def map_feature_rows(features: Seq[MapFeature]) -> tuple[list[tuple[Any, ...]], set[int]]:
    """The `map_features` rows of `features` (columns id, object_value, object_type, lon, lat,
    aligned_direction_deg, first_seen_at_ms, last_seen_at_ms, qk) and the z14 tiles (as the
    quadkey prefix the feature epochs use) they lie in."""
    keys = point_keys([f.lon for f in features], [f.lat for f in features])
    rows = [(f.id, f.object_value, f.object_type, f.lon, f.lat, f.aligned_direction_deg,
             f.first_seen_at_ms, f.last_seen_at_ms, qk)
            for f, qk in zip(features, keys, strict=True)]
    return rows, {qk >> FEATURE_TILE_SHIFT for qk in keys}


#: A feature's quadkey shifted right by this gives its z14 tile (the epoch key).
FEATURE_TILE_SHIFT = 2 * (QK_ZOOM - IMAGE_ZOOM)
