"""bench.world: a synthetic city of street-following image sequences, stored through the public API.

The world is a 30 × 30 km square around (52.50 N, 13.40 E) cut into 3 × 3 districts, each with its
own street grid (rotation 0–90°, block size 80–220 m). A sequence starts near the centre (Gaussian,
σ = 6 km, so coverage is dense downtown and sparse at the edges, as real coverage is), snaps to an
intersection and walks the grid for 100–300 images (mean 200), turning at intersections, one image
every 3–10 m with 1.5 m GPS noise, 1–2 s apart. 25 users (Zipf-weighted), 2 organizations, 8 % of
users shoot panoramas, 5 % fisheye.

Users, organizations and the client app are created with the store's public methods, images
with `SqliteStore.reserve_ids` + `insert_sequence` (the calls the importer makes): either one
transaction per sequence (`method="public"`) or all inside one bulk transaction
(`method="bulk"`, bench/bulkload.py). Either way the bench measures the schema, indexes and
rows the server really has. A marker file `bench-meta.json` in the data folder records the image
count, the client token and a fingerprint of the schema and of `insert_sequence`; a store whose
marker and row count match is reused, anything else is regenerated.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import math
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wayview.auth.tokens import create_app
from wayview.model.entities import Image, Organization, Sequence, User
from wayview.settings import Settings
from wayview.store import open_store

GENERATOR_VERSION = 1
MARKER = "bench-meta.json"
CENTER_LAT, CENTER_LON = 52.50, 13.40
REGION_M = 30_000.0
DISTRICTS = 3
START_SIGMA_M = 6_000.0
M_PER_DEG_LAT = 111_320.0
USERS = 25
ID_BATCH = 50_000
IN_FLIGHT = 3  # insert_sequence calls in flight: overlaps row building with SQLite writes
_CAMERAS = [("GoPro", "HERO9 Black"), ("Apple", "iPhone 13"), ("Samsung", "SM-G991B"),
            ("Garmin", "VIRB 360"), ("Insta360", "ONE X2"), ("Sony", "ILCE-6400"),
            ("Xiaomi", "Redmi Note 8"), ("BlackVue", "DR900X")]


@dataclass(frozen=True, slots=True)
class Grid:
    """One district's street grid: rotation, block size, offset (metres)."""

    angle_rad: float
    block_m: float
    off_x: float
    off_y: float


@dataclass(frozen=True, slots=True)
class Profile:
    """Per-user camera habits."""

    make: str
    model: str
    camera_type: str
    width: int
    height: int
    organization: int | None  # index into the organizations, or None


def _districts(rng: np.random.Generator) -> list[Grid]:
    return [Grid(float(rng.uniform(0, math.pi / 2)), float(rng.uniform(80, 220)),
                 float(rng.uniform(0, 200)), float(rng.uniform(0, 200)))
            for _ in range(DISTRICTS * DISTRICTS)]


def _district_of(x: float, y: float) -> int:
    size = REGION_M / DISTRICTS
    col = min(DISTRICTS - 1, max(0, int((x + REGION_M / 2) // size)))
    row = min(DISTRICTS - 1, max(0, int((y + REGION_M / 2) // size)))
    return row * DISTRICTS + col


def walk(rng: np.random.Generator, grids: list[Grid], n: int) -> tuple[np.ndarray, ...]:
    """One sequence: (lon, lat, compass_deg) arrays of length n along a street grid."""
    half = REGION_M / 2 - 300
    x0, y0 = np.clip(rng.normal(0, START_SIGMA_M, 2), -half, half)
    g = grids[_district_of(x0, y0)]
    cos_a, sin_a = math.cos(g.angle_rad), math.sin(g.angle_rad)

    def to_world(u: float, v: float) -> tuple[float, float]:
        return u * cos_a - v * sin_a + g.off_x, u * sin_a + v * cos_a + g.off_y

    def inside(u: float, v: float) -> bool:
        x, y = to_world(u, v)
        return -half <= x <= half and -half <= y <= half

    dx0, dy0 = x0 - g.off_x, y0 - g.off_y
    u = round((dx0 * cos_a + dy0 * sin_a) / g.block_m) * g.block_m
    v = round((-dx0 * sin_a + dy0 * cos_a) / g.block_m) * g.block_m
    step_m = float(rng.uniform(3, 10))
    need = n * step_m + 1
    dirs = [(1, 0), (0, 1), (-1, 0), (0, -1)]
    d = int(rng.integers(4))
    pts = [(u, v)]
    length = 0.0
    while length < need:
        blocks = int(rng.integers(1, 6))
        for _ in range(blocks):
            nu, nv = u + dirs[d][0] * g.block_m, v + dirs[d][1] * g.block_m
            if not inside(nu, nv):
                break
            u, v = nu, nv
            pts.append((u, v))
            length += g.block_m
            if length >= need:
                break
        turn = int(rng.choice([1, 3, 0], p=[0.4, 0.4, 0.2]))  # left, right, straight
        for attempt in range(4):
            cand = (d + turn + attempt) % 4
            if inside(u + dirs[cand][0] * g.block_m, v + dirs[cand][1] * g.block_m):
                d = cand
                break
        else:  # a start rounded just outside the region: no street leads in, step to the centre
            cu = -g.off_x * cos_a - g.off_y * sin_a  # the region's centre in grid coordinates
            cv = g.off_x * sin_a - g.off_y * cos_a
            d = max(range(4), key=lambda k: dirs[k][0] * (cu - u) + dirs[k][1] * (cv - v))
            u, v = u + dirs[d][0] * g.block_m, v + dirs[d][1] * g.block_m
            pts.append((u, v))
            length += g.block_m
    arr = np.array(pts)
    seg = np.hypot(np.diff(arr[:, 0]), np.diff(arr[:, 1]))
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(n) * step_m
    uu = np.interp(t, cum, arr[:, 0]) + rng.normal(0, 1.5, n)
    vv = np.interp(t, cum, arr[:, 1]) + rng.normal(0, 1.5, n)
    xs = uu * cos_a - vv * sin_a + g.off_x
    ys = uu * sin_a + vv * cos_a + g.off_y
    seg_index = np.clip(np.searchsorted(cum, t, side="right") - 1, 0, len(seg) - 1)
    heading = np.degrees(np.arctan2(np.diff(arr[:, 0]), np.diff(arr[:, 1])))[seg_index]
    # the grid frame is the world frame turned counter-clockwise by angle; compass is clockwise
    compass = (heading - math.degrees(g.angle_rad) + rng.normal(0, 3, n)) % 360
    lat = CENTER_LAT + ys / M_PER_DEG_LAT
    lon = CENTER_LON + xs / (M_PER_DEG_LAT * math.cos(math.radians(CENTER_LAT)))
    return lon, lat, compass


def read_marker(data_dir: Path) -> dict[str, Any] | None:
    """The marker of a finished generation, or None."""
    path = data_dir / MARKER
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def count_images(db_path: Path) -> int:
    """Rows in `images` (read-only connection)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])
    finally:
        conn.close()


def insert_fingerprint() -> str:
    """Hash of `SqliteStore.insert_sequence`'s source: what an image row is made of."""
    from wayview.store.sqlite.store import SqliteStore

    return hashlib.sha256(inspect.getsource(SqliteStore.insert_sequence).encode()).hexdigest()[:16]


def schema_fingerprint() -> str:
    """Hash of the shipped SQLite migrations and of `insert_sequence`: a stale store regenerates."""
    from wayview.store.migrate import load_migrations

    h = hashlib.sha256(insert_fingerprint().encode())
    for m in load_migrations("wayview.store.sqlite"):
        h.update(f"{m.version}:{m.name}:{m.sql}".encode())
    return h.hexdigest()[:16]


def reusable(data_dir: Path, images: int, log: Callable[[str], None] = print
             ) -> dict[str, Any] | None:
    """The marker when `data_dir` already holds a finished world of `images` images."""
    meta = read_marker(data_dir)
    db = data_dir / "wayview.db"
    if meta is None or not db.exists():
        return None
    if meta.get("images") != images or meta.get("generator_version") != GENERATOR_VERSION:
        log(f"{data_dir} holds another world ({meta.get('images')} images): regenerating")
        return None
    if meta.get("schema") != schema_fingerprint():
        log(f"{data_dir}: the store schema or insert_sequence changed since it was generated: "
            "regenerating")
        return None
    return meta if count_images(db) == images else None


@dataclass(frozen=True, slots=True)
class People:
    """Users, organizations and their habits, created through the public store methods."""

    users: list[User]
    orgs: list[Organization]
    profiles: list[Profile]
    weights: np.ndarray
    client_token: str


async def create_people(store: Any, rng: np.random.Generator) -> People:
    """25 users (5 in one organization, 3 in the other), their cameras, a read-only app."""
    users: list[User] = [await store.create_user(f"bench_{k:02d}") for k in range(USERS)]
    orgs: list[Organization] = [
        await store.create_organization("bench-city", name="Bench City Mapping"),
        await store.create_organization("bench-roads", name="Bench Roads Agency"),
    ]
    profiles = []
    for k, user in enumerate(users):
        org = 0 if k < 5 else 1 if k < 8 else None
        if org is not None:
            await store.add_organization_member(orgs[org].id, user.id)
        make, model = _CAMERAS[k % len(_CAMERAS)]
        roll = rng.random()
        if roll < 0.08:
            profiles.append(Profile(make, model, "spherical", 5760, 2880, org))
        elif roll < 0.13:
            profiles.append(Profile(make, model, "fisheye", 4000, 3000, org))
        else:
            profiles.append(Profile(make, model, "perspective", 4000, 3000, org))
    weights = 1.0 / np.arange(1, USERS + 1)
    weights /= weights.sum()
    app = await create_app(store, "bench client", owner=users[0], scopes=("read",))
    return People(users, orgs, profiles, weights, app.client_token)


def plan_sequences(rng: np.random.Generator, grids: list[Grid], people: People, images: int,
                   seed: int) -> Iterator[tuple[Sequence, int, Callable[[list[int]], list[Image]]]]:
    """(sequence, image count, build(ids) → images) until `images` images are planned."""
    planned = 0
    seq_no = 0
    while planned < images:
        n = min(int(rng.integers(100, 301)), images - planned)
        k = int(rng.choice(USERS, p=people.weights))
        prof = people.profiles[k]
        user = people.users[k]
        org_id = people.orgs[prof.organization].id if (
            prof.organization is not None and rng.random() < 0.7) else None
        seq = Sequence(id=f"bench{seed:02d}seq{seq_no:013d}", creator_id=user.id,
                       organization_id=org_id)
        seq_no += 1
        lon, lat, compass = walk(rng, grids, n)
        start_ms = int(rng.integers(1_420_070_400_000, 1_735_689_600_000))  # 2015–2024
        step_ms = int(rng.choice([1000, 2000]))
        alt0 = float(rng.uniform(30, 60))
        pano = prof.camera_type == "spherical"
        params = None if pano else (round(float(rng.uniform(0.8, 0.9)), 4), 0.0, 0.0)
        quality = rng.uniform(0.3, 1.0, n)

        def build(ids: list[int], seq: Sequence = seq, n: int = n, lon: Any = lon,
                  lat: Any = lat, compass: Any = compass, start_ms: int = start_ms,
                  step_ms: int = step_ms, alt0: float = alt0, pano: bool = pano,
                  params: Any = params, quality: Any = quality, prof: Profile = prof,
                  user: User = user, org_id: int | None = org_id) -> list[Image]:
            return [
                Image(
                    id=ids[j], sequence_id=seq.id, creator_id=user.id,
                    captured_at_ms=start_ms + j * step_ms, lon=float(lon[j]), lat=float(lat[j]),
                    width=prof.width, height=prof.height, altitude_m=round(alt0 + j * 0.01, 2),
                    compass_angle_deg=round(float(compass[j]), 2),
                    camera_type=prof.camera_type, camera_parameters=params, make=prof.make,
                    model=prof.model, is_pano=pano, organization_id=org_id,
                    quality_score=round(float(quality[j]), 3),
                    content_sha256=hashlib.sha256(ids[j].to_bytes(8, "big")).hexdigest(),
                )
                for j in range(n)
            ]

        planned += n
        yield seq, n, build


async def _build_public(settings: Settings, images: int, seed: int,
                        progress: Callable[[int, float], None]) -> dict[str, Any]:
    """Write through `reserve_ids` + `insert_sequence`, a few sequences in flight."""
    rng = np.random.default_rng(seed)
    grids = _districts(rng)
    store = open_store(settings)
    await store.open()
    try:
        people = await create_people(store, rng)
        ids: list[int] = []
        written = 0
        sequences = 0
        started = time.perf_counter()
        sem = asyncio.Semaphore(IN_FLIGHT)
        pending: set[asyncio.Task[None]] = set()

        async def insert(seq: Sequence, batch: list[Image]) -> None:
            try:
                await store.insert_sequence(seq, batch)
            finally:
                sem.release()

        for seq, n, build in plan_sequences(rng, grids, people, images, seed):
            if len(ids) < n:  # reserve no more than the world needs
                ids += await store.reserve_ids("image", min(ID_BATCH, images - written - len(ids)))
            batch_ids, ids = ids[:n], ids[n:]
            batch = build(batch_ids)
            await sem.acquire()
            task = asyncio.create_task(insert(seq, batch))
            pending.add(task)
            task.add_done_callback(pending.discard)
            before = written
            written += n
            sequences += 1
            if written // 100_000 != before // 100_000:
                progress(written, time.perf_counter() - started)
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
        return {"images": images, "sequences": sequences, "users": USERS, "organizations": 2,
                "client_token": people.client_token, "generated_s": round(elapsed, 1),
                "generator_version": GENERATOR_VERSION, "seed": seed,
                "method": "SqliteStore.reserve_ids + insert_sequence"}
    finally:
        await store.close()


def ensure_world(data_dir: Path, images: int, *, seed: int = 7, method: str = "bulk",
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Reuse the world in `data_dir` when its marker matches, else (re)generate it.

    `method` is "public" (`reserve_ids` + `insert_sequence`) or "bulk" (bench/bulkload.py).
    """
    meta = reusable(data_dir, images, log)
    if meta is not None:
        log(f"reusing {data_dir} ({images:,} images, generated in {meta['generated_s']} s)")
        return meta
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    log(f"generating {images:,} images in {data_dir} ({method} path) …")

    def progress(done: int, elapsed: float) -> None:
        log(f"  {done:>9,} images  {elapsed:7.1f} s  ({done / elapsed:,.0f} images/s)")

    if method == "public":
        meta = asyncio.run(_build_public(settings, images, seed, progress))
    elif method == "bulk":
        import bulkload

        meta = asyncio.run(bulkload.build(settings, images, seed, progress))
    else:
        raise ValueError(f"unknown method {method!r}")
    meta["schema"] = schema_fingerprint()
    (data_dir / MARKER).write_text(json.dumps(meta, indent=2) + "\n")
    log(f"generated {images:,} images in {meta['generated_s']} s")
    return meta
