"""wayview.store.figures: the columns of `sequences` that keep each sequence's public figures
(count, length, last capture, extent; `wayview.model.profiles.LineFigures`), shared by both
SQL backends. Every write that changes a sequence's images writes them in its transaction:
`insert_sequence`, and the rebuilds of deletion, hiding, corrections, split and merge
(`wayview.store.deletion.plan_rebuild`)."""

from __future__ import annotations

from typing import Any

from wayview.model.profiles import Coverage, LineFigures, SequenceCoverage

#: In the order `figure_values` gives them.
FIGURE_COLUMNS = ("image_count", "length_m", "last_captured_at_ms", "min_lon", "min_lat",
                  "max_lon", "max_lat")


def set_figures(mark: str) -> str:
    """The SET list writing every figure column, with the backend's placeholder.

    >>> set_figures("?")[:32]
    'image_count = ?, length_m = ?, l'
    """
    return ", ".join(f"{column} = {mark}" for column in FIGURE_COLUMNS)


def figure_values(figures: LineFigures) -> tuple[int, float, int | None, float | None,
                                                  float | None, float | None, float | None]:
    """The values of `FIGURE_COLUMNS` (the extent NULL for a sequence with no public image).

    >>> figure_values(LineFigures(0, 0.0, None, None))
    (0, 0.0, None, None, None, None, None)
    """
    west, south, east, north = figures.bbox or (None, None, None, None)
    return (figures.image_count, figures.length_m, figures.last_captured_at_ms, west, south,
            east, north)


#: The totals of an owner's public sequences, `{owner}` being "creator_id" or
#: "organization_id" (the same text in both backends but for the placeholder).
SQL_COVERAGE_TOTALS = (
    "SELECT COUNT(*), SUM(image_count), SUM(length_m), MIN(first_captured_at_ms),"
    " MAX(last_captured_at_ms), MIN(min_lon), MIN(min_lat), MAX(max_lon), MAX(max_lat)"
    " FROM sequences WHERE {owner} = {mark} AND image_count > 0"
)
#: An owner's newest public sequences with where each starts (its first public image).
SQL_COVERAGE_NEWEST = (
    "SELECT s.id, s.image_count, s.first_image_id, s.first_captured_at_ms,"
    " s.last_captured_at_ms, s.length_m, s.min_lon, s.min_lat, s.max_lon, s.max_lat,"
    " i.lon, i.lat"
    " FROM sequences s JOIN images i ON i.id = s.first_image_id"
    " WHERE s.{owner} = {mark} AND s.image_count > 0"
    " ORDER BY s.first_captured_at_ms DESC, s.id LIMIT {mark}"
)
OWNERS = ("creator_id", "organization_id")
#: (username, public images) of an organization's contributors, most images first.
SQL_CONTRIBUTORS = (
    "SELECT u.username, SUM(s.image_count) AS n FROM sequences s"
    " JOIN users u ON u.id = s.creator_id"
    " WHERE s.organization_id = {mark} AND s.image_count > 0"
    " GROUP BY u.id, u.username ORDER BY n DESC, u.username LIMIT {mark}"
)


def coverage_sql(mark: str) -> dict[str, tuple[str, str]]:
    """By owner column: the (totals, newest sequences) statements with the backend's
    placeholder; the newest take (owner id, how many)."""
    return {owner: (SQL_COVERAGE_TOTALS.format(owner=owner, mark=mark),
                    SQL_COVERAGE_NEWEST.format(owner=owner, mark=mark)) for owner in OWNERS}


def contributors_sql(mark: str) -> str:
    """`SQL_CONTRIBUTORS` with the backend's placeholder; it takes (organization id, limit)."""
    return SQL_CONTRIBUTORS.format(mark=mark)


def owner_of(creator_id: int | None, organization_id: int | None) -> tuple[str, int]:
    """The owner column and id `coverage_of` reads: exactly one of the two is given.

    >>> owner_of(None, 7)
    ('organization_id', 7)
    """
    if creator_id is not None and organization_id is None:
        return "creator_id", creator_id
    if organization_id is not None and creator_id is None:
        return "organization_id", organization_id
    raise ValueError("coverage_of takes exactly one of creator_id, organization_id")


def coverage_from_rows(totals: Any, rows: list[Any], latest: int, starts: int) -> Coverage:
    """A Coverage from the totals row and the newest sequences' rows (both backends)."""
    if not totals or not totals[0]:
        return Coverage()
    sequences = [SequenceCoverage(
        id=str(r[0]), image_count=int(r[1]), first_image_id=int(r[2]),
        first_captured_at_ms=int(r[3]), last_captured_at_ms=int(r[4]), length_m=float(r[5]),
        bbox=(float(r[6]), float(r[7]), float(r[8]), float(r[9])),
        start=(float(r[10]), float(r[11]))) for r in rows]
    return Coverage(
        image_count=int(totals[1]), sequence_count=int(totals[0]), length_m=float(totals[2]),
        first_captured_at_ms=int(totals[3]), last_captured_at_ms=int(totals[4]),
        bbox=(float(totals[5]), float(totals[6]), float(totals[7]), float(totals[8])),
        latest=tuple(sequences[:latest]), starts=tuple(s.start for s in sequences[:starts]))
