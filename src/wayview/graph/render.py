"""wayview.graph.render: turn entities plus a field tree into Graph API JSON objects.

References are loaded in batches per level (one store call per reference per response), so a
2,000-row search with `creator,organization{name},detections` costs a handful of queries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from wayview.blobs.base import THUMB_WIDTHS
from wayview.errors import InvalidParameter
from wayview.model.detection_geometry import encode_polygon
from wayview.model.entities import (
    ASSET_CLUSTER,
    ASSET_MESH,
    Detection,
    Image,
    MapFeature,
    Organization,
    User,
)
from wayview.model.fields import NODE_TYPES, FieldTree, selection
from wayview.store.base import Store

Json = dict[str, Any]
DEFAULT_CAMERA_PARAMETERS = [0.85, 0.0, 0.0]  # what MapillaryJS assumes (spec §3.2)
_MISSING = object()


def iso_utc(ms: int) -> str:
    """Milliseconds → `2021-05-22T15:20:45+0000` (spec §3.4).

    >>> iso_utc(1621696845000)
    '2021-05-22T15:20:45+0000'
    """
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def point(lon: float, lat: float) -> Json:
    """A GeoJSON Point."""
    return {"type": "Point", "coordinates": [lon, lat]}


class AssetUrl(Protocol):
    """The URL of one image asset: `variant` of media version `version` (issue #17, re-blur:
    the thumbnails, original and tiles of version N ≥ 1 live under `…/v{N}/`; version 0 and
    the mesh keep the unversioned URLs)."""

    def __call__(self, image_id: int, variant: str, version: int = 0) -> str: ...


def served_url(base_url: str, image_id: int, variant: str, version: int = 0) -> str:
    """The URL of an asset wayview serves itself under `/media/images/`.

    >>> served_url("http://x", 7, "thumb_256"), served_url("http://x", 7, "thumb_256", 2)
    ('http://x/media/images/7/thumb_256.jpg', 'http://x/media/images/7/v2/thumb_256.jpg')
    >>> served_url("http://x", 7, "mesh", 2)
    'http://x/media/images/7/mesh.pbf'
    """
    if variant == "mesh":
        return f"{base_url}/media/images/{image_id}/mesh.pbf"
    folder = f"v{int(version)}/" if version else ""
    return f"{base_url}/media/images/{image_id}/{folder}{variant}.jpg"


def _image_scalar(asset_url: AssetUrl) -> Callable[[Image, str], Any]:
    def get(im: Image, name: str) -> Any:
        match name:
            case "id":
                return str(im.id)
            case "geometry":
                return point(im.lon, im.lat)
            case "computed_geometry":
                if im.computed_lon is not None and im.computed_lat is not None:
                    return point(im.computed_lon, im.computed_lat)
                return point(im.lon, im.lat)
            case "altitude":
                return im.altitude_m
            case "computed_altitude":
                return im.computed_altitude_m if im.computed_altitude_m is not None \
                    else im.altitude_m
            case "compass_angle":
                return im.compass_angle_deg
            case "computed_compass_angle":
                return im.computed_compass_angle_deg \
                    if im.computed_compass_angle_deg is not None else im.compass_angle_deg
            case "camera_type":
                return im.camera_type
            case "camera_parameters":
                if im.camera_type == "spherical":
                    return None
                return list(im.camera_parameters) if im.camera_parameters \
                    else DEFAULT_CAMERA_PARAMETERS
            case "captured_at":
                return im.captured_at_ms
            case "exif_orientation":
                return im.exif_orientation
            case "width":
                return im.width
            case "height":
                return im.height
            case "make":
                return im.make or None
            case "model":
                return im.model or None
            case "is_pano":
                return im.is_pano
            case "sequence":
                return im.sequence_id
            case "quality_score":
                return im.quality_score
            case "thumb_256_url" | "thumb_1024_url" | "thumb_2048_url" | "thumb_original_url":
                variant = name.removesuffix("_url")
                if variant != "thumb_original":
                    assert variant in THUMB_WIDTHS
                else:
                    variant = "original"
                return asset_url(im.id, variant, im.media_version)
            case "computed_rotation":
                return list(im.computed_rotation) if im.computed_rotation else None
            case "atomic_scale":
                return im.atomic_scale
            case "merge_cc":
                return im.merge_cc
            case _:
                return None

    return get


def _feature_scalar(f: MapFeature, name: str) -> Any:
    match name:
        case "id":
            return str(f.id)
        case "object_value":
            return f.object_value
        case "object_type":
            return f.object_type
        case "geometry":
            return point(f.lon, f.lat)
        case "aligned_direction":
            return f.aligned_direction_deg
        case "first_seen_at":
            return iso_utc(f.first_seen_at_ms)
        case "last_seen_at":
            return iso_utc(f.last_seen_at_ms)
    return None


def _detection_scalar(d: Detection, name: str) -> Any:
    match name:
        case "id":
            return str(d.id)
        case "value":
            return d.value
        case "geometry":
            return encode_polygon(d.geometry)
        case "created_at":
            return iso_utc(d.created_at_ms)
    return None


def _organization_scalar(o: Organization, name: str) -> Any:
    if name == "id":
        return str(o.id)
    value = getattr(o, name, None)
    return value or None


def _user_scalar(u: User, name: str) -> Any:
    if name == "id":
        return str(u.id)
    if name == "username":
        return u.username or None
    return None


class Budget:
    """How many more JSON objects one response may render (`graph.max_rendered_objects`).

    Spent level by level, before a level's references are loaded: a selection such as
    `detections{image{detections{image…}}}` doubles at every level and is refused with E9
    instead of growing until memory runs out.

    >>> b = Budget(3); b.spend(2); b.spend(2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wayview.errors.InvalidParameter: Invalid parameter fields: the selection renders more ...
    """

    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = self.left = limit

    def spend(self, count: int) -> None:
        """Take `count` objects from the budget, or raise E9."""
        self.left -= count
        if self.left < 0:
            raise InvalidParameter(
                "fields", f"the selection renders more than {self.limit} objects "
                "(graph.max_rendered_objects); ask for fewer nested fields or a smaller limit")


class Renderer:
    """Renders entities of one node type for a field tree, loading references in batches."""

    def __init__(self, store: Store, base_url: str, asset_url: AssetUrl | None = None,
                 max_objects: int = 100_000) -> None:
        self.store = store
        self.base_url = base_url
        self.max_objects = max_objects

        def served_here(image_id: int, variant: str, version: int = 0) -> str:
            return served_url(base_url, image_id, variant, version)

        self.asset_url: AssetUrl = asset_url or served_here

        self._scalars: dict[str, Callable[[Any, str], Any]] = {
            "Image": _image_scalar(self.asset_url),
            "MapFeature": _feature_scalar,
            "Detection": _detection_scalar,
            "Organization": _organization_scalar,
            "User": _user_scalar,
            "Asset": lambda asset, name: asset.get(name),
        }

    def budget(self) -> Budget:
        """A fresh object budget for one response (share it across its `render` calls)."""
        return Budget(self.max_objects)

    async def render(self, node_type: str, items: Sequence[Any], tree: FieldTree,
                     budget: Budget | None = None) -> list[Json]:
        """One JSON object per item with the requested fields (+ `id`), absent values omitted.

        Raises E9 (InvalidParameter) when the response would pass its object budget.
        """
        if budget is None:
            budget = self.budget()
        budget.spend(len(items))
        spec = NODE_TYPES[node_type]
        scalar = self._scalars[node_type]
        ref_values: dict[str, list[Any]] = {}
        for name, sub in tree.items():
            ref = spec.refs.get(name)
            if ref is not None:
                ref_values[name] = await self._load_ref(node_type, name, items,
                                                        selection(sub, ref), budget)
        out = []
        for index, item in enumerate(items):
            obj: Json = {}
            for name in tree:
                value = ref_values[name][index] if name in ref_values else scalar(item, name)
                if value is not None:
                    obj[name] = value
            if "id" in spec.scalars and "id" not in obj:
                obj["id"] = scalar(item, "id")
            out.append(obj)
        return out

    async def _load_ref(
        self, node_type: str, name: str, items: Sequence[Any], sub: FieldTree, budget: Budget
    ) -> list[Any]:
        """The rendered value of reference `name` for each item (None = omit)."""
        key = (node_type, name)
        if key == ("Image", "creator"):
            users = [User(id=im.creator_id, username=im.creator_username) for im in items]
            return list(await self.render("User", users, sub, budget))
        if key == ("Image", "organization"):
            org_ids = {im.organization_id for im in items if im.organization_id is not None}
            if set(sub) <= {"id"}:
                orgs = {oid: Organization(id=oid, slug="") for oid in org_ids}
            else:
                orgs = await self.store.get_organizations(sorted(org_ids))
            return await self._render_optional("Organization", items, sub,
                                               lambda im: orgs.get(im.organization_id), budget)
        if key == ("Image", "detections"):
            by_image = await self.store.detections_for_images([im.id for im in items])
            return await self._render_edges("Detection", [by_image.get(im.id, [])
                                                          for im in items], sub, budget)
        if key == ("MapFeature", "images"):
            ids_by_feature = await self.store.image_ids_for_features([f.id for f in items])
            wanted = sorted({i for ids in ids_by_feature.values() for i in ids})
            images = await self.store.get_images(wanted)
            # Hidden images (issue #17) are never nested under a map feature (the store reads
            # the flag with each image).
            unknown = [i for i, im in images.items() if im.hidden is None]
            for image_id in [i for i, im in images.items() if im.hidden] + (
                    sorted(await self.store.hidden_among(unknown)) if unknown else []):
                images.pop(image_id, None)
            groups = [[images[i] for i in ids_by_feature.get(f.id, []) if i in images]
                      for f in items]
            return await self._render_edges("Image", groups, sub, budget)
        if key == ("Detection", "image"):
            images = await self.store.get_images(sorted({d.image_id for d in items}))
            return await self._render_optional("Image", items, sub,
                                               lambda d: images.get(d.image_id), budget)
        if key == ("Image", "mesh"):
            assets = [{"id": str(im.id), "url": self.asset_url(im.id, "mesh")}
                      if im.assets & ASSET_MESH else None for im in items]
            return await self._render_optional("Asset", assets, sub, lambda a: a, budget)
        if key == ("Image", "sfm_cluster"):
            assets = [{"id": im.sequence_id, "url": f"{self.base_url}/media/sequences/"
                       f"{im.sequence_id}/cluster.json.z"}
                      if im.assets & ASSET_CLUSTER else None for im in items]
            return await self._render_optional("Asset", assets, sub, lambda a: a, budget)
        # Without a reconstruction mesh/sfm_cluster are omitted (never {"url": null}, §3.2).
        return [None] * len(items)

    async def _render_optional(
        self, node_type: str, items: Sequence[Any], sub: FieldTree,
        pick: Callable[[Any], Any], budget: Budget,
    ) -> list[Any]:
        targets = [pick(item) for item in items]
        present = [t for t in targets if t is not None]
        rendered = iter(await self.render(node_type, present, sub, budget))
        return [next(rendered) if t is not None else None for t in targets]

    async def _render_edges(
        self, node_type: str, groups: list[list[Any]], sub: FieldTree, budget: Budget
    ) -> list[Any]:
        flat = [x for group in groups for x in group]
        rendered = iter(await self.render(node_type, flat, sub, budget))
        return [{"data": [next(rendered) for _ in group]} for group in groups]
