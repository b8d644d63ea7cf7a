"""wayview.tiles.policy: the four tilesets, which layers each zoom serves, and their properties.

mly1_public and mly1_computed_public:
- `overview` z0–5, points: id, captured_at, sequence_id, is_pano
- `sequence` z6–14, lines: id (str), image_id, captured_at, is_pano, organization_id (if owned),
  creator_id
- `image` z14, points: id, captured_at, compass_angle, sequence_id, is_pano,
  organization_id (if owned), creator_id

mly_map_feature_point (`point`) and mly_map_feature_traffic_sign (`traffic_sign`), z14 points:
id, value, first_seen_at, last_seen_at. Property types are those of spec §4.3.

`mly1_public` draws every image at its original position and angle. `mly1_computed_public`
draws it at its computed position and angle, each falling back to the original one while the
image has none (spec §4.2): its points, the overview's representatives and the sequence lines
(through the computed positions, in capture order) all move with the computed positions, and a
point lies only in the tile holding its computed position. Each of the two has its own tile
index (`wayview.tiles.index.sequence_rows(..., computed=True)`), its own epoch group
("images", "computed") and its own cache entries, so a change of computed positions
(`Store.set_computed_fields`) renders the computed tiles again and leaves `mly1_public` as is.
"""

from __future__ import annotations

from dataclasses import dataclass

from wayview.tiles.index import IMAGE_ZOOM, OVERVIEW_MAX_ZOOM, SEQUENCE_ZOOMS

TILE_VERSION = "2"
#: Zooms whose `sequence` layer is thinned by pixel coverage (wayview.tiles.generalise) and
#: kept rendered in the store (wayview.store.parts.rendered); z14 carries every line.
GENERALISED_ZOOMS = range(OVERVIEW_MAX_ZOOM + 1, IMAGE_ZOOM)


@dataclass(frozen=True, slots=True)
class Tileset:
    """One tileset: which index group it reads and, for map features, which object type."""

    name: str
    group: str  # the tile_epochs group: "images", "computed" (their positions) or "features"
    object_type: str | None = None
    layer: str | None = None

    @property
    def computed(self) -> bool:
        """Whether images are drawn at their computed positions (`mly1_computed_public`)."""
        return self.group == "computed"


TILESETS: dict[str, Tileset] = {
    "mly1_public": Tileset("mly1_public", "images"),
    "mly1_computed_public": Tileset("mly1_computed_public", "computed"),
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
