"""bench.targets: request paths built from what the store really holds, with expected row counts.

Bounding boxes are squares (in metres) around random image positions, sized so that exactly
`rows` images fall inside (inclusive bounds, checked again on the exact decimal text sent).
S2 cells are the level-17 cells of random images. Everything is seeded, so reruns hit the same
paths.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import s2cell

from wayview.model.s2 import leaf_range

NODE_FIELDS = ("id,geometry,captured_at,compass_angle,sequence,creator,make,model,"
               "thumb_1024_url,camera_type")
BBOX_FIELDS = "id,geometry,captured_at"
S2_FIELDS = "id,computed_geometry,geometry,sequence"
IDS_FIELDS = "id,geometry,sequence,captured_at"
S2_LEVEL = 17
MAX_BBOX_AREA_DEG2 = 0.01  # the server's default search.max_bbox_area_deg2


@dataclass(frozen=True, slots=True)
class Target:
    """One request path and the number of rows its answer must hold (None: a single node)."""

    path: str
    rows: int | None


@dataclass(frozen=True, slots=True)
class Points:
    """Every image's id, position and leaf cell, loaded once."""

    ids: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    s2_sorted: np.ndarray


def load_points(db_path: Path) -> Points:
    """Read ids, positions and S2 leaves straight from the SQLite file (read-only)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, lon, lat, s2_leaf FROM images ORDER BY id").fetchall()
    finally:
        conn.close()
    arr = np.array(rows, dtype=object)
    return Points(ids=arr[:, 0].astype(np.int64), lon=arr[:, 1].astype(np.float64),
                  lat=arr[:, 2].astype(np.float64),
                  s2_sorted=np.sort(arr[:, 3].astype(np.int64)))


def node_targets(p: Points, rng: np.random.Generator, count: int) -> list[Target]:
    """`GET /{id}` for random images."""
    picks = rng.choice(p.ids, size=min(count, len(p.ids)), replace=False)
    return [Target(f"/{int(i)}?fields={NODE_FIELDS}", None) for i in picks]


def ids_targets(p: Points, rng: np.random.Generator, count: int, per: int) -> list[Target]:
    """`GET /images?image_ids=` with `per` random ids each."""
    out = []
    for _ in range(count):
        picks = rng.choice(p.ids, size=per, replace=False)
        ids = ",".join(str(int(i)) for i in picks)
        out.append(Target(f"/images?image_ids={ids}&fields={IDS_FIELDS}", per))
    return out


def s2_targets(p: Points, rng: np.random.Generator, count: int) -> list[Target]:
    """`GET /images?s2=` for the level-17 cells of random images (distinct cells)."""
    seen: dict[int, int] = {}
    for k in rng.choice(len(p.ids), size=count * 3, replace=False):
        cell = s2cell.lat_lon_to_cell_id(float(p.lat[k]), float(p.lon[k]), S2_LEVEL)
        if cell in seen:
            continue
        lo, hi = leaf_range(cell)
        seen[cell] = int(np.searchsorted(p.s2_sorted, hi, side="right")
                         - np.searchsorted(p.s2_sorted, lo, side="left"))
        if len(seen) == count:
            break
    return [Target(f"/images?s2={cell}&fields={S2_FIELDS}", n) for cell, n in seen.items()]


def bbox_targets(p: Points, rng: np.random.Generator, count: int, rows: int) -> list[Target]:
    """`GET /images?bbox=` squares holding exactly `rows` images each."""
    order = np.argsort(p.lon)
    lon_sorted, lat_by_lon = p.lon[order], p.lat[order]
    cos_lat = math.cos(math.radians(float(np.median(p.lat))))
    window = 0.06  # degrees of longitude searched around a centre
    out: list[Target] = []
    tries = 0
    while len(out) < count and tries < count * 20:
        tries += 1
        k = int(rng.integers(len(p.ids)))
        clon, clat = float(p.lon[k]), float(p.lat[k])
        a, b = np.searchsorted(lon_sorted, [clon - window, clon + window])
        lon_w, lat_w = lon_sorted[a:b], lat_by_lon[a:b]
        if len(lon_w) <= rows:
            continue
        cheb = np.maximum(np.abs(lon_w - clon) * cos_lat, np.abs(lat_w - clat))
        part = np.partition(cheb, [rows - 1, rows])
        inner, outer = part[rows - 1], part[rows]
        if outer - inner < 1e-9:
            continue
        r = (inner + outer) / 2
        if r / cos_lat >= window:
            continue
        r = float(r)
        west, east = round(clon - r / cos_lat, 7), round(clon + r / cos_lat, 7)
        south, north = round(clat - r, 7), round(clat + r, 7)
        if (east - west) * (north - south) > MAX_BBOX_AREA_DEG2:
            continue
        inside = int(np.count_nonzero((lon_w >= west) & (lon_w <= east)
                                      & (lat_w >= south) & (lat_w <= north)))
        if inside != rows:
            continue
        out.append(Target(f"/images?bbox={west!r},{south!r},{east!r},{north!r}"
                          f"&fields={BBOX_FIELDS}", rows))
    if len(out) < count:
        raise RuntimeError(f"found only {len(out)} bboxes of {rows} rows")
    return out
