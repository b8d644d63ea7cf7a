"""bench/tiles_encoder.py: wayview's MVT encoder against mapbox-vector-tile on the same features.

    python bench/tiles_encoder.py [--repeat 30] [--seed 1]

Cases (notes/DEPENDENCIES.md, MVT row):

- z14 `image` layer, 2,000 points with 6 properties (id, captured_at ms, compass_angle,
  sequence_id of 22 characters, is_pano, creator_id);
- z10 `sequence` layer, 500 lines × 20 vertices with 5 properties (id string, image_id,
  captured_at, is_pano, creator_id);
- a dense z14 `image` tile of 30,000 points (same properties).

Each case is encoded by `wayview.tiles.mvt.encode_tile` from numpy columns and by
`mapbox_vector_tile.encode` from ready-made shapely geometries and property dicts (building them is
not timed), both decoded with mapbox-vector-tile and checked equal, then timed: median CPU time
of ``--repeat`` runs (3 for the slow reference on the dense case), with our wall time alongside.
Prints a markdown table and exits non-zero when a target is missed: ≥ 8× faster than
mapbox-vector-tile everywhere, and < 40 ms for the dense tile.
"""

from __future__ import annotations

import argparse
import statistics
import string
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import numpy as np
from shapely.geometry import LineString, Point

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from wayview.tiles.mvt import Column, LineLayer, PointLayer, encode_tile  # noqa: E402

MIN_SPEEDUP = 8.0
DENSE_TARGET_MS = 40.0
ALPHABET = np.array(list(string.ascii_letters + string.digits))


@dataclass
class Case:
    """One benchmark case: the same features for both encoders, and its targets."""

    name: str
    ours: Callable[[], bytes]
    reference: Callable[[], bytes]
    reference_repeat: int
    max_ms: float | None = None  # absolute target for our encoder, if any

    @property
    def target(self) -> str:
        """The targets as printed in the table."""
        speed = f"≥ {MIN_SPEEDUP:g}×"
        return speed if self.max_ms is None else f"{speed}, < {self.max_ms:g} ms"


def sequence_ids(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` random 22-character ids (Mapillary sequence keys look like this)."""
    return ["".join(row) for row in rng.choice(ALPHABET, size=(count, 22))]


def image_case(rng: np.random.Generator, n: int) -> tuple[PointLayer, list[dict[str, Any]]]:
    """An `image` layer of ``n`` points in ~n/50 sequences, and the same as mapbox-vector-tile input."""
    x = rng.integers(0, 4096, n)
    y = rng.integers(0, 4096, n)
    ids = rng.choice(np.arange(10**14, 10**14 + 50 * n), size=n, replace=False)
    seqs = sequence_ids(rng, max(1, n // 50))
    seq_of = rng.integers(0, len(seqs), n)
    props = {
        "id": Column(ids),
        "captured_at": Column(rng.integers(1_400_000_000_000, 1_750_000_000_000, n)),
        "compass_angle": Column(rng.integers(0, 360, n)),
        "sequence_id": Column([seqs[i] for i in seq_of]),
        "is_pano": Column(rng.random(n) < 0.1),
        "creator_id": Column(rng.integers(10**14, 10**14 + 200, n)),
    }
    layer = PointLayer("image", x=x, y=y, ids=ids, properties=props)
    return layer, reference_features(
        layer.properties, [Point(a, b) for a, b in zip(x, y, strict=True)], ids
    )


def sequence_case(
    rng: np.random.Generator, n: int, vertices: int
) -> tuple[LineLayer, list[dict[str, Any]]]:
    """A `sequence` layer of ``n`` random-walk lines, and the same as mapbox-vector-tile input."""
    start = rng.integers(0, 4096, (n, 1, 2))
    steps = rng.integers(-40, 41, (n, vertices - 1, 2))
    walk = np.concatenate([start, start + np.cumsum(steps, axis=1)], axis=1)
    lines = [[walk[i]] for i in range(n)]
    props = {
        "id": Column(sequence_ids(rng, n)),
        "image_id": Column(rng.integers(10**14, 10**15, n)),
        "captured_at": Column(rng.integers(1_400_000_000_000, 1_750_000_000_000, n)),
        "is_pano": Column(rng.random(n) < 0.1),
        "creator_id": Column(rng.integers(10**14, 10**14 + 200, n)),
    }
    layer = LineLayer("sequence", lines=lines, ids=None, properties=props)
    return layer, reference_features(props, [LineString(w) for w in walk], None)


def reference_features(
    props: dict[str, Column], geoms: list[Any], ids: np.ndarray | None
) -> list[dict[str, Any]]:
    """mapbox-vector-tile feature dicts with plain Python property values."""
    cols = {
        k: list(c.values) if isinstance(c.values, list) else c.values.tolist()
        for k, c in props.items()
    }
    feats = []
    for i, geom in enumerate(geoms):
        feat: dict[str, Any] = {"geometry": geom, "properties": {k: v[i] for k, v in cols.items()}}
        if ids is not None:
            feat["id"] = int(ids[i])
        feats.append(feat)
    return feats


def reference_encoder(name: str, feats: list[dict[str, Any]]) -> Callable[[], bytes]:
    """mapbox_vector_tile.encode on tile-pixel geometries, y down, extent 4096."""
    options = {"extents": 4096, "y_coord_down": True}

    def run() -> bytes:
        data: bytes = mapbox_vector_tile.encode(
            [{"name": name, "features": feats}], default_options=options
        )
        return data

    return run


def decoded(data: bytes) -> dict[str, Any]:
    """Decoded tile, for comparing both encoders' output."""
    tile: dict[str, Any] = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})
    return tile


def timed_ms(fn: Callable[[], bytes], repeat: int) -> tuple[float, float]:
    """Median CPU and wall time of ``fn`` in milliseconds (after one warm-up call).

    Both encoders are single-threaded, so CPU time equals wall time on an idle machine and is far
    less disturbed by other processes on a busy one; speed-ups and targets use CPU time.
    """
    fn()
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append((time.thread_time() - c0) * 1000.0)
        wall.append((time.perf_counter() - w0) * 1000.0)
    return statistics.median(cpu), statistics.median(wall)


def main() -> int:
    """Build the cases, check equal decoding, time both encoders and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    image, image_feats = image_case(rng, 2000)
    seq, seq_feats = sequence_case(rng, 500, 20)
    dense, dense_feats = image_case(rng, 30000)
    cases = [
        Case(
            "z14 image, 2,000 points × 6 props",
            lambda: encode_tile([image]),
            reference_encoder("image", image_feats),
            args.repeat,
        ),
        Case(
            "z10 sequence, 500 lines × 20 vertices × 5 props",
            lambda: encode_tile([seq]),
            reference_encoder("sequence", seq_feats),
            args.repeat,
        ),
        Case(
            "z14 image, 30,000 points × 6 props",
            lambda: encode_tile([dense]),
            reference_encoder("image", dense_feats),
            3,
            DENSE_TARGET_MS,
        ),
    ]

    print(
        "| case | tile bytes | wayview ms (CPU / wall) | mapbox-vector-tile ms (CPU) "
        "| speed-up | target | ok |"
    )
    print("|---|---:|---:|---:|---:|---|---|")
    failed = False
    for case in cases:
        ours, ref = case.ours(), case.reference()
        if decoded(ours) != decoded(ref):
            print(f"{case.name}: decoded tiles differ", file=sys.stderr)
            return 2
        ours_ms, ours_wall = timed_ms(case.ours, args.repeat)
        ref_ms, _ = timed_ms(case.reference, case.reference_repeat)
        speedup = ref_ms / ours_ms
        ok = speedup >= MIN_SPEEDUP and (case.max_ms is None or ours_ms < case.max_ms)
        failed |= not ok
        print(
            f"| {case.name} | {len(ours):,} | {ours_ms:.2f} / {ours_wall:.2f} | {ref_ms:.1f} "
            f"| {speedup:.1f}× | {case.target} | {'yes' if ok else 'NO'} |"
        )
    print("\nMedian per encode; both tiles decode to the same layers with mapbox-vector-tile.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
