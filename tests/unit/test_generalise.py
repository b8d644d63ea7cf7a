"""Coverage thinning of z6–13 sequence lines (wayview.tiles.generalise): what is drawn stays
drawn, the same street driven again is not repeated, and a tile fits its byte budget."""

from __future__ import annotations

import mapbox_vector_tile
import numpy as np

from wayview.model.entities import TileLine
from wayview.tiles.generalise import by_coverage, coverage_change, drawn_pixels
from wayview.tiles.index import encode_parts
from wayview.tiles.service import generalised_tile


def flat(lines: list[list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [p for line in lines for p in line]
    return (np.concatenate(parts), np.array([len(p) for p in parts]),
            np.array([len(line) for line in lines]))


def street_grid(seed: int, lines: int) -> list[list[np.ndarray]]:
    """Walks on a 300-unit street grid, ±1 unit of noise: many sequences drive the same
    streets."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(lines):
        pos = rng.integers(0, 14, size=2) * 300
        pts = [pos.copy()]
        for _ in range(rng.integers(2, 8)):
            axis = rng.integers(0, 2)
            pos[axis] = np.clip(pos[axis] + rng.choice([-300, 300]), 0, 4200)
            pts.append(pos.copy())
        jitter = rng.integers(-1, 2, size=(len(pts), 2))  # GPS noise below a cell
        out.append([np.array(pts) + jitter])
    return out


def test_what_is_drawn_stays_drawn_and_repeats_are_dropped():
    lines = street_grid(1, 400)
    vertices, sizes, parts = flat(lines)
    thin = by_coverage(vertices, sizes, parts, np.arange(len(lines)))
    # Most walks repeat streets already drawn: 207 of 400 lines, 512 of 1,730 segments.
    assert len(thin.kept_lines) < 0.6 * len(lines)
    assert (thin.part_sizes - 1).sum() < 0.35 * (sizes - 1).sum()
    before = drawn_pixels(vertices, sizes)
    after = drawn_pixels(thin.vertices, thin.part_sizes)
    assert not (after & ~before).any()  # nothing drawn that was not there
    exact, beyond_one_pixel = coverage_change(before, after)
    assert beyond_one_pixel == 0.0  # every pixel drawn is within a pixel of a drawn line
    assert exact < 0.35  # the ±1-unit GPS noise of the copies: pixels next to drawn ones


def test_without_repeats_nothing_is_dropped():
    rng = np.random.default_rng(5)
    lines = [[np.array([[x, 0], [x, 4000]])] for x in rng.permutation(np.arange(0, 4000, 40))]
    vertices, sizes, parts = flat(lines)
    thin = by_coverage(vertices, sizes, parts, np.zeros(len(lines)))
    assert len(thin.kept_lines) == len(lines)
    assert thin.vertices.tolist() == vertices.tolist()


def test_a_dropped_line_never_hides_coverage_through_another_dropped_line():
    # Parallel copies 6 units apart, oldest first: each lies within a cell of the one before
    # it, but the last is 54 units from the first; pass 2 draws what pass 1 chained away.
    lines = [[np.array([[0, 1000 + 6 * k], [3000, 1000 + 6 * k]])] for k in range(10)]
    vertices, sizes, parts = flat(lines)
    thin = by_coverage(vertices, sizes, parts, np.arange(len(lines)))
    _, beyond_one_pixel = coverage_change(drawn_pixels(vertices, sizes),
                                          drawn_pixels(thin.vertices, thin.part_sizes))
    assert beyond_one_pixel == 0.0
    assert 1 < len(thin.kept_lines) < len(lines)


def test_the_newest_of_identical_lines_is_kept_and_partial_overlap_keeps_the_rest():
    street = np.array([[0, 100], [2000, 100]])
    longer = np.array([[0, 100], [2000, 100], [2000, 2000]])  # the same street, then a turn
    lines = [[street.copy()] for _ in range(5)] + [[longer]]
    vertices, sizes, parts = flat(lines)
    thin = by_coverage(vertices, sizes, parts, np.array([5, 4, 1, 3, 2, 0]))
    # Line 5 (priority 0) covers everything, the copies add nothing.
    assert thin.kept_lines.tolist() == [5]
    thin = by_coverage(vertices, sizes, parts, np.array([5, 4, 0, 3, 2, 1]))
    # Line 2 first; line 5 keeps only its turn as one part.
    assert thin.kept_lines.tolist() == [2, 5]
    assert thin.line_parts.tolist() == [1, 1]
    assert thin.vertices[2:].tolist() == [[2000, 100], [2000, 2000]]


def test_a_line_keeps_its_own_way_back_and_a_gap_splits_it_into_parts():
    out_and_back = np.array([[0, 0], [1000, 0], [0, 0]])
    thin = by_coverage(out_and_back, np.array([3]), np.array([1]), np.array([0]))
    assert thin.vertices.tolist() == out_and_back.tolist()
    # Line 1 runs over line 0's street in its middle only: two parts remain.
    middle = np.array([[1000, 500], [2000, 500]])
    across = np.array([[0, 500], [1000, 500], [2000, 500], [3000, 500]])
    vertices, sizes, parts = flat([[middle], [across]])
    thin = by_coverage(vertices, sizes, parts, np.array([0, 1]))
    assert thin.line_parts.tolist() == [1, 2]
    assert thin.vertices[2:].tolist() == [[0, 500], [1000, 500], [2000, 500], [3000, 500]]
    assert thin.part_sizes.tolist() == [2, 2, 2]


def test_empty_and_degenerate_input():
    thin = by_coverage(np.zeros((0, 2)), np.zeros(0, dtype=int), np.zeros(0, dtype=int),
                       np.zeros(0))
    assert len(thin.kept_lines) == 0
    one_point = by_coverage(np.array([[5, 5]]), np.array([1]), np.array([1]), np.array([0]))
    assert len(one_point.kept_lines) == 0


def tile_line(k: int, part: np.ndarray, *, org: int | None = None) -> TileLine:
    return TileLine(f"seq{k:04d}abcdefghijklmnop", encode_parts([part]), 1_000_000 + k,
                    1_600_000_000_000 + k * 1000, k % 7 == 0, org, 100 + k % 5)


def test_generalised_tile_keeps_every_property_and_fits_its_budget():
    rng = np.random.default_rng(3)
    # 3,000 short, distinct lines all over the tile: nothing to drop at the first cell size.
    lines = []
    for k in range(3000):
        start = rng.integers(0, 4000, size=2)
        lines.append(tile_line(k, np.array([start, start + rng.integers(10, 90, size=2)]),
                               org=7 if k % 3 == 0 else None))
    unbounded = generalised_tile(lines, 0)
    # A few lines lie on others and go; most stay at the first cell size.
    assert len(mapbox_vector_tile.decode(unbounded)["sequence"]["features"]) > 2900
    budget = len(unbounded) // 3
    body = generalised_tile(lines, budget)
    assert len(body) <= budget
    features = mapbox_vector_tile.decode(body)["sequence"]["features"]
    assert 0 < len(features) < 3000
    by_id = {ln.sequence_id: ln for ln in lines}
    for f in features:
        p = f["properties"]
        line = by_id[p["id"]]
        assert p["image_id"] == line.image_id and p["captured_at"] == line.captured_at_ms
        assert p["is_pano"] is line.is_pano and p["creator_id"] == line.creator_id
        assert p.get("organization_id") == line.organization_id
    # The newest lines win where they meet older ones.
    kept = sorted(by_id[f["properties"]["id"]].captured_at_ms for f in features)
    assert np.median(kept) > np.median([ln.captured_at_ms for ln in lines])
