"""wayview.tiles.generalise: thin the `sequence` lines of a z6–13 tile by pixel coverage (pure).

At low and mid zooms a dense city puts thousands of sequences on the same streets: the tile
would repeat each street once per sequence that drove it (1.2 MB for a z8 tile of a 5 M-image
city) while the map shows one line. `by_coverage` keeps what is visible:

- Every segment of every line is sampled finer than `cell` extent units (8 units = one pixel
  of a 512-pixel tile), and each sample is placed in four grids of `cell`-sized cells shifted
  by half a cell: two samples less than half a cell apart on both axes share a cell in at
  least one grid, two sharing a cell are less than a cell apart.
- Lines are ranked by priority (the newest capture first: the coverage a user most likely
  wants to see). A sample is *new* when no line ranked before its own reaches its cell in any
  grid; a segment stays when it has a new sample, and is dropped when all of it lies within a
  cell of lines ranked before (the same street driven again, GPS noise included, a sequence
  lying over another).
- Second pass: a dropped segment may have been covered by one that was dropped itself; any
  segment with a sample that shares no cell with a drawn sample is drawn again. So every
  point of every input line lies within one cell of a drawn line on both axes.
- Kept segments that follow each other form the parts of the output line; a sequence left
  without segments (all of it under newer ones, sub-pixel sequences on covered pixels
  included) is dropped, with its properties. A kept line keeps every property of its
  sequence. A line does not thin itself (a U-turn keeps both ways).

A tile holds at most a few segments per reached cell however many sequences drove there, so
its size follows the covered area, not the image count; `TileService` doubles `cell` until
the encoded tile fits its byte budget (`tiles.max_line_tile_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wayview.tiles.index import LINE_BUFFER_PX
from wayview.tiles.tilemath import EXTENT

#: First cell size (extent units): one pixel of a 512-pixel tile; doubled only when a
#: tile would exceed its byte budget.
BASE_CELL = 8
#: The four grids, shifted by half a cell along x, y or both: two points closer than half a
#: cell on both axes share a cell in at least one of them, and points sharing a cell are
#: less than a cell apart on both axes.
_OFFSETS = ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.5, 0.5))
#: Samples per cell along a segment (step = cell / this): no cell a segment crosses is skipped
#: by more than a corner.
_SAMPLES_PER_CELL = 1.5


@dataclass(frozen=True, slots=True)
class Thinned:
    """The lines kept: flat vertices, vertices per part, parts per kept line, and which input
    lines were kept (indices, ascending)."""

    vertices: np.ndarray
    part_sizes: np.ndarray
    line_parts: np.ndarray
    kept_lines: np.ndarray


def by_coverage(vertices: np.ndarray, part_sizes: np.ndarray, line_parts: np.ndarray,
                priority: np.ndarray, cell: int = BASE_CELL) -> Thinned:
    """Thin lines by cell coverage (see the module text).

    Args:
        vertices: (n, 2) integer tile coordinates of every part, one after the other
            (`wayview.tiles.index.decode_lines`).
        part_sizes: vertices per part.
        line_parts: parts per line.
        priority: one number per line; lower is visited first (ties: input order).
        cell: cell size in extent units.

    >>> street = np.array([[0, 0], [100, 0], [0, 0], [100, 0], [50, 50], [60, 60]])
    >>> t = by_coverage(street, np.array([2, 2, 2]), np.array([1, 1, 1]), np.array([1, 0, 2]))
    >>> t.kept_lines.tolist(), t.vertices.tolist()
    ([1, 2], [[0, 0], [100, 0], [50, 50], [60, 60]])
    """
    lines = len(line_parts)
    verts = np.asarray(vertices, dtype=np.int64).reshape(-1, 2)
    sizes = np.asarray(part_sizes, dtype=np.int64)
    seg_start, seg_part = _segments(sizes)
    total = len(seg_start)
    if lines == 0 or total == 0:
        return _nothing(verts)
    seg_line = np.repeat(np.arange(lines, dtype=np.int64), line_parts)[seg_part]
    seg_of_sample, px, py = _samples(verts, seg_start, _SAMPLES_PER_CELL / cell)
    px += LINE_BUFFER_PX
    py += LINE_BUFFER_PX
    line_rank = np.empty(lines, dtype=np.int64)
    line_rank[np.argsort(np.asarray(priority), kind="stable")] = np.arange(lines)
    sample_rank = line_rank[seg_line[seg_of_sample]]
    width = (EXTENT + 2 * LINE_BUFFER_PX) // cell + 3
    grids = [_cells(px, py, cell, dx, dy, width) for dx, dy in _OFFSETS]
    # Pass 1: a sample is new when no line ranked before its own reached its cell in any of
    # the four grids; a segment with a new sample stays.
    new = np.ones(len(sample_rank), dtype=bool)
    for cells in grids:
        first = np.full(width * width, lines, dtype=np.int64)
        np.minimum.at(first, cells, sample_rank)
        new &= first[cells] == sample_rank
    keep = np.zeros(total, dtype=bool)
    keep[seg_of_sample[new]] = True
    # Pass 2: the lines ranked before may themselves have been dropped. Every sample of a
    # dropped segment must share a cell of some grid with a sample that is drawn; a segment
    # with one that does not is drawn again.
    drawn = keep[seg_of_sample]
    near = np.zeros(len(sample_rank), dtype=bool)
    for cells in grids:
        reached = np.zeros(width * width, dtype=bool)
        reached[cells[drawn]] = True
        near |= reached[cells]
    keep[seg_of_sample[~drawn & ~near]] = True
    return _runs(verts, seg_start, seg_part, seg_line, keep, lines)


def _nothing(verts: np.ndarray) -> Thinned:
    """No line kept."""
    none = np.zeros(0, dtype=np.int64)
    return Thinned(verts[:0], none, none, none)


def _segments(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every segment (vertex k → k + 1) of parts of `sizes` vertices, laid out one after the
    other: each segment's first vertex and its part, in order."""
    part_start = np.cumsum(sizes) - sizes
    seg_count = np.maximum(sizes - 1, 0)
    seg_part = np.repeat(np.arange(len(sizes), dtype=np.int64), seg_count)
    seg_first = np.cumsum(seg_count) - seg_count
    seg_start: np.ndarray = part_start[seg_part] + (
        np.arange(len(seg_part), dtype=np.int64) - seg_first[seg_part])
    return seg_start, seg_part


def _samples(verts: np.ndarray, seg_start: np.ndarray, per_unit: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points along every segment: both ends and at least `per_unit` per unit of length;
    the segment of each point and its x, y."""
    a = verts[seg_start].astype(np.float64)
    d = verts[seg_start + 1].astype(np.float64) - a
    steps = np.maximum(np.ceil(np.hypot(d[:, 0], d[:, 1]) * per_unit), 1).astype(np.int64)
    seg_of_sample = np.repeat(np.arange(len(seg_start), dtype=np.int64), steps + 1)
    first = np.cumsum(steps + 1) - (steps + 1)
    t = (np.arange(len(seg_of_sample), dtype=np.float64) - first[seg_of_sample]) / steps[
        seg_of_sample]
    px = a[seg_of_sample, 0] + t * d[seg_of_sample, 0]
    py = a[seg_of_sample, 1] + t * d[seg_of_sample, 1]
    return seg_of_sample, px, py


def _cells(px: np.ndarray, py: np.ndarray, cell: int, dx: float, dy: float,
           width: int) -> np.ndarray:
    """Cell index of each sample in the grid shifted by (dx, dy) cells."""
    cx = np.clip(np.floor(px / cell + dx), 0, width - 1).astype(np.int64)
    cy = np.clip(np.floor(py / cell + dy), 0, width - 1).astype(np.int64)
    cells: np.ndarray = cx * width + cy
    return cells


def _runs(verts: np.ndarray, seg_start: np.ndarray, seg_part: np.ndarray, seg_line: np.ndarray,
          keep: np.ndarray, lines: int) -> Thinned:
    """The kept segments as parts: a run of kept segments of one part is one output part."""
    kept = np.flatnonzero(keep)
    if len(kept) == 0:
        return _nothing(verts)
    # A kept segment continues the run of the one before when that one is kept and in the
    # same part (segments of a part are consecutive indices).
    continues = np.zeros(len(kept), dtype=bool)
    continues[1:] = (kept[1:] == kept[:-1] + 1) & (seg_part[kept[1:]] == seg_part[kept[:-1]])
    run_start = ~continues
    run_id = np.cumsum(run_start) - 1
    runs = int(run_id[-1]) + 1
    segs_per_run = np.bincount(run_id, minlength=runs)
    run_end = np.ones(len(kept), dtype=bool)
    run_end[:-1] = run_start[1:]
    # Each kept segment contributes its start vertex; the last of a run also its end vertex.
    take = np.concatenate([seg_start[kept], seg_start[kept[run_end]] + 1])
    take.sort(kind="stable")
    run_line = seg_line[kept[run_start]]
    per_line = np.bincount(run_line, minlength=lines)
    kept_lines = np.flatnonzero(per_line)
    return Thinned(verts[take], segs_per_run + 1, per_line[kept_lines], kept_lines)


def drawn_pixels(vertices: np.ndarray, part_sizes: np.ndarray, pixel: int = BASE_CELL,
                 ) -> np.ndarray:
    """The pixels (of `pixel` extent units, over the tile and its line buffer) the lines pass
    through: a boolean raster of a tile drawn with one-pixel lines. For measuring what thinning
    changes.

    >>> raster = drawn_pixels(np.array([[0, 0], [24, 0]]), np.array([2]), 8)
    >>> margin = LINE_BUFFER_PX // 8
    >>> raster[margin:margin + 5, margin].tolist()
    [True, True, True, True, False]
    """
    side = (EXTENT + 2 * LINE_BUFFER_PX) // pixel
    raster = np.zeros((side, side), dtype=bool)
    verts = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
    seg_start, _ = _segments(np.asarray(part_sizes, dtype=np.int64))
    if len(seg_start) == 0:
        return raster
    _, x, y = _samples(verts, seg_start, 4 / pixel)
    px = np.floor((x + LINE_BUFFER_PX) / pixel).astype(np.int64)
    py = np.floor((y + LINE_BUFFER_PX) / pixel).astype(np.int64)
    inside = (px >= 0) & (px < side) & (py >= 0) & (py < side)
    raster[px[inside], py[inside]] = True
    return raster


def coverage_change(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """(pixels drawn before but not after, pixels drawn before farther than one pixel from any
    drawn after), each as a fraction of the pixels drawn before (rasters of `drawn_pixels`).

    >>> a = np.zeros((4, 4), dtype=bool); a[0, :] = True
    >>> b = np.zeros((4, 4), dtype=bool); b[1, :] = True
    >>> coverage_change(a, b)
    (1.0, 0.0)
    """
    drawn = int(before.sum())
    if drawn == 0:
        return 0.0, 0.0
    near = after.copy()
    near[1:, :] |= after[:-1, :]
    near[:-1, :] |= after[1:, :]
    grown = near.copy()
    grown[:, 1:] |= near[:, :-1]
    grown[:, :-1] |= near[:, 1:]
    return (float((before & ~after).sum()) / drawn, float((before & ~grown).sum()) / drawn)
