"""wayview.tiles.policy: the four tilesets, which layers each zoom serves, and their properties.

mly1_public and mly1_computed_public:
- `overview` z0–5, points: id, captured_at, sequence_id, is_pano
- `sequence` z6–14, lines: id (str), image_id, captured_at, is_pano, organization_id (if owned),
  creator_id
- `image` z14, points: id, captured_at, compass_angle, sequence_id, is_pano,
  organization_id (if owned), creator_id

mly_map_feature_point (`point`) and mly_map_feature_traffic_sign (`traffic_sign`), z14 points:
id, value, first_seen_at, last_seen_at. Property types are those of spec §4.3.

Until the processing pipeline computes positions, `mly1_computed_public` serves the original
positions and angles (the spec's fallback), so both image tilesets share one index and cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from wayview.tiles.index import IMAGE_ZOOM, OVERVIEW_MAX_ZOOM, SEQUENCE_ZOOMS

TILE_VERSION = "2"


@dataclass(frozen=True, slots=True)
class Tileset:
    """One tileset: which index group it reads and, for map features, which object type."""

    name: str
    group: str  # "images" or "features" (the tile_epochs group)
    object_type: str | None = None
    layer: str | None = None


TILESETS: dict[str, Tileset] = {
    "mly1_public": Tileset("mly1_public", "images"),
    "mly1_computed_public": Tileset("mly1_computed_public", "images"),
    "mly_map_feature_point": Tileset("mly_map_feature_point", "features", "point", "point"),
    "mly_map_feature_traffic_sign": Tileset(
        "mly_map_feature_traffic_sign", "features", "trafficsign", "traffic_sign"
    ),
}


def image_layers(z: int) -> tuple[str, ...]:
    """The layers of the image tilesets at zoom z.

    >>> image_layers(3), image_layers(10), image_layers(14)
    (('overview',), ('sequence',), ('sequence', 'image'))
    """
    layers: list[str] = []
    if z <= OVERVIEW_MAX_ZOOM:
        layers.append("overview")
    if z in SEQUENCE_ZOOMS:
        layers.append("sequence")
    if z == IMAGE_ZOOM:
        layers.append("image")
    return tuple(layers)
