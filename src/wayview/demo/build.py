"""wayview.demo.build: turn the demo plan into JPEGs, import them, add map features/detections."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wayview.blobs.base import BlobStore
from wayview.demo.plan import (
    ORGANIZATIONS,
    USERS,
    PlannedDetection,
    PlannedFeature,
    PlannedSequence,
    local_to_lat_lon,
    plan_demo,
    plan_features,
    plan_loose_detections,
)
from wayview.fixtures import Overlay, build_map_description, write_jpeg
from wayview.model.entities import Detection, Image, ImageSearch, MapFeature
from wayview.settings import Settings
from wayview.store.base import Store

__all__ = ["DemoInfo", "DemoProgress", "build_demo"]

#: Called with (images imported so far, images in the demo) as the importer advances.
DemoProgress = Callable[[int, int], None]

_JPEG_QUALITY = 80
_EMAIL_DOMAIN = "demo.wayview.invalid"
_MATCH_MAX_DT_MS = 1500
_MATCH_MAX_DIST_M = 3.0
_DETECTION_DELAY_H = (2.0, 72.0)  # detections are "created" hours after capture
_BBOX_MARGIN_DEG = 0.002

_RGB = tuple[int, int, int]
#: Overlay colours (fill, outline) by value prefix; the first match wins.
_OVERLAY_COLOURS: tuple[tuple[str, _RGB, _RGB], ...] = (
    ("regulatory--stop", (200, 25, 30), (250, 250, 250)),
    ("regulatory--", (240, 240, 240), (200, 20, 20)),
    ("warning--", (250, 245, 235), (205, 25, 25)),
    ("information--", (30, 85, 190), (245, 245, 245)),
    ("object--street-light", (95, 95, 100), (30, 30, 30)),
    ("object--support", (115, 85, 55), (50, 35, 20)),
    ("object--fire-hydrant", (215, 45, 30), (90, 20, 10)),
    ("object--bench", (145, 100, 55), (60, 40, 20)),
    ("object--trash-can", (40, 110, 60), (15, 45, 25)),
    ("object--traffic-light", (25, 25, 25), (230, 190, 30)),
    ("marking--", (245, 245, 245), (200, 200, 200)),
    ("object--vehicle--bus", (225, 180, 40), (60, 45, 10)),
    ("object--vehicle--bicycle", (40, 40, 40), (200, 200, 200)),
    ("object--vehicle", (60, 90, 160), (20, 30, 60)),
    ("human--", (185, 125, 95), (60, 40, 30)),
)


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """What `build_demo` created; ids are the stored node ids (random per build)."""

    users: dict[str, int]
    organizations: dict[str, int]
    sequence_count: int
    image_count: int
    pano_image_count: int
    map_feature_count: int
    detection_count: int
    sample_image_id: int
    sample_image_lon_lat: tuple[float, float]
    sample_sequence_id: str
    sample_pano_image_id: int | None
    sample_map_feature_id: int | None
    bbox: tuple[float, float, float, float]  # west, south, east, north
    images_requested: int
    seed: int

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; node ids are digit strings as on the wire (spec §1.3)."""
        data = asdict(self)
        data["users"] = {k: str(v) for k, v in self.users.items()}
        data["organizations"] = {k: str(v) for k, v in self.organizations.items()}
        for key in ("sample_image_id", "sample_pano_image_id", "sample_map_feature_id"):
            data[key] = None if data[key] is None else str(data[key])
        data["bbox"] = list(self.bbox)
        data["sample_image_lon_lat"] = list(self.sample_image_lon_lat)
        return data

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> DemoInfo:
        """The inverse of `to_json_dict`."""

        def opt_int(value: Any) -> int | None:
            return None if value is None else int(value)

        lon, lat = (float(v) for v in data["sample_image_lon_lat"])
        bbox = tuple(float(v) for v in data["bbox"])
        if len(bbox) != 4:
            raise ValueError("bbox needs four numbers")
        return cls(
            users={k: int(v) for k, v in data["users"].items()},
            organizations={k: int(v) for k, v in data["organizations"].items()},
            sequence_count=int(data["sequence_count"]),
            image_count=int(data["image_count"]),
            pano_image_count=int(data["pano_image_count"]),
            map_feature_count=int(data["map_feature_count"]),
            detection_count=int(data["detection_count"]),
            sample_image_id=int(data["sample_image_id"]),
            sample_image_lon_lat=(lon, lat),
            sample_sequence_id=str(data["sample_sequence_id"]),
            sample_pano_image_id=opt_int(data["sample_pano_image_id"]),
            sample_map_feature_id=opt_int(data["sample_map_feature_id"]),
            bbox=(bbox[0], bbox[1], bbox[2], bbox[3]),
            images_requested=int(data["images_requested"]),
            seed=int(data["seed"]),
        )

    def to_json(self) -> str:
        """Pretty JSON of `to_json_dict`."""
        return json.dumps(self.to_json_dict(), indent=2, ensure_ascii=False)


# -- JPEGs -----------------------------------------------------------------------------------


def _colours(value: str) -> tuple[_RGB, _RGB]:
    for prefix, fill, outline in _OVERLAY_COLOURS:
        if value.startswith(prefix):
            return fill, outline
    return (200, 200, 200), (40, 40, 40)


def _overlays(
    features: Iterable[PlannedFeature], loose: Iterable[PlannedDetection]
) -> dict[tuple[int, int], list[Overlay]]:
    """What to draw into each planned image so that detections outline something visible."""
    out: dict[tuple[int, int], list[Overlay]] = {}
    for feature in features:
        fill, outline = _colours(feature.object_value)
        for s in feature.sightings:
            out.setdefault((s.sequence_index, s.image_index), []).append(
                Overlay(s.ring, fill, outline)
            )
    for d in loose:
        fill, outline = _colours(d.value)
        out.setdefault((d.sequence_index, d.image_index), []).append(Overlay(d.ring, fill, outline))
    return out


def _image_filename(index: int) -> str:
    return f"IMG_{index:04d}.jpg"


def _write_sequence(
    root: Path,
    seq: PlannedSequence,
    overlays: Mapping[tuple[int, int], Sequence[Overlay]],
    seed: int,
) -> Path:
    """Write one planned sequence's JPEGs into `root/<folder_name>`; returns that folder."""
    folder = root / seq.folder_name
    folder.mkdir(parents=True, exist_ok=True)
    cam = seq.camera
    for img in seq.images:
        name = _image_filename(img.index)
        description = None
        if seq.map_descriptions:
            description = build_map_description(
                lat=img.lat,
                lon=img.lon,
                captured_at=img.captured_at,
                compass_deg=img.compass_deg,
                altitude_m=img.altitude_m,
                make=cam.make,
                model=cam.model,
                filename=name,
            )
        # drawn back to front so nearer objects cover farther ones
        drawn = sorted(
            overlays.get((seq.index, img.index), ()),
            key=lambda o: max(v for _u, v in o.ring),
        )
        write_jpeg(
            folder / name,
            width=seq.width,
            height=seq.height,
            lat=img.lat,
            lon=img.lon,
            captured_at=img.captured_at,
            compass_deg=img.compass_deg,
            altitude_m=img.altitude_m,
            make=cam.make,
            model=cam.model,
            pano=cam.pano,
            map_description=description,
            focal_35mm=cam.focal_35mm,
            seed=seed,
            quality=_JPEG_QUALITY,
            label=f"{seq.username}  seq {seq.index:02d}  #{img.index:04d}",
            overlays=drawn,
        )
    return folder


# -- matching stored images back to the plan -------------------------------------------------


def _local_m(lat: float, lon: float) -> tuple[float, float]:
    """Approximate local metres of a WGS84 point (inverse of `local_to_lat_lon`)."""
    lat0, lon0 = local_to_lat_lon(0.0, 0.0)
    y = math.radians(lat - lat0) * 6_371_008.8
    x = math.radians(lon - lon0) * 6_371_008.8 * math.cos(math.radians(lat0))
    return x, y


def _match_images(
    plan: Sequence[PlannedSequence], stored: Iterable[Image], user_ids: Mapping[str, int]
) -> dict[tuple[int, int], Image]:
    """Stored image for each (sequence index, image index) of the plan.

    Matches on (creator, capture time); if the importer rounded the time, falls back to the
    nearest planned image of the same creator within 1.5 s and 3 m.
    """
    by_key: dict[tuple[int, int], tuple[int, int]] = {}
    by_user: dict[int, list[tuple[int, int, float, float, int]]] = {}
    for seq in plan:
        uid = user_ids[seq.username]
        for img in seq.images:
            by_key[(uid, img.captured_at_ms)] = (seq.index, img.index)
            by_user.setdefault(uid, []).append(
                (seq.index, img.index, img.x_m, img.y_m, img.captured_at_ms)
            )
    matched: dict[tuple[int, int], Image] = {}
    for image in stored:
        key = by_key.get((image.creator_id, image.captured_at_ms))
        if key is None:
            x, y = _local_m(image.lat, image.lon)
            best: tuple[float, tuple[int, int]] | None = None
            for s_idx, i_idx, px, py, t_ms in by_user.get(image.creator_id, ()):
                if abs(t_ms - image.captured_at_ms) > _MATCH_MAX_DT_MS:
                    continue
                d = math.hypot(px - x, py - y)
                if d <= _MATCH_MAX_DIST_M and (best is None or d < best[0]):
                    best = (d, (s_idx, i_idx))
            key = None if best is None else best[1]
        if key is not None:
            matched.setdefault(key, image)
    return matched


# -- the build -------------------------------------------------------------------------------


async def _ensure_users(store: Store) -> dict[str, int]:
    ids: dict[str, int] = {}
    for user in USERS:
        existing = await store.get_user_by_username(user.username)
        if existing is None:
            existing = await store.create_user(
                user.username, email=f"{user.username}@{_EMAIL_DOMAIN}"
            )
        ids[user.username] = existing.id
    return ids


async def _ensure_organizations(store: Store, user_ids: Mapping[str, int]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for org in ORGANIZATIONS:
        created = await store.create_organization(
            org.slug, name=org.name, description=org.description
        )
        for member in org.members:
            await store.add_organization_member(created.id, user_ids[member])
        ids[org.slug] = created.id
    return ids


async def _import_sequences(
    store: Store,
    blobs: BlobStore,
    settings: Settings,
    plan: Sequence[PlannedSequence],
    overlays: Mapping[tuple[int, int], Sequence[Overlay]],
    org_ids: Mapping[str, int],
    seed: int,
    progress: DemoProgress | None,
) -> None:
    """Generate each sequence's folder (one ahead, in a thread) and import it."""
    from wayview.ingest.importer import import_paths

    total = sum(len(s.images) for s in plan)
    done = 0

    def advance(files: int) -> None:
        nonlocal done
        done += files
        if progress is not None:
            progress(done, total)

    # The demo's rendered scenes hold no people or plates: skip the (slow) face and plate
    # detectors. Its detections and map features are planned (drawn into the scenes and
    # inserted afterwards), so the sign detector and triangulation stay off too. Rendered
    # scenes are no photographs for structure from motion (and it would keep the CPU busy for
    # an hour), so positions come from the GPS track. Every other pipeline stage runs as for
    # real uploads.
    demo_settings = settings.model_copy(update={
        "pipeline": settings.pipeline.model_copy(update={
            "blurrer": "none", "detectors": "none", "map_features": False,
            "positioner": "track"})})
    with tempfile.TemporaryDirectory(prefix="wayview-demo-") as tmp:
        root = Path(tmp)
        pending: asyncio.Task[Path] | None = None
        try:
            for k, seq in enumerate(plan):
                if pending is None:
                    pending = asyncio.create_task(
                        asyncio.to_thread(_write_sequence, root, seq, overlays, seed)
                    )
                folder = await pending
                pending = None
                if k + 1 < len(plan):
                    pending = asyncio.create_task(
                        asyncio.to_thread(_write_sequence, root, plan[k + 1], overlays, seed)
                    )
                org_id = None if seq.organization_slug is None else org_ids[seq.organization_slug]
                report = await import_paths(
                    store,
                    blobs,
                    demo_settings,
                    [folder],
                    username=seq.username,
                    organization_id=org_id,
                    progress=advance,
                )
                shutil.rmtree(folder, ignore_errors=True)
                if report.imported != len(seq.images):
                    reasons = sorted({skip.reason for skip in report.skipped})
                    raise RuntimeError(
                        f"the importer took {report.imported} of {len(seq.images)} demo images "
                        f"of {seq.folder_name}: {'; '.join(reasons) or 'no reason given'}"
                    )
        finally:
            if pending is not None:
                # let the writer thread finish before the temporary folder goes away
                await asyncio.gather(pending, return_exceptions=True)


def _features_and_detections(
    feature_ids: Sequence[int],
    detection_ids: Sequence[int],
    features: Sequence[PlannedFeature],
    loose: Sequence[PlannedDetection],
    matched: Mapping[tuple[int, int], Image],
    seed: int,
) -> tuple[list[MapFeature], list[Detection]]:
    rng = np.random.default_rng([seed, 5])
    free_ids = iter(detection_ids)
    map_features: list[MapFeature] = []
    detections: list[Detection] = []

    def delay_ms() -> int:
        return int(rng.uniform(*_DETECTION_DELAY_H) * 3_600_000)

    for feature_id, feature in zip(feature_ids, features, strict=True):
        seen = [
            (s, matched[(s.sequence_index, s.image_index)])
            for s in feature.sightings
            if (s.sequence_index, s.image_index) in matched
        ]
        if not seen:
            continue
        times = [img.captured_at_ms for _s, img in seen]
        map_features.append(
            MapFeature(
                id=feature_id,
                object_value=feature.object_value,
                object_type=feature.object_type,
                lon=feature.lon,
                lat=feature.lat,
                first_seen_at_ms=min(times),
                last_seen_at_ms=max(times),
                aligned_direction_deg=feature.aligned_direction_deg,
            )
        )
        for sighting, img in seen:
            detections.append(
                Detection(
                    id=next(free_ids),
                    image_id=img.id,
                    value=feature.object_value,
                    geometry=(sighting.ring,),
                    created_at_ms=img.captured_at_ms + delay_ms(),
                    map_feature_id=feature_id,
                )
            )
    for d in loose:
        loose_img = matched.get((d.sequence_index, d.image_index))
        if loose_img is None:
            continue
        detections.append(
            Detection(
                id=next(free_ids),
                image_id=loose_img.id,
                value=d.value,
                geometry=(d.ring,),
                created_at_ms=loose_img.captured_at_ms + delay_ms(),
            )
        )
    return map_features, detections


def _plan_bbox(plan: Sequence[PlannedSequence]) -> tuple[float, float, float, float]:
    lats = [img.lat for s in plan for img in s.images]
    lons = [img.lon for s in plan for img in s.images]
    return (
        min(lons) - _BBOX_MARGIN_DEG,
        min(lats) - _BBOX_MARGIN_DEG,
        max(lons) + _BBOX_MARGIN_DEG,
        max(lats) + _BBOX_MARGIN_DEG,
    )


async def build_demo(
    store: Store,
    blobs: BlobStore,
    settings: Settings,
    *,
    images: int = 2000,
    seed: int = 7,
    progress: DemoProgress | None = None,
) -> DemoInfo:
    """Create the demo city in an empty store: users, organizations, sequences, map features.

    The JPEGs are generated into a temporary folder and go through the real importer
    (`wayview.ingest.importer.import_paths`), one folder per sequence. Positions, times and values
    depend only on `(images, seed)`; node and sequence ids are random.

    Args:
        store: an opened store without demo data (users are reused if they exist; organizations
            must not exist yet).
        blobs: where the importer puts the image bytes.
        settings: passed to the importer.
        images: how many images to create (26 sequences from about 2,000 up).
        seed: varies streets, routes, times and features.
        progress: called with (images imported so far, total) as the import advances.

    Raises:
        RuntimeError: the importer skipped some of the generated images.

    Returns:
        A summary with sample ids for the banner and tests.
    """
    plan = plan_demo(images, seed)
    features = plan_features(plan, seed)
    loose = plan_loose_detections(plan, seed)
    user_ids = await _ensure_users(store)
    org_ids = await _ensure_organizations(store, user_ids)
    await _import_sequences(
        store, blobs, settings, plan, _overlays(features, loose), org_ids, seed, progress
    )

    west, south, east, north = _plan_bbox(plan)
    page = await store.search_images(ImageSearch(bbox=(west, south, east, north), limit=None))
    demo_user_ids = set(user_ids.values())
    stored = [img for img in page.items if img.creator_id in demo_user_ids]
    matched = _match_images(plan, stored, user_ids)

    detection_total = sum(len(f.sightings) for f in features) + len(loose)
    feature_ids = await store.reserve_ids("map_feature", len(features)) if features else []
    detection_ids = await store.reserve_ids("detection", detection_total) if detection_total else []
    map_features, detections = _features_and_detections(
        feature_ids, detection_ids, features, loose, matched, seed
    )
    if map_features:
        await store.insert_map_features(map_features)
    if detections:
        await store.insert_detections(detections)

    first = plan[0].images[len(plan[0].images) // 2]
    sample = matched.get((plan[0].index, first.index)) or (stored[0] if stored else None)
    if sample is None:
        raise RuntimeError("the demo import stored no images")
    pano_sample: Image | None = None
    for seq in plan:
        if seq.pano:
            pano_sample = matched.get((seq.index, seq.images[len(seq.images) // 2].index))
            break
    stop_signs = [f for f in map_features if f.object_value == "regulatory--stop--g1"]
    sample_feature = stop_signs[0] if stop_signs else (map_features[0] if map_features else None)
    lons = [img.lon for img in stored] + [f.lon for f in map_features]
    lats = [img.lat for img in stored] + [f.lat for f in map_features]
    return DemoInfo(
        users=dict(user_ids),
        organizations=dict(org_ids),
        sequence_count=len({img.sequence_id for img in stored}),
        image_count=len(stored),
        pano_image_count=sum(1 for img in stored if img.is_pano),
        map_feature_count=len(map_features),
        detection_count=len(detections),
        sample_image_id=sample.id,
        sample_image_lon_lat=(sample.lon, sample.lat),
        sample_sequence_id=sample.sequence_id,
        sample_pano_image_id=None if pano_sample is None else pano_sample.id,
        sample_map_feature_id=None if sample_feature is None else sample_feature.id,
        bbox=(
            math.floor(min(lons) * 10_000) / 10_000,
            math.floor(min(lats) * 10_000) / 10_000,
            math.ceil(max(lons) * 10_000) / 10_000,
            math.ceil(max(lats) * 10_000) / 10_000,
        ),
        images_requested=images,
        seed=seed,
    )
