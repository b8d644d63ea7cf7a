"""wayview.testing: public test helpers: settings on a temp folder, seed builders, an app client."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from collections.abc import Sequence as Seq
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from wayview.api.app import create_app
from wayview.auth.tokens import create_app as create_application
from wayview.auth.tokens import issue_user_token
from wayview.blobs import LocalBlobs
from wayview.blobs.base import BlobStore
from wayview.ids import new_sequence_key
from wayview.model.entities import Detection, Image, MapFeature, Organization, Sequence, User
from wayview.ratelimit import RateLimiter
from wayview.settings import Settings
from wayview.store import Store, open_store

BASE_URL = "http://wayview.test"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings on a temporary data folder, ignoring any `.env` of the developer, without
    privacy blurring (pass `pipeline={...}` to test it) and with GPS-track positions (pass
    `pipeline={"positioner": "sfm"}` for structure from motion)."""
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "public_base_url": BASE_URL,
                              # Haar cascades cost ~0.3 s per small test image; the blurring
                              # tests turn them on explicitly.
                              "pipeline": {"blurrer": "none"}}
    values.update(overrides)
    # Structure from motion (seconds per image) only where a test asks for it.
    if isinstance(values["pipeline"], dict):
        values["pipeline"] = {"positioner": "track", **values["pipeline"]}
    return Settings(_env_file=None, **values)


@asynccontextmanager
async def open_test_store(settings: Settings) -> AsyncIterator[Store]:
    """An opened store for `settings`, closed afterwards."""
    store = open_store(settings)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def app_client(
    settings: Settings, store: Store, blobs: BlobStore | None = None,
    limiter: RateLimiter | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client over the ASGI app (no socket)."""
    app = create_app(settings, store=store, blobs=blobs or LocalBlobs(settings.blobs_path),
                     limiter=limiter)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def make_image(**overrides: Any) -> Image:
    """An Image with plausible defaults; override any field."""
    values: dict[str, Any] = dict(
        id=0, sequence_id="", creator_id=0, captured_at_ms=1_619_863_200_500, lon=13.405,
        lat=52.52, width=4000, height=3000, altitude_m=35.0, compass_angle_deg=45.0,
        make="TestMake", model="TestModel",
    )
    values.update(overrides)
    return Image(**values)


@dataclass
class Seeded:
    """What `seed` created: users, tokens, sequences (image lists in capture order), features."""

    alice: User
    bob: User
    org: Organization
    client_token: str
    user_token: str
    bob_token: str
    sequences: dict[str, list[Image]] = field(default_factory=dict)
    features: list[MapFeature] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)

    @property
    def images(self) -> list[Image]:
        """All seeded images."""
        return [im for images in self.sequences.values() for im in images]


async def add_sequence(
    store: Store, creator: User, points: Seq[tuple[float, float]], *, start_ms: int,
    step_ms: int = 1000, organization_id: int | None = None, **image_overrides: Any,
) -> list[Image]:
    """Insert one sequence along `points` (lon, lat), one image per point, 1 s apart."""
    seq = Sequence(id=new_sequence_key(), creator_id=creator.id, organization_id=organization_id)
    ids = await store.reserve_ids("image", len(points))
    images = []
    for k, (image_id, (lon, lat)) in enumerate(zip(ids, points, strict=True)):
        digest = hashlib.sha256(f"{seq.id}-{k}".encode()).hexdigest()
        images.append(make_image(
            id=image_id, sequence_id=seq.id, creator_id=creator.id,
            captured_at_ms=start_ms + k * step_ms, lon=lon, lat=lat,
            organization_id=organization_id, content_sha256=digest, **image_overrides,
        ))
    await store.insert_sequence(seq, images)
    return [replace(im, creator_username=creator.username) for im in images]


async def seed(store: Store) -> Seeded:
    """A small world: two users, an org, three sequences, map features and detections."""
    alice = await store.create_user("alice", email="alice@example.org")
    bob = await store.create_user("bob")
    org = await store.create_organization("acme", name="Acme Mapping", description="Test org")
    await store.add_organization_member(org.id, alice.id)
    app = await create_application(store, "test app", owner=alice)
    user_token = (await issue_user_token(store, alice, app=app.app)).access_token
    bob_token = (await issue_user_token(store, bob, app=app.app)).access_token
    seeded = Seeded(alice=alice, bob=bob, org=org, client_token=app.client_token,
                    user_token=user_token, bob_token=bob_token)
    line = [(13.4050 + k * 0.0001, 52.5200) for k in range(10)]
    s1 = await add_sequence(store, alice, line, start_ms=1_619_863_200_500)
    s2 = await add_sequence(store, alice, [(13.4060, 52.5210 + k * 0.0001) for k in range(5)],
                            start_ms=1_619_949_600_000, organization_id=org.id,
                            make="PanoMake", model="P1", camera_type="spherical",
                            is_pano=True, width=4096, height=2048, camera_parameters=None)
    s3 = await add_sequence(store, bob, [(13.4070, 52.5190 + k * 0.0001) for k in range(4)],
                            start_ms=1_620_000_000_000, make="BobCam", model="B1",
                            compass_angle_deg=None, altitude_m=None,
                            camera_parameters=(0.5, -0.01, 0.002))
    for images in (s1, s2, s3):
        seeded.sequences[images[0].sequence_id] = images
    feature_ids = await store.reserve_ids("map_feature", 2)
    detection_ids = await store.reserve_ids("detection", 4)
    seen = [s1[2], s1[5]]
    seeded.features = [
        MapFeature(id=feature_ids[0], object_value="regulatory--stop--g1",
                   object_type="trafficsign", lon=13.4053, lat=52.52005,
                   first_seen_at_ms=seen[0].captured_at_ms, last_seen_at_ms=seen[1].captured_at_ms,
                   aligned_direction_deg=90.0),
        MapFeature(id=feature_ids[1], object_value="object--street-light", object_type="point",
                   lon=13.4058, lat=52.51995, first_seen_at_ms=s1[7].captured_at_ms,
                   last_seen_at_ms=s1[7].captured_at_ms),
    ]
    await store.insert_map_features(seeded.features)
    box = ((0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6))
    seeded.detections = [
        Detection(id=detection_ids[0], image_id=seen[0].id, value="regulatory--stop--g1",
                  geometry=(box,), created_at_ms=1_621_531_741_000, map_feature_id=feature_ids[0]),
        Detection(id=detection_ids[1], image_id=seen[1].id, value="regulatory--stop--g1",
                  geometry=(box,), created_at_ms=1_621_531_742_000, map_feature_id=feature_ids[0]),
        Detection(id=detection_ids[2], image_id=s1[7].id, value="object--street-light",
                  geometry=(box,), created_at_ms=1_621_531_743_000, map_feature_id=feature_ids[1]),
        Detection(id=detection_ids[3], image_id=s1[7].id, value="object--bench",
                  geometry=(box,), created_at_ms=1_621_531_744_000),
    ]
    await store.insert_detections(seeded.detections)
    return seeded
