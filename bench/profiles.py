"""bench/profiles.py: how long a public profile's coverage query takes for a big contributor.

    python bench/profiles.py [--images 100000] [--per-sequence 500] [--backend sqlite|postgres]
                             [--repeat 5]

Writes one user with N images (N / per-sequence street-like sequences, 3-10 m apart, 1 s
apart; 0.1 % of them hidden) plus a second user with a tenth of that, through the store's
public methods (`reserve_ids` + `insert_sequence`, `set_hidden`), into a temporary SQLite file
or a throwaway PostgreSQL server (tests/pg_server.py), then times `Store.coverage_of` for the
big user (median and max of `--repeat` runs after one warm-up) and checks the length against
the same sum in Python (`wayview.model.geo.haversine_m`).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wayview.model.geo import haversine_m  # noqa: E402
from wayview.store import Store  # noqa: E402
from wayview.testing import add_sequence, make_settings, open_test_store  # noqa: E402


def _walk(rng: random.Random, n: int) -> list[tuple[float, float]]:
    lon, lat = 13.40 + rng.gauss(0, 0.05), 52.50 + rng.gauss(0, 0.03)
    heading = rng.uniform(0, 2 * math.pi)
    points = []
    for _ in range(n):
        if rng.random() < 0.02:
            heading += rng.choice((-1, 1)) * math.pi / 2
        step = rng.uniform(3, 10)
        lat += step * math.cos(heading) / 111_320
        lon += step * math.sin(heading) / (111_320 * math.cos(math.radians(lat)))
        points.append((lon, lat))
    return points


async def _fill(store: Store, images: int, per_sequence: int, seed: int) -> float:
    rng = random.Random(seed)
    big = await store.create_user("big")
    small = await store.create_user("small")
    expected_m = 0.0
    hidden: list[int] = []
    t0 = time.perf_counter()
    for k in range(images // per_sequence):
        seq = await add_sequence(store, big, _walk(rng, per_sequence),
                                 start_ms=1_500_000_000_000 + k * 86_400_000)
        drop = {im.id for im in seq if rng.random() < 0.001}
        hidden += drop
        kept = [im for im in seq if im.id not in drop]
        expected_m += sum(haversine_m(a.lat, a.lon, b.lat, b.lon)
                          for a, b in zip(kept, kept[1:], strict=False))
        if k % 10 == 0:
            await add_sequence(store, small, _walk(rng, per_sequence),
                               start_ms=1_500_000_000_000 + k * 86_400_000)
    await store.set_hidden(hidden, True)
    print(f"wrote {images:,} images in {time.perf_counter() - t0:.0f} s "
          f"({len(hidden)} hidden)", flush=True)
    return expected_m


async def _run(args: argparse.Namespace, tmp: Path) -> None:
    if args.backend == "postgres":
        from tests.pg_server import pg_server
        with pg_server() as url:
            async with open_test_store(make_settings(tmp, database_url=url)) as store:
                await _measure(store, args)
    else:
        async with open_test_store(make_settings(tmp)) as store:
            await _measure(store, args)


async def _measure(store: Store, args: argparse.Namespace) -> None:
    expected_m = await _fill(store, args.images, args.per_sequence, args.seed)
    user = await store.get_user_by_username("big")
    assert user is not None
    await store.coverage_of(creator_id=user.id)  # warm-up
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        coverage = await store.coverage_of(creator_id=user.id)
        times.append(time.perf_counter() - t0)
    print(f"{args.backend}: coverage_of {coverage.image_count:,} images in "
          f"{coverage.sequence_count} sequences: median {statistics.median(times) * 1000:.0f} ms,"
          f" max {max(times) * 1000:.0f} ms; {coverage.length_m / 1000:.3f} km "
          f"(Python: {expected_m / 1000:.3f} km)")


def main() -> None:
    """Parse the options and run the measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--per-sequence", type=int, default=500)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run(args, Path(tmp)))


if __name__ == "__main__":
    main()
