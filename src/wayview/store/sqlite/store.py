"""wayview.store.sqlite.store: SqliteStore, the embedded implementation of the Store protocol."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import Any, TypeVar

from wayview import ids as id_mint
from wayview.errors import Conflict
from wayview.model.entities import (
    ComputedFields,
    DeletedImages,
    Detection,
    DetectionSearch,
    FeatureChanges,
    Image,
    ImageSearch,
    MapFeature,
    MapFeatureSearch,
    Organization,
    Page,
    Sequence,
    TileContent,
    TileFeatureColumns,
    User,
)
from wayview.model.profiles import line_figures
from wayview.model.s2 import leaf_cell
from wayview.store.base import NODE_KINDS
from wayview.store.columns import (
    COMPUTED_INDEX,
    DETECTION_COLUMNS,
    FEATURE_TILE_SHIFT,
    IMAGE_COLUMNS,
    IMAGE_FROM,
    ORIGINAL_INDEX,
    SingleLayerTileReads,
    computed_updates,
    map_feature_rows,
)
from wayview.store.figures import FIGURE_COLUMNS, figure_values
from wayview.store.migrate import Migration, load_migrations, report_outcome
from wayview.store.sqlite.accounts import AccountsMixin
from wayview.store.sqlite.blurs import BlursMixin
from wayview.store.sqlite.connection import Database, tile_rec
from wayview.store.sqlite.delete import delete_images as delete_image_rows
from wayview.store.sqlite.edits import EditsMixin
from wayview.store.sqlite.exports import ExportsMixin
from wayview.store.sqlite.governance import GovernanceMixin
from wayview.store.sqlite.jobs import JobsMixin
from wayview.store.sqlite.profiles import ProfilesMixin
from wayview.store.sqlite.rendered import RenderedTilesMixin
from wayview.store.sqlite.tiles import (
    SQL_BUMP_EPOCH,
    bump_epochs,
    pack_tiles,
    rebuild_computed,
    rebuild_pending_computed,
    tile_images,
    tile_overview,
    tile_sequence_lines,
    write_lines_and_overview,
)
from wayview.store.sqlite.uploads import UploadsMixin
from wayview.tiles.index import IMAGE_ZOOM, has_computed, morton, sequence_rows, tile_range

T = TypeVar("T")

log = logging.getLogger("wayview.store")

# SQLite allows 32,766 host parameters; batch below that.
_BATCH = 900

#: Sequences whose computed tile index one write transaction builds when the store opens.
_BUILD_BATCH = 100


SQL_INSERT_IMAGE = (
    "INSERT INTO images (id, sequence_id, creator_id, organization_id, captured_at_ms, lon, lat,"
    " altitude_m, compass_angle_deg, computed_lon, computed_lat, computed_altitude_m,"
    " computed_compass_deg, camera_type, camera_parameters, exif_orientation, width, height,"
    " make, model, is_pano, quality_score, s2_leaf, content_sha256, created_at_ms, qk,"
    " tile_compass_deg, sequence_rowid, tile_rec, computed_rotation, atomic_scale, merge_cc,"
    " assets, computed_qk, computed_tile_compass_deg, computed_tile_rec)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
SQL_INSERT_RTREE = "INSERT INTO {table} (id, min_lon, max_lon, min_lat, max_lat) VALUES (?,?,?,?,?)"


def _statements(script: str) -> Iterable[str]:
    """The complete SQL statements of a migration script (trigger bodies hold `;` too)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        yield buffer.strip()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _image_from_row(r: tuple[Any, ...]) -> Image:
    params = json.loads(r[11]) if r[11] else None
    return Image(
        id=r[0], sequence_id=r[1], creator_id=r[2], captured_at_ms=r[3], lon=r[4], lat=r[5],
        width=r[6], height=r[7], altitude_m=r[8], compass_angle_deg=r[9], camera_type=r[10],
        camera_parameters=(params[0], params[1], params[2]) if params else None,
        exif_orientation=r[12], make=r[13], model=r[14], is_pano=bool(r[15]),
        organization_id=r[16], quality_score=r[17], computed_lon=r[18], computed_lat=r[19],
        computed_altitude_m=r[20], computed_compass_angle_deg=r[21], content_sha256=r[22],
        created_at_ms=r[23], creator_username=r[24],
        computed_rotation=tuple(json.loads(r[25])) if r[25] else None,
        atomic_scale=r[26], merge_cc=r[27], assets=r[28],
        media_version=r[29], hidden=bool(r[30]),
    )


def _feature_from_row(r: tuple[Any, ...]) -> MapFeature:
    return MapFeature(
        id=r[0], object_value=r[1], object_type=r[2], lon=r[3], lat=r[4],
        aligned_direction_deg=r[5], first_seen_at_ms=r[6], last_seen_at_ms=r[7],
    )


_FEATURE_COLUMNS = (
    "f.id, f.object_value, f.object_type, f.lon, f.lat, f.aligned_direction_deg,"
    " f.first_seen_at_ms, f.last_seen_at_ms"
)


def _detection_from_row(r: tuple[Any, ...]) -> Detection:
    rings = tuple(tuple((float(u), float(v)) for u, v in ring) for ring in json.loads(r[3]))
    return Detection(
        id=r[0], image_id=r[1], value=r[2], geometry=rings, created_at_ms=r[4],
        map_feature_id=r[5],
    )


def _chunks(values: Seq[Any], size: int = _BATCH) -> Iterable[Seq[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def _glob_to_like(pattern: str) -> str:
    """`*` wildcards (spec §3.11) to a GLOB pattern with other GLOB metacharacters escaped."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("*")
        elif ch in "?[]":
            out.append(f"[{ch}]")
        else:
            out.append(ch)
    return "".join(out)


def _values_clause(column: str, values: tuple[str, ...], params: list[Any]) -> str:
    parts = []
    for value in values:
        if "*" in value:
            parts.append(f"{column} GLOB ?")
            params.append(_glob_to_like(value))
        else:
            parts.append(f"{column} = ?")
            params.append(value)
    return "(" + " OR ".join(parts) + ")"


class SqliteStore(AccountsMixin, JobsMixin, UploadsMixin, GovernanceMixin, EditsMixin,
                   ExportsMixin, BlursMixin, ProfilesMixin, RenderedTilesMixin,
                   SingleLayerTileReads):
    """The Store protocol on one SQLite file (WAL, one writer thread, reader threads)."""

    def __init__(self, path: Path, *, readers: int = 4, inline_point_reads: bool = True) -> None:
        self.db = Database(path, readers=readers, inline_point_reads=inline_point_reads)

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the file if needed, apply pending migrations and build the computed tile
        index of sequences stored without one (migration 0010)."""
        self.db.open()
        await self.db.write(self._migrate)
        pending = await self.db.read(lambda c: c.execute(
            "SELECT 1 FROM sequences WHERE computed_tiles = 0 LIMIT 1").fetchone())
        built = 0
        while pending and (done := await self.db.write(
                lambda c: rebuild_pending_computed(c, _BUILD_BATCH))):
            if not built:
                log.info("building the mly1_computed_public tile index of stored sequences")
            built += done
        if built:
            log.info("built the mly1_computed_public tile index of %d sequences", built)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        shipped = load_migrations("wayview.store.sqlite")
        applied: list[Migration] = []
        for migration in shipped:
            if migration.version in done:
                continue
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                (migration.version, migration.name, _now_ms()),
            )
            applied.append(migration)
        report_outcome("sqlite", done, applied, shipped)

    async def schema_version(self) -> int:
        """The newest applied migration."""
        row = await self.db.read(
            lambda c: c.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        )
        return int(row[0] or 0)

    async def close(self) -> None:
        """Stop threads and close connections."""
        self.db.close()

    # -- nodes -----------------------------------------------------------------------------
    async def reserve_ids(self, kind: str, count: int) -> list[int]:
        """Mint fresh ids in the shared id space, retrying on the rare collision."""
        if kind not in NODE_KINDS:
            raise ValueError(f"unknown node kind {kind!r}")

        def run(conn: sqlite3.Connection) -> list[int]:
            out: list[int] = []
            while len(out) < count:
                candidate = id_mint.new_id()
                cur = conn.execute(
                    "INSERT OR IGNORE INTO nodes (id, kind) VALUES (?, ?)", (candidate, kind)
                )
                if cur.rowcount:
                    out.append(candidate)
            return out

        return await self.db.write(run)

    async def _claim_id(self, kind: str, node_id: int) -> None:
        """Register a caller-chosen id (apps with a fixed client token)."""

        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT kind FROM nodes WHERE id = ?", (node_id,)).fetchone()
            if row is not None:
                raise Conflict(f"id {node_id} is already used by a {row[0]}")
            conn.execute("INSERT INTO nodes (id, kind) VALUES (?, ?)", (node_id, kind))

        await self.db.write(run)

    async def node_kinds(self, ids: Seq[int]) -> dict[int, str]:
        """Kinds of known ids."""
        if not ids:
            return {}

        def run(conn: sqlite3.Connection) -> dict[int, str]:
            out: dict[int, str] = {}
            for chunk in _chunks(list(ids)):
                sql = f"SELECT id, kind FROM nodes WHERE id IN ({_placeholders(len(chunk))})"
                out.update(conn.execute(sql, chunk).fetchall())
            return out

        return await self.db.read(run)

    async def get_node(self, node_id: int) -> tuple[str, object] | None:
        """Kind and entity of one node, both read in one reader-thread call."""
        return await self.db.read_point(lambda c: _node(c, node_id))

    async def _by_ids(
        self, select_where_in: str, ids: Seq[int], make: Callable[[tuple[Any, ...]], T]
    ) -> dict[int, T]:
        """Rows of `SELECT … WHERE id IN (…)` for `ids`, in batches, made into entities by id."""
        wanted = list(ids)

        def run(conn: sqlite3.Connection) -> dict[int, T]:
            out: dict[int, T] = {}
            for chunk in _chunks(wanted):
                sql = f"{select_where_in} ({_placeholders(len(chunk))})"
                for r in conn.execute(sql, chunk):
                    out[r[0]] = make(r)
            return out

        return await self.db.read(run) if wanted else {}

    # -- users, organizations --------------------------------------------------------------
    async def create_user(
        self, username: str, *, email: str | None = None, password_hash: str | None = None
    ) -> User:
        """Create a user (username unique, case-insensitive)."""
        (user_id,) = await self.reserve_ids("user", 1)
        now = _now_ms()

        def run(conn: sqlite3.Connection) -> None:
            taken = conn.execute(
                "SELECT 1 FROM users WHERE username = ? COLLATE NOCASE", (username,)
            ).fetchone()
            if taken:
                raise Conflict(f"username {username!r} is taken")
            if email and conn.execute(
                "SELECT 1 FROM users WHERE email = ? COLLATE NOCASE", (email,)
            ).fetchone():
                raise Conflict(f"email {email!r} is already registered")
            conn.execute(
                "INSERT INTO users (id, username, email, password_hash, created_at_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (user_id, username, email, password_hash, now),
            )

        await self.db.write(run)
        return User(id=user_id, username=username, email=email, created_at_ms=now)

    async def get_users(self, ids: Seq[int]) -> dict[int, User]:
        """Users by id."""
        return await self._by_ids(
            "SELECT id, username, email, created_at_ms, role FROM users WHERE id IN",
            ids, lambda r: User(id=r[0], username=r[1], email=r[2], created_at_ms=r[3], role=r[4]))

    async def get_user_by_username(self, username: str) -> User | None:
        """A user by name, case-insensitive."""
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT id, username, email, created_at_ms, role FROM users"
                " WHERE username = ? COLLATE NOCASE",
                (username,),
            ).fetchone()
        )
        return User(id=row[0], username=row[1], email=row[2], created_at_ms=row[3],
                    role=row[4]) if row else None

    async def create_organization(
        self, slug: str, *, name: str = "", description: str = ""
    ) -> Organization:
        """Create an organization (slug unique)."""
        (org_id,) = await self.reserve_ids("organization", 1)

        def run(conn: sqlite3.Connection) -> None:
            if conn.execute(
                "SELECT 1 FROM organizations WHERE slug = ? COLLATE NOCASE", (slug,)
            ).fetchone():
                raise Conflict(f"organization slug {slug!r} is taken")
            conn.execute(
                "INSERT INTO organizations (id, slug, name, description) VALUES (?, ?, ?, ?)",
                (org_id, slug, name, description),
            )

        await self.db.write(run)
        return Organization(id=org_id, slug=slug, name=name, description=description)

    async def get_organizations(self, ids: Seq[int]) -> dict[int, Organization]:
        """Organizations by id."""
        return await self._by_ids(
            "SELECT id, slug, name, description FROM organizations WHERE id IN",
            ids, lambda r: Organization(id=r[0], slug=r[1], name=r[2], description=r[3]))

    async def add_organization_member(self, organization_id: int, user_id: int) -> None:
        """Add an active member, or make an invitation active (idempotent; a role is kept)."""
        await self.db.write(
            lambda c: c.execute(
                "INSERT INTO organization_members (organization_id, user_id, created_at_ms)"
                " VALUES (?, ?, ?) ON CONFLICT (organization_id, user_id)"
                " DO UPDATE SET status = 'active'",
                (organization_id, user_id, _now_ms()),
            )
        )

    async def is_organization_member(self, organization_id: int, user_id: int) -> bool:
        """Membership test."""
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT 1 FROM organization_members WHERE organization_id = ? AND user_id = ?"
                " AND status = 'active'",
                (organization_id, user_id),
            ).fetchone()
        )
        return row is not None

    # -- images and sequences --------------------------------------------------------------
    async def insert_sequence(self, sequence: Sequence, images: Seq[Image]) -> None:
        """Insert a sequence, its images and the tile index of both image tilesets in one
        transaction."""
        now = _now_ms()
        for im in images:
            if im.sequence_id != sequence.id:
                raise ValueError(f"image {im.id} belongs to {im.sequence_id}, not {sequence.id}")
        ordered = sorted(images, key=lambda im: (im.captured_at_ms, im.id))
        tiles = sequence_rows(ordered)
        # Without computed values both tilesets draw the sequence alike.
        computed = sequence_rows(ordered, computed=True) \
            if any(has_computed(im) for im in ordered) else tiles
        rows = []
        boxes = []
        for im, qk, compass in zip(ordered, tiles.qk, tiles.compass, strict=True):
            rows.append((
                im.id, sequence.id, im.creator_id, im.organization_id, im.captured_at_ms,
                im.lon, im.lat, im.altitude_m, im.compass_angle_deg, im.computed_lon,
                im.computed_lat, im.computed_altitude_m, im.computed_compass_angle_deg,
                im.camera_type,
                json.dumps(list(im.camera_parameters)) if im.camera_parameters else None,
                im.exif_orientation, im.width, im.height, im.make, im.model, int(im.is_pano),
                im.quality_score, leaf_cell(im.lat, im.lon), im.content_sha256,
                im.created_at_ms or now, qk, compass,
            ))
            boxes.append((im.id, im.lon, im.lon, im.lat, im.lat))
        extras = [(json.dumps(list(im.computed_rotation)) if im.computed_rotation else None,
                   im.atomic_scale, im.merge_cc, im.assets, qk, compass)
                  for im, qk, compass in zip(ordered, computed.qk, computed.compass, strict=True)]
        first = ordered[0] if ordered else None
        figures = figure_values(line_figures([(im.lon, im.lat) for im in ordered],
                                             [im.captured_at_ms for im in ordered]))

        def run(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "INSERT INTO sequences (id, creator_id, organization_id, created_at_ms,"
                " first_image_id, first_captured_at_ms, is_pano, computed_tiles,"
                f" {', '.join(FIGURE_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, 1,"
                f" {_placeholders(len(FIGURE_COLUMNS))})",
                (sequence.id, sequence.creator_id, sequence.organization_id,
                 sequence.created_at_ms or now, first.id if first else None,
                 first.captured_at_ms if first else None,
                 int(any(im.is_pano for im in ordered)), *figures),
            )
            rowid = int(cur.lastrowid or 0)
            conn.executemany(SQL_INSERT_IMAGE, [
                (*row, rowid, tile_rec(row[0], row[25], row[4], row[26], row[20], row[3],
                                       row[2], rowid), *extra,
                 tile_rec(row[0], extra[4], row[4], extra[5], row[20], row[3], row[2], rowid))
                for row, extra in zip(rows, extras, strict=True)])
            conn.executemany(SQL_INSERT_RTREE.format(table="images_rtree"), boxes)
            pack_tiles(conn, (int(qk) for qk in tiles.qk))  # after the images: they are in
            write_lines_and_overview(conn, ORIGINAL_INDEX, sequence.id, tiles)
            bump_epochs(conn, ORIGINAL_INDEX.group, tiles.touched)
            write_lines_and_overview(conn, COMPUTED_INDEX, sequence.id, computed)
            bump_epochs(conn, COMPUTED_INDEX.group, computed.touched)

        await self.db.write(run)

    async def find_images_by_sha256(self, hashes: Iterable[str]) -> dict[str, int]:
        """Stored image ids for content hashes."""
        wanted = list(dict.fromkeys(hashes))

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            out: dict[str, int] = {}
            for chunk in _chunks(wanted):
                sql = (
                    "SELECT content_sha256, id FROM images"
                    f" WHERE content_sha256 IN ({_placeholders(len(chunk))})"
                )
                out.update(conn.execute(sql, chunk).fetchall())
            return out

        return await self.db.read(run) if wanted else {}

    async def get_images(self, ids: Seq[int]) -> dict[int, Image]:
        """Images by id with the creator's username."""
        if not ids:
            return {}
        if len(ids) == 1:
            image_id = ids[0]
            row = await self.db.read(
                lambda c: c.execute(
                    f"SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM} WHERE i.id = ?", (image_id,)
                ).fetchone()
            )
            return {image_id: _image_from_row(row)} if row else {}

        def run(conn: sqlite3.Connection) -> dict[int, Image]:
            out = {}
            for chunk in _chunks(list(ids)):
                sql = (
                    f"SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM}"
                    f" WHERE i.id IN ({_placeholders(len(chunk))})"
                )
                for r in conn.execute(sql, chunk):
                    out[r[0]] = _image_from_row(r)
            return out

        return await self.db.read(run)

    async def search_images(self, q: ImageSearch) -> Page[Image]:
        """Filtered images; see the protocol for order and limit rules."""
        if q.image_ids is not None:
            return await self._images_by_ids(q)
        where: list[str] = []
        params: list[Any] = []
        source = IMAGE_FROM
        if q.bbox is not None:
            west, south, east, north = q.bbox
            source = (
                "images_rtree r JOIN images i ON i.id = r.id JOIN users u ON u.id = i.creator_id"
            )
            # R*Tree bounds are float32: widen slightly, then recheck on the exact columns.
            where.append(
                "r.min_lon >= ? AND r.max_lon <= ? AND r.min_lat >= ? AND r.max_lat <= ?"
                " AND i.lon BETWEEN ? AND ? AND i.lat BETWEEN ? AND ?"
            )
            pad = 1e-4
            params += [west - pad, east + pad, south - pad, north + pad, west, east, south, north]
        if q.s2_range is not None:
            where.append("i.s2_leaf BETWEEN ? AND ?")
            params += list(q.s2_range)
        if q.sequence_ids is not None:
            where.append(f"i.sequence_id IN ({_placeholders(len(q.sequence_ids))})")
            params += list(q.sequence_ids)
        if q.organization_id is not None:
            where.append("i.organization_id = ?")
            params.append(q.organization_id)
        if q.creator_username is not None:
            where.append("u.username = ? COLLATE NOCASE")
            params.append(q.creator_username)
        self._common_image_filters(q, where, params)
        if q.after is not None:
            where.append("(i.captured_at_ms, i.id) > (?, ?)")
            params += list(q.after)
        sql = f"SELECT {IMAGE_COLUMNS} FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY i.captured_at_ms, i.id"
        if q.limit is not None:
            sql += " LIMIT ?"
            params.append(q.limit + 1)
        rows = await self.db.read(lambda c: c.execute(sql, params).fetchall())
        items = [_image_from_row(r) for r in rows]
        next_after = None
        if q.limit is not None and len(items) > q.limit:
            items = items[: q.limit]
            next_after = (items[-1].captured_at_ms, items[-1].id)
        return Page(items=items, next_after=next_after)

    @staticmethod
    def _common_image_filters(q: ImageSearch, where: list[str], params: list[Any]) -> None:
        if q.start_captured_at_ms is not None:
            where.append("i.captured_at_ms >= ?")
            params.append(q.start_captured_at_ms)
        if q.end_captured_at_ms is not None:
            where.append("i.captured_at_ms < ?")
            params.append(q.end_captured_at_ms)
        if q.is_pano is not None:
            where.append("i.is_pano = ?")
            params.append(int(q.is_pano))
        if q.make is not None:
            where.append("i.make = ? COLLATE NOCASE")
            params.append(q.make)
        if q.model is not None:
            where.append("i.model = ? COLLATE NOCASE")
            params.append(q.model)
        if q.camera_type is not None:
            where.append("i.camera_type = ?")
            params.append(q.camera_type)

    async def _images_by_ids(self, q: ImageSearch) -> Page[Image]:
        assert q.image_ids is not None
        found = await self.get_images(list(dict.fromkeys(q.image_ids)))
        items = []
        for image_id in dict.fromkeys(q.image_ids):
            im = found.get(image_id)
            if im is not None and q.matches(im):
                items.append(im)
        return Page(items=items)

    async def relabel_merge_cc(self, old: Seq[int], new: int) -> int:
        """Move the images of components `old` into component `new` (one transaction)."""
        labels = sorted(set(old) - {new})
        if not labels:
            return 0

        def run(conn: sqlite3.Connection) -> int:
            marks = ",".join("?" * len(labels))
            return int(conn.execute(f"UPDATE images SET merge_cc = ? WHERE merge_cc IN ({marks})",
                                    (new, *labels)).rowcount)

        return await self.db.write(run)

    async def count_images(self) -> int:
        """Number of stored images."""
        row = await self.db.read(lambda c: c.execute("SELECT COUNT(*) FROM images").fetchone())
        return int(row[0])

    # -- map features and detections -------------------------------------------------------
    async def insert_map_features(self, features: Seq[MapFeature]) -> None:
        """Insert map features, index their positions and bump their z14 tile epochs."""
        rows, tiles = map_feature_rows(features)
        boxes = [(f.id, f.lon, f.lon, f.lat, f.lat) for f in features]
        touched = sorted(tiles)

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO map_features (id, object_value, object_type, lon, lat,"
                " aligned_direction_deg, first_seen_at_ms, last_seen_at_ms, qk)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.executemany(SQL_INSERT_RTREE.format(table="map_features_rtree"), boxes)
            conn.executemany(SQL_BUMP_EPOCH, [("features", IMAGE_ZOOM, t) for t in touched])

        await self.db.write(run)

    async def replace_detections(self, image_ids: Seq[int], detections: Seq[Detection]
                                 ) -> list[int]:
        """Delete the images' detections, insert the new ones; the features that lost
        evidence."""
        rows = [
            (d.id, d.image_id, d.map_feature_id, d.value,
             json.dumps([[list(p) for p in ring] for ring in d.geometry]), d.created_at_ms)
            for d in detections
        ]
        ids = list(image_ids)

        def run(conn: sqlite3.Connection) -> list[int]:
            lost: set[int] = set()
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                marks = ",".join("?" * len(part))
                lost.update(fid for (fid,) in conn.execute(
                    f"SELECT DISTINCT map_feature_id FROM detections WHERE image_id IN ({marks})"
                    " AND map_feature_id IS NOT NULL", part))
                conn.execute(f"DELETE FROM detections WHERE image_id IN ({marks})", part)
            conn.executemany("INSERT INTO detections VALUES (?, ?, ?, ?, ?, ?)", rows)
            return sorted(lost)

        return await self.db.write(run)

    async def set_quality_scores(self, scores: Seq[tuple[int, float | None]]) -> None:
        """Set images' quality_score."""
        await self.db.write(lambda c: c.executemany(
            "UPDATE images SET quality_score = ? WHERE id = ?",
            [(score, image_id) for image_id, score in scores]))

    async def set_computed_fields(self, fields: Seq[ComputedFields]) -> int:
        """Write the images' computed fields and rebuild the computed tile index of the
        sequences whose computed positions or angles changed, in one write transaction."""
        wanted = list(dict.fromkeys(f.image_id for f in fields))

        def run(conn: sqlite3.Connection) -> int:
            stored: dict[int, Image] = {}
            for chunk in _chunks(wanted):
                sql = (f"SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM}"
                       f" WHERE i.id IN ({_placeholders(len(chunk))})")
                stored.update((r[0], _image_from_row(r)) for r in conn.execute(sql, chunk))
            changed, moved = computed_updates(stored, fields)
            conn.executemany(
                "UPDATE images SET computed_lon = ?, computed_lat = ?, computed_altitude_m = ?,"
                " computed_compass_deg = ?, computed_rotation = ?, atomic_scale = ?,"
                " camera_parameters = ?, assets = ?, merge_cc = ? WHERE id = ?",
                [(im.computed_lon, im.computed_lat, im.computed_altitude_m,
                  im.computed_compass_angle_deg,
                  json.dumps(list(im.computed_rotation)) if im.computed_rotation else None,
                  im.atomic_scale,
                  json.dumps(list(im.camera_parameters)) if im.camera_parameters else None,
                  im.assets, im.merge_cc, im.id) for im in changed])
            rebuild_computed(conn, moved)
            return len(changed)

        return await self.db.write(run) if wanted else 0

    async def delete_images(self, image_ids: Seq[int]) -> DeletedImages:
        """Delete images and what hangs on them, rebuild the tile rows of the sequences that
        keep images and bump the epochs, in one write transaction (`sqlite.delete`)."""
        wanted = list(image_ids)
        return await self.db.write(lambda c: delete_image_rows(c, wanted)) if wanted \
            else DeletedImages()

    async def apply_feature_changes(self, changes: FeatureChanges) -> None:
        """Upsert/delete map features and relink detections in one write transaction."""
        upserts, deletes = changes.upserts, changes.deletes
        rows, tiles = map_feature_rows(upserts)
        shift = FEATURE_TILE_SHIFT
        ids = [f.id for f in upserts] + list(deletes)

        def run(conn: sqlite3.Connection) -> None:
            touched = set(tiles)
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                marks = ",".join("?" * len(part))
                touched.update(qk >> shift for (qk,) in conn.execute(
                    f"SELECT qk FROM map_features WHERE id IN ({marks})", part))
            conn.executemany("UPDATE detections SET map_feature_id = NULL"
                             " WHERE map_feature_id = ?", [(i,) for i in deletes])
            conn.executemany("DELETE FROM map_features WHERE id = ?", [(i,) for i in deletes])
            conn.executemany("DELETE FROM map_features_rtree WHERE id = ?", [(i,) for i in ids])
            conn.executemany(
                "INSERT INTO map_features (id, object_value, object_type, lon, lat,"
                " aligned_direction_deg, first_seen_at_ms, last_seen_at_ms, qk)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " object_value = excluded.object_value, object_type = excluded.object_type,"
                " lon = excluded.lon, lat = excluded.lat,"
                " aligned_direction_deg = excluded.aligned_direction_deg,"
                " first_seen_at_ms = excluded.first_seen_at_ms,"
                " last_seen_at_ms = excluded.last_seen_at_ms, qk = excluded.qk", rows)
            conn.executemany(SQL_INSERT_RTREE.format(table="map_features_rtree"),
                             [(f.id, f.lon, f.lon, f.lat, f.lat) for f in upserts])
            conn.executemany("UPDATE detections SET map_feature_id = ? WHERE id = ?",
                             [(fid, did) for did, fid in changes.assignments])
            conn.executemany(SQL_BUMP_EPOCH, [("features", IMAGE_ZOOM, t)
                                              for t in sorted(touched)])

        await self.db.write(run)

    async def insert_detections(self, detections: Seq[Detection]) -> None:
        """Insert detections."""
        rows = [
            (d.id, d.image_id, d.map_feature_id, d.value,
             json.dumps([[list(p) for p in ring] for ring in d.geometry]), d.created_at_ms)
            for d in detections
        ]
        await self.db.write(
            lambda c: c.executemany("INSERT INTO detections VALUES (?, ?, ?, ?, ?, ?)", rows)
        )

    async def get_map_features(self, ids: Seq[int]) -> dict[int, MapFeature]:
        """Map features by id."""
        return await self._by_ids(
            f"SELECT {_FEATURE_COLUMNS} FROM map_features f WHERE f.id IN", ids, _feature_from_row)

    async def get_detections(self, ids: Seq[int]) -> dict[int, Detection]:
        """Detections by id."""
        return await self._by_ids(
            f"SELECT {DETECTION_COLUMNS} FROM detections d WHERE d.id IN", ids,
            _detection_from_row)

    async def search_map_features(self, q: MapFeatureSearch) -> Page[MapFeature]:
        """Map features in a bbox, by id."""
        west, south, east, north = q.bbox
        pad = 1e-4
        where = [
            "r.min_lon >= ? AND r.max_lon <= ? AND r.min_lat >= ? AND r.max_lat <= ?",
            "f.lon BETWEEN ? AND ? AND f.lat BETWEEN ? AND ?",
        ]
        params: list[Any] = [west - pad, east + pad, south - pad, north + pad,
                             west, east, south, north]
        if q.object_values:
            where.append(_values_clause("f.object_value", q.object_values, params))
        if q.object_type is not None:
            where.append("f.object_type = ?")
            params.append(q.object_type)
        for column, start, end in (
            ("f.first_seen_at_ms", q.start_first_seen_at_ms, q.end_first_seen_at_ms),
            ("f.last_seen_at_ms", q.start_last_seen_at_ms, q.end_last_seen_at_ms),
        ):
            if start is not None:
                where.append(f"{column} >= ?")
                params.append(start)
            if end is not None:
                where.append(f"{column} < ?")
                params.append(end)
        if q.after is not None:
            where.append("f.id > ?")
            params.append(q.after)
        sql = (
            f"SELECT {_FEATURE_COLUMNS} FROM map_features_rtree r"
            " JOIN map_features f ON f.id = r.id WHERE " + " AND ".join(where)
            + " ORDER BY f.id LIMIT ?"
        )
        params.append(q.limit + 1)
        rows = await self.db.read(lambda c: c.execute(sql, params).fetchall())
        items = [_feature_from_row(r) for r in rows]
        if len(items) > q.limit:
            items = items[: q.limit]
            return Page(items=items, next_after=(items[-1].id,))
        return Page(items=items)

    async def search_detections(self, q: DetectionSearch) -> Page[Detection]:
        """Detections whose image is in a bbox, by id."""
        west, south, east, north = q.bbox
        pad = 1e-4
        where = [
            "r.min_lon >= ? AND r.max_lon <= ? AND r.min_lat >= ? AND r.max_lat <= ?",
            "i.lon BETWEEN ? AND ? AND i.lat BETWEEN ? AND ?",
        ]
        params: list[Any] = [west - pad, east + pad, south - pad, north + pad,
                             west, east, south, north]
        if q.values:
            where.append(_values_clause("d.value", q.values, params))
        if q.start_captured_at_ms is not None:
            where.append("i.captured_at_ms >= ?")
            params.append(q.start_captured_at_ms)
        if q.end_captured_at_ms is not None:
            where.append("i.captured_at_ms < ?")
            params.append(q.end_captured_at_ms)
        if q.after is not None:
            where.append("d.id > ?")
            params.append(q.after)
        sql = (
            f"SELECT {DETECTION_COLUMNS} FROM images_rtree r JOIN images i ON i.id = r.id"
            " JOIN detections d ON d.image_id = i.id WHERE " + " AND ".join(where)
            + " ORDER BY d.id LIMIT ?"
        )
        params.append(q.limit + 1)
        rows = await self.db.read(lambda c: c.execute(sql, params).fetchall())
        items = [_detection_from_row(r) for r in rows]
        if len(items) > q.limit:
            items = items[: q.limit]
            return Page(items=items, next_after=(items[-1].id,))
        return Page(items=items)

    async def detections_for_images(self, image_ids: Seq[int]) -> dict[int, list[Detection]]:
        """Detections per image, by id."""

        def run(conn: sqlite3.Connection) -> dict[int, list[Detection]]:
            out: dict[int, list[Detection]] = {i: [] for i in image_ids}
            for chunk in _chunks(list(image_ids)):
                sql = (
                    f"SELECT {DETECTION_COLUMNS} FROM detections d"
                    f" WHERE d.image_id IN ({_placeholders(len(chunk))}) ORDER BY d.id"
                )
                for r in conn.execute(sql, chunk):
                    out[r[1]].append(_detection_from_row(r))
            return out

        return await self.db.read(run) if image_ids else {}

    async def detections_for_features(self, feature_ids: Seq[int]) -> dict[int, list[Detection]]:
        """Detections per map feature, newest image first."""

        def run(conn: sqlite3.Connection) -> dict[int, list[Detection]]:
            out: dict[int, list[Detection]] = {f: [] for f in feature_ids}
            for chunk in _chunks(list(feature_ids)):
                sql = (
                    f"SELECT {DETECTION_COLUMNS} FROM detections d"
                    " JOIN images i ON i.id = d.image_id"
                    f" WHERE d.map_feature_id IN ({_placeholders(len(chunk))})"
                    " ORDER BY i.captured_at_ms DESC, d.id"
                )
                for r in conn.execute(sql, chunk):
                    out[r[5]].append(_detection_from_row(r))
            return out

        return await self.db.read(run) if feature_ids else {}

    async def image_ids_for_features(self, feature_ids: Seq[int]) -> dict[int, list[int]]:
        """Images that saw each feature, by capture time."""

        def run(conn: sqlite3.Connection) -> dict[int, list[int]]:
            out: dict[int, list[int]] = {f: [] for f in feature_ids}
            for chunk in _chunks(list(feature_ids)):
                sql = (
                    "SELECT DISTINCT d.map_feature_id, i.id, i.captured_at_ms FROM detections d"
                    " JOIN images i ON i.id = d.image_id"
                    f" WHERE d.map_feature_id IN ({_placeholders(len(chunk))})"
                    " ORDER BY i.captured_at_ms, i.id"
                )
                for fid, iid, _ in conn.execute(sql, chunk):
                    out[fid].append(iid)
            return out

        return await self.db.read(run) if feature_ids else {}

    # -- vector tiles ----------------------------------------------------------------------
    async def tile_epoch(self, group: str, z: int, x: int, y: int) -> int:
        """The write epoch of a tile (0 = never written). Called for every tile request."""
        key = morton(x, y)
        row = await self.db.read_point(
            lambda c: c.execute(
                "SELECT epoch FROM tile_epochs WHERE grp = ? AND z = ? AND tile = ?",
                (group, z, key),
            ).fetchone()
        )
        return int(row[0]) if row else 0

    async def tile_content(self, z: int, x: int, y: int, layers: Seq[str], *,
                           computed: bool = False, epoch: int | None = None) -> TileContent:
        """The rows of every layer asked for, read on one reader thread in one snapshot
        (one file: always at least at `epoch`).

        A z14 tile of `mly1_public` is primary-key reads only (its pack, its lines, their
        sequences' keys), bounded by the tile's content like its encoding, which runs on the
        event loop anyway: it is read there too (`Database.read_point`, unless
        `store_inline_point_reads` is off), sparing a reader-thread round trip (~200 µs of
        CPU, 13 % of a cold z14 tile at 100 k images)."""

        def run(conn: sqlite3.Connection) -> TileContent:
            conn.execute("BEGIN")
            try:
                return TileContent(
                    images=tile_images(conn, z, x, y, computed=computed)
                    if "image" in layers else None,
                    overview=tile_overview(conn, z, x, y, computed=computed)
                    if "overview" in layers else None,
                    lines=tile_sequence_lines(conn, z, x, y, computed=computed)
                    if "sequence" in layers else None,
                )
            finally:
                conn.execute("COMMIT")

        if z == IMAGE_ZOOM and not computed and "overview" not in layers:
            return await self.db.read_point(run)
        return await self.db.read(run)

    async def tile_map_features(
        self, object_type: str, z: int, x: int, y: int
    ) -> TileFeatureColumns:
        """Map features of one type inside a tile (z14 `point` / `traffic_sign` layers)."""
        low, high = tile_range(z, x, y)
        sql = (
            "SELECT id, lon, lat, object_value, first_seen_at_ms, last_seen_at_ms"
            " FROM map_features WHERE object_type = ? AND qk BETWEEN ? AND ? ORDER BY qk"
        )
        rows = await self.db.read(lambda c: c.execute(sql, (object_type, low, high)).fetchall())
        return TileFeatureColumns(*zip(*rows, strict=True)) if rows else TileFeatureColumns()


def _node(conn: sqlite3.Connection, node_id: int) -> tuple[str, object] | None:
    """Resolve one node id to (kind, entity) on a reader connection."""
    row = conn.execute("SELECT kind FROM nodes WHERE id = ?", (node_id,)).fetchone()
    if row is None:
        return None
    kind = row[0]
    entity: object | None = None
    if kind == "image":
        r = conn.execute(f"SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM} WHERE i.id = ?",
                         (node_id,)).fetchone()
        entity = _image_from_row(r) if r else None
    elif kind == "map_feature":
        r = conn.execute(f"SELECT {_FEATURE_COLUMNS} FROM map_features f WHERE f.id = ?",
                         (node_id,)).fetchone()
        entity = _feature_from_row(r) if r else None
    elif kind == "detection":
        r = conn.execute(f"SELECT {DETECTION_COLUMNS} FROM detections d WHERE d.id = ?",
                         (node_id,)).fetchone()
        entity = _detection_from_row(r) if r else None
    elif kind == "organization":
        r = conn.execute("SELECT id, slug, name, description FROM organizations WHERE id = ?",
                         (node_id,)).fetchone()
        entity = Organization(id=r[0], slug=r[1], name=r[2], description=r[3]) if r else None
    elif kind == "user":
        r = conn.execute("SELECT id, username, email, created_at_ms, role FROM users WHERE id = ?",
                         (node_id,)).fetchone()
        entity = (User(id=r[0], username=r[1], email=r[2], created_at_ms=r[3], role=r[4])
                  if r else None)
    return (kind, entity) if entity is not None else None
