"""wayview.store.postgres.store: PostgresStore, the Store protocol on PostgreSQL + PostGIS.

For deployments that outgrow one process and one disk: several `serve` and `worker` processes
share one database. Every write that must be atomic is one transaction; every concurrent-safe
invariant (unique names, one built-in app, one id per node, a job claimed once) is enforced
by the database itself, not by a single writer as in SQLite.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from collections.abc import Sequence as Seq
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from wayview import ids as id_mint
from wayview.errors import Conflict, StoreUnavailable
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
    TILE_INDEXES,
    SingleLayerTileReads,
    computed_updates,
    map_feature_rows,
)
from wayview.store.figures import FIGURE_COLUMNS, figure_values
from wayview.store.migrate import Migration, load_migrations, report_outcome
from wayview.store.postgres.accounts import AccountsMixin
from wayview.store.postgres.blurs import BlursMixin
from wayview.store.postgres.connection import Conn, Database, Deadlines
from wayview.store.postgres.delete import delete_images as delete_image_rows
from wayview.store.postgres.edits import EditsMixin
from wayview.store.postgres.exports import ExportsMixin
from wayview.store.postgres.governance import GovernanceMixin
from wayview.store.postgres.jobs import JobsMixin
from wayview.store.postgres.profiles import ProfilesMixin
from wayview.store.postgres.rendered import RenderedTilesMixin
from wayview.store.postgres.replicas import Replicas
from wayview.store.postgres.tiles import (
    SQL_BUMP_EPOCH,
    SQL_REBUILD_PACKS,
    Z14Reads,
    bump_epochs,
    insert_lines,
    insert_overview,
    is_z14_pair,
    rebuild_computed,
    rebuild_pending_computed,
    tile_content_from_rows,
    tile_statements,
)
from wayview.store.postgres.uploads import UploadsMixin
from wayview.tiles.index import (
    IMAGE_ZOOM,
    has_computed,
    morton,
    sequence_rows,
    tile_range,
)

T = TypeVar("T")

log = logging.getLogger("wayview.store")

#: A tile's write epoch (group, zoom, Morton code).
SQL_TILE_EPOCH = "SELECT epoch FROM tile_epochs WHERE grp = %s AND z = %s AND tile = %s"

#: Sequences whose computed tile index one transaction builds when the store opens.
_BUILD_BATCH = 100

#: Key of the transaction-scoped advisory lock held while migrating, so processes starting
#: at once apply each migration exactly once ("wayview" in ASCII).
MIGRATION_LOCK_KEY = 0x77617976696577


SQL_INSERT_IMAGE = (
    "INSERT INTO images (id, sequence_id, creator_id, organization_id, captured_at_ms, lon, lat,"
    " altitude_m, compass_angle_deg, computed_lon, computed_lat, computed_altitude_m,"
    " computed_compass_deg, camera_type, camera_parameters, exif_orientation, width, height,"
    " make, model, is_pano, quality_score, s2_leaf, content_sha256, created_at_ms, qk,"
    " tile_compass_deg, sequence_no, computed_rotation, atomic_scale, merge_cc, assets,"
    " computed_qk, computed_tile_compass_deg)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
    " %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
def _now_ms() -> int:
    return int(time.time() * 1000)


def _triple(values: list[float] | None) -> tuple[float, float, float] | None:
    return (values[0], values[1], values[2]) if values else None


def _image_from_row(r: tuple[Any, ...]) -> Image:
    return Image(
        id=r[0], sequence_id=r[1], creator_id=r[2], captured_at_ms=r[3], lon=r[4], lat=r[5],
        width=r[6], height=r[7], altitude_m=r[8], compass_angle_deg=r[9], camera_type=r[10],
        camera_parameters=_triple(r[11]), exif_orientation=r[12], make=r[13], model=r[14],
        is_pano=bool(r[15]), organization_id=r[16], quality_score=r[17], computed_lon=r[18],
        computed_lat=r[19], computed_altitude_m=r[20], computed_compass_angle_deg=r[21],
        content_sha256=r[22], created_at_ms=r[23], creator_username=r[24],
        computed_rotation=_triple(r[25]), atomic_scale=r[26], merge_cc=r[27], assets=r[28],
        media_version=r[29], hidden=bool(r[30]),
    )


_FEATURE_COLUMNS = (
    "f.id, f.object_value, f.object_type, f.lon, f.lat, f.aligned_direction_deg,"
    " f.first_seen_at_ms, f.last_seen_at_ms"
)


def _feature_from_row(r: tuple[Any, ...]) -> MapFeature:
    return MapFeature(
        id=r[0], object_value=r[1], object_type=r[2], lon=r[3], lat=r[4],
        aligned_direction_deg=r[5], first_seen_at_ms=r[6], last_seen_at_ms=r[7],
    )


def _detection_from_row(r: tuple[Any, ...]) -> Detection:
    rings = tuple(tuple((float(u), float(v)) for u, v in ring) for ring in r[3])
    return Detection(
        id=r[0], image_id=r[1], value=r[2], geometry=rings, created_at_ms=r[4],
        map_feature_id=r[5],
    )


def _user_from_row(r: tuple[Any, ...]) -> User:
    return User(id=r[0], username=r[1], email=r[2], created_at_ms=r[3], role=r[4])


def _organization_from_row(r: tuple[Any, ...]) -> Organization:
    return Organization(id=r[0], slug=r[1], name=r[2], description=r[3])


def glob_to_like(pattern: str) -> str:
    """`*` wildcards (spec §3.11) to a LIKE pattern (escape `\\`) matching the rest literally.

    >>> glob_to_like("regulatory--*"), glob_to_like("a_b%c*")
    ('regulatory--%', 'a\\\\_b\\\\%c%')
    """
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("%")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _values_clause(column: str, values: tuple[str, ...], params: list[Any]) -> str:
    parts = []
    for value in values:
        if "*" in value:
            parts.append(f"{column} LIKE %s ESCAPE '\\'")
            params.append(glob_to_like(value))
        else:
            parts.append(f"{column} = %s")
            params.append(value)
    return "(" + " OR ".join(parts) + ")"


def _bbox_clause(alias: str, bbox: tuple[float, float, float, float], params: list[Any]) -> str:
    """Points of `alias` in a bbox: the GiST index (float32 boxes), then the exact columns."""
    west, south, east, north = bbox
    params += [west, south, east, north, west, east, south, north]
    return (
        f"{alias}.geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)"
        f" AND {alias}.lon BETWEEN %s AND %s AND {alias}.lat BETWEEN %s AND %s"
    )


class PostgresStore(AccountsMixin, JobsMixin, UploadsMixin, GovernanceMixin, EditsMixin,
                     ExportsMixin, BlursMixin, ProfilesMixin, RenderedTilesMixin,
                     SingleLayerTileReads):
    """The Store protocol on PostgreSQL + PostGIS through a pool of async connections."""

    def __init__(self, url: str, *, pool_size: int = 10, deadlines: Deadlines | None = None,
                 replica_urls: Seq[str] = (), replica_max_lag_s: float = 5.0) -> None:
        self.db = Database(url, pool_size=pool_size, deadlines=deadlines)
        self.z14_reads = Z14Reads(self.db)
        self.reads = Replicas(self.db, replica_urls, max_lag_s=replica_max_lag_s,
                              pool_size=pool_size, deadlines=deadlines)

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, apply pending migrations and build the computed tile index of sequences
        stored without one (migration 0006); safe when several processes start at once."""
        await self.db.open()
        try:
            async with self.db.transaction() as conn:
                await self._migrate(conn)
            built = 0
            while True:
                async with self.db.transaction() as conn:
                    await conn.execute("SET LOCAL statement_timeout = 0")
                    done = await rebuild_pending_computed(conn, _BUILD_BATCH)
                if not done:
                    break
                if not built:
                    log.info("building the mly1_computed_public tile index of stored sequences")
                built += done
            if built:
                log.info("built the mly1_computed_public tile index of %d sequences", built)
            await self.reads.open()
        except BaseException:
            await self.reads.close()
            await self.db.close()
            raise

    @staticmethod
    async def _migrate(conn: Conn) -> None:
        """Apply pending migrations in the caller's transaction, under an advisory lock.

        The lock is transaction-scoped: a second process waits here, then sees every
        migration recorded and applies none. DDL is transactional, so a failing migration
        leaves the schema as it was.
        """
        await conn.execute("SET LOCAL statement_timeout = 0")  # a migration takes its time
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at_ms bigint NOT NULL)"
        )
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cur.fetchall()}
        shipped = load_migrations("wayview.store.postgres")
        applied: list[Migration] = []
        for migration in shipped:
            if migration.version in done:
                continue
            try:
                await conn.execute(migration.sql.encode())  # several statements, no parameters
            except psycopg.ProgrammingError as exc:  # e.g. no right to create the extension
                raise StoreUnavailable(
                    f"cannot apply migration {migration.name}: "
                    f"{exc.diag.message_primary or str(exc).strip()} (PostGIS must be installed"
                    " in the database, or the role allowed to CREATE EXTENSION postgis)"
                ) from exc
            await conn.execute(
                "INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                (migration.version, migration.name, _now_ms()),
            )
            applied.append(migration)
        report_outcome("postgresql", done, applied, shipped)

    async def schema_version(self) -> int:
        """The newest applied migration."""
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT MAX(version) FROM schema_migrations")
            row = await cur.fetchone()
        return int(row[0] or 0) if row else 0

    async def close(self) -> None:
        """Close the pools (the replicas' too)."""
        await self.reads.close()
        await self.db.close()

    # -- helpers ---------------------------------------------------------------------------
    async def _by_ids(
        self, select_where: str, ids: Seq[int], make: Callable[[tuple[Any, ...]], T], *,
        replica: bool = False,
    ) -> dict[int, T]:
        """Rows of `SELECT … WHERE <id> = ANY(%s)` for `ids`, made into entities by id (with
        `replica`, on the read path: `Replicas.read`)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        query = self._all_read if replica else self._all
        rows = await query(f"{select_where} = ANY(%s)", (wanted,))
        return {r[0]: make(r) for r in rows}

    # -- nodes -----------------------------------------------------------------------------
    async def reserve_ids(self, kind: str, count: int) -> list[int]:
        """Mint fresh random ids in the shared id space.

        Each candidate is inserted with ON CONFLICT DO NOTHING: the primary key decides, so
        processes reserving at the same moment never get the same id; the rare collision is
        drawn again.
        """
        if kind not in NODE_KINDS:
            raise ValueError(f"unknown node kind {kind!r}")
        out: list[int] = []
        async with self.db.transaction() as conn:
            while len(out) < count:
                candidates = list(dict.fromkeys(id_mint.new_id() for _ in range(count - len(out))))
                cur = await conn.execute(
                    "INSERT INTO nodes (id, kind) SELECT unnest(%s::bigint[]), %s"
                    " ON CONFLICT (id) DO NOTHING RETURNING id",
                    (candidates, kind),
                )
                got = {row[0] for row in await cur.fetchall()}
                out += [c for c in candidates if c in got]
        return out

    async def _claim_id(self, conn: Conn, kind: str, node_id: int) -> None:
        """Register a caller-chosen id (apps with a fixed client token) in `conn`'s
        transaction; Conflict when another kind holds it."""
        cur = await conn.execute(
            "INSERT INTO nodes (id, kind) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
            (node_id, kind),
        )
        if cur.rowcount:
            return
        cur = await conn.execute("SELECT kind FROM nodes WHERE id = %s", (node_id,))
        row = await cur.fetchone()
        if row is not None and row[0] != kind:
            raise Conflict(f"id {node_id} is already used by a {row[0]}")

    async def node_kinds(self, ids: Seq[int]) -> dict[int, str]:
        """Kinds of known ids (read path: a replica when one is usable)."""
        return await self._by_ids("SELECT id, kind FROM nodes WHERE id", ids, lambda r: str(r[1]),
                                  replica=True)

    async def get_node(self, node_id: int) -> tuple[str, object] | None:
        """Kind and entity of one node. Images, by far the most asked for, come with their
        kind in one statement; other kinds take a second one, on the same connection (read
        path: a replica when one is usable)."""
        return await self.reads.read(lambda conn: self._node(conn, node_id))

    @staticmethod
    async def _node(conn: Conn, node_id: int) -> tuple[str, object] | None:
        """`get_node` on `conn`."""
        cur = await conn.execute(
            f"SELECT n.kind, {IMAGE_COLUMNS} FROM nodes n"
            " LEFT JOIN images i ON i.id = n.id AND n.kind = 'image'"
            " LEFT JOIN users u ON u.id = i.creator_id WHERE n.id = %s", (node_id,))
        row = await cur.fetchone()
        if row is None:
            return None
        kind = str(row[0])
        if kind == "image":
            return ("image", _image_from_row(row[1:])) if row[1] is not None else None
        queries: dict[str, tuple[str, Callable[[tuple[Any, ...]], object]]] = {
            "map_feature": (f"SELECT {_FEATURE_COLUMNS} FROM map_features f WHERE f.id = %s",
                            _feature_from_row),
            "detection": (f"SELECT {DETECTION_COLUMNS} FROM detections d WHERE d.id = %s",
                          _detection_from_row),
            "organization": ("SELECT id, slug, name, description FROM organizations"
                             " WHERE id = %s", _organization_from_row),
            "user": ("SELECT id, username, email, created_at_ms, role FROM users WHERE id = %s",
                     _user_from_row),
        }
        if kind not in queries:
            return None
        query, make = queries[kind]
        cur = await conn.execute(query, (node_id,))
        entity = await cur.fetchone()
        return (kind, make(entity)) if entity is not None else None

    # -- users, organizations --------------------------------------------------------------
    async def create_user(
        self, username: str, *, email: str | None = None, password_hash: str | None = None
    ) -> User:
        """Create a user (username unique, case-insensitive; the unique index settles races)."""
        (user_id,) = await self.reserve_ids("user", 1)
        now = _now_ms()
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM users WHERE lower(username) = lower(%s)", (username,))
            if await cur.fetchone():
                raise Conflict(f"username {username!r} is taken")
            if email:
                cur = await conn.execute(
                    "SELECT 1 FROM users WHERE lower(email) = lower(%s)", (email,))
                if await cur.fetchone():
                    raise Conflict(f"email {email!r} is already registered")
            await conn.execute(
                "INSERT INTO users (id, username, email, password_hash, created_at_ms)"
                " VALUES (%s, %s, %s, %s, %s)",
                (user_id, username, email, password_hash, now),
            )
        return User(id=user_id, username=username, email=email, created_at_ms=now)

    async def get_users(self, ids: Seq[int]) -> dict[int, User]:
        """Users by id."""
        return await self._by_ids(
            "SELECT id, username, email, created_at_ms, role FROM users WHERE id", ids,
            _user_from_row)

    async def get_user_by_username(self, username: str) -> User | None:
        """A user by name, case-insensitive."""
        row = await self._one(
            "SELECT id, username, email, created_at_ms, role FROM users"
            " WHERE lower(username) = lower(%s)", (username,))
        return _user_from_row(row) if row else None

    async def create_organization(
        self, slug: str, *, name: str = "", description: str = ""
    ) -> Organization:
        """Create an organization (slug unique, case-insensitive)."""
        (org_id,) = await self.reserve_ids("organization", 1)
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM organizations WHERE lower(slug) = lower(%s)", (slug,))
            if await cur.fetchone():
                raise Conflict(f"organization slug {slug!r} is taken")
            await conn.execute(
                "INSERT INTO organizations (id, slug, name, description)"
                " VALUES (%s, %s, %s, %s)", (org_id, slug, name, description))
        return Organization(id=org_id, slug=slug, name=name, description=description)

    async def get_organizations(self, ids: Seq[int]) -> dict[int, Organization]:
        """Organizations by id."""
        return await self._by_ids(
            "SELECT id, slug, name, description FROM organizations WHERE id", ids,
            _organization_from_row)

    async def add_organization_member(self, organization_id: int, user_id: int) -> None:
        """Add an active member, or make an invitation active (idempotent; a role is kept)."""
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO organization_members (organization_id, user_id, created_at_ms)"
                " VALUES (%s, %s, %s) ON CONFLICT (organization_id, user_id)"
                " DO UPDATE SET status = 'active'", (organization_id, user_id, _now_ms()))

    async def is_organization_member(self, organization_id: int, user_id: int) -> bool:
        """Membership test."""
        row = await self._one(
            "SELECT 1 FROM organization_members WHERE organization_id = %s AND user_id = %s"
            " AND status = 'active'",
            (organization_id, user_id))
        return row is not None

    # -- images and sequences --------------------------------------------------------------
    async def insert_sequence(self, sequence: Sequence, images: Seq[Image]) -> None:
        """Insert a sequence, its images and the tile index of both image tilesets in one
        transaction.

        The tile epochs are bumped after the images, in sorted order (no deadlock between two
        writers), and before the overview cells: a writer holding the epoch rows of a tile
        blocks any other writer of that tile's cells until it commits, so the per-cell cap
        holds under concurrent writers too.
        """
        now = _now_ms()
        for im in images:
            if im.sequence_id != sequence.id:
                raise ValueError(f"image {im.id} belongs to {im.sequence_id}, not {sequence.id}")
        ordered = sorted(images, key=lambda im: (im.captured_at_ms, im.id))
        tiles = sequence_rows(ordered)
        # Without computed values both tilesets draw the sequence alike.
        computed = sequence_rows(ordered, computed=True) \
            if any(has_computed(im) for im in ordered) else tiles
        first = ordered[0] if ordered else None
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO sequences (id, creator_id, organization_id, created_at_ms,"
                " first_image_id, first_captured_at_ms, is_pano, computed_tiles,"
                f" {', '.join(FIGURE_COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s, %s, true,"
                f" {', '.join(['%s'] * len(FIGURE_COLUMNS))}) RETURNING seq_no",
                (sequence.id, sequence.creator_id, sequence.organization_id,
                 sequence.created_at_ms or now, first.id if first else None,
                 first.captured_at_ms if first else None, any(im.is_pano for im in ordered),
                 *figure_values(line_figures([(im.lon, im.lat) for im in ordered],
                                             [im.captured_at_ms for im in ordered]))),
            )
            seq_row = await cur.fetchone()
            assert seq_row is not None
            seq_no = int(seq_row[0])
            rows = [
                (im.id, sequence.id, im.creator_id, im.organization_id, im.captured_at_ms,
                 im.lon, im.lat, im.altitude_m, im.compass_angle_deg, im.computed_lon,
                 im.computed_lat, im.computed_altitude_m, im.computed_compass_angle_deg,
                 im.camera_type, list(im.camera_parameters) if im.camera_parameters else None,
                 im.exif_orientation, im.width, im.height, im.make, im.model, im.is_pano,
                 im.quality_score, leaf_cell(im.lat, im.lon), im.content_sha256,
                 im.created_at_ms or now, qk, compass, seq_no,
                 list(im.computed_rotation) if im.computed_rotation else None,
                 im.atomic_scale, im.merge_cc, im.assets, cqk, ccompass)
                for im, qk, compass, cqk, ccompass in zip(
                    ordered, tiles.qk, tiles.compass, computed.qk, computed.compass, strict=True)
            ]
            async with conn.cursor() as cur:
                if rows:
                    await cur.executemany(SQL_INSERT_IMAGE, rows)
                if tiles.lines:
                    await cur.executemany(
                        "INSERT INTO tile_sequence_lines (z, tile, sequence_id, coords)"
                        " VALUES (%s, %s, %s, %s)",
                        [(z, tile, sequence.id, blob) for z, tile, blob in tiles.lines],
                    )
                if tiles.touched:
                    await cur.executemany(
                        SQL_BUMP_EPOCH, [("images", z, tile) for z, tile in sorted(tiles.touched)])
                    # after the images, so that the packs include them
                    packs = sorted({int(qk) >> 24 for qk in tiles.qk})
                    if packs:
                        await cur.execute(SQL_REBUILD_PACKS, (packs,))
            await insert_lines(conn, COMPUTED_INDEX, sequence.id, computed)
            await bump_epochs(conn, COMPUTED_INDEX.group, computed.touched)
            await insert_overview(conn, ORIGINAL_INDEX, sequence.id, tiles)
            await insert_overview(conn, COMPUTED_INDEX, sequence.id, computed)

    async def find_images_by_sha256(self, hashes: Iterable[str]) -> dict[str, int]:
        """Stored image ids for content hashes."""
        wanted = list(dict.fromkeys(hashes))
        if not wanted:
            return {}
        rows = await self._all(
            "SELECT content_sha256, id FROM images WHERE content_sha256 = ANY(%s)", (wanted,))
        return {str(r[0]): int(r[1]) for r in rows}

    async def get_images(self, ids: Seq[int]) -> dict[int, Image]:
        """Images by id with the creator's username (read path)."""
        if len(ids) == 1:
            row = await self._one_read(
                f"SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM} WHERE i.id = %s", (ids[0],))
            return {ids[0]: _image_from_row(row)} if row else {}
        return await self._by_ids(
            f"SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM} WHERE i.id", ids, _image_from_row,
            replica=True)

    async def search_images(self, q: ImageSearch) -> Page[Image]:
        """Filtered images; see the protocol for order and limit rules (read path)."""
        if q.image_ids is not None:
            return await self._images_by_ids(q)
        where: list[str] = []
        params: list[Any] = []
        if q.bbox is not None:
            where.append(_bbox_clause("i", q.bbox, params))
        if q.s2_range is not None:
            where.append("i.s2_leaf BETWEEN %s AND %s")
            params += list(q.s2_range)
        if q.sequence_ids is not None:
            where.append("i.sequence_id = ANY(%s)")
            params.append(list(q.sequence_ids))
        if q.organization_id is not None:
            where.append("i.organization_id = %s")
            params.append(q.organization_id)
        if q.creator_username is not None:
            where.append("lower(u.username) = lower(%s)")
            params.append(q.creator_username)
        if q.start_captured_at_ms is not None:
            where.append("i.captured_at_ms >= %s")
            params.append(q.start_captured_at_ms)
        if q.end_captured_at_ms is not None:
            where.append("i.captured_at_ms < %s")
            params.append(q.end_captured_at_ms)
        if q.is_pano is not None:
            where.append("i.is_pano = %s")
            params.append(q.is_pano)
        if q.make is not None:
            where.append("lower(i.make) = lower(%s)")
            params.append(q.make)
        if q.model is not None:
            where.append("lower(i.model) = lower(%s)")
            params.append(q.model)
        if q.camera_type is not None:
            where.append("i.camera_type = %s")
            params.append(q.camera_type)
        if q.after is not None:
            where.append("(i.captured_at_ms, i.id) > (%s, %s)")
            params += list(q.after)
        sql = f"SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY i.captured_at_ms, i.id"
        if q.limit is not None:
            sql += " LIMIT %s"
            params.append(q.limit + 1)
        items = [_image_from_row(r) for r in await self._all_read(sql, params)]
        next_after = None
        if q.limit is not None and len(items) > q.limit:
            items = items[: q.limit]
            next_after = (items[-1].captured_at_ms, items[-1].id)
        return Page(items=items, next_after=next_after)

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
        """Move the images of components `old` into component `new` (one statement)."""
        labels = sorted(set(old) - {new})
        if not labels:
            return 0
        return await self._run(
            "UPDATE images SET merge_cc = %s WHERE merge_cc = ANY(%s)", (new, labels))

    async def count_images(self) -> int:
        """Number of stored images."""
        row = await self._one("SELECT COUNT(*) FROM images")
        return int(row[0]) if row else 0

    # -- map features and detections -------------------------------------------------------
    async def insert_map_features(self, features: Seq[MapFeature]) -> None:
        """Insert map features and bump their z14 tile epochs (the GiST index follows)."""
        if not features:
            return
        rows, tiles = map_feature_rows(features)
        touched = sorted(tiles)
        async with self.db.transaction() as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO map_features (id, object_value, object_type, lon, lat,"
                " aligned_direction_deg, first_seen_at_ms, last_seen_at_ms, qk)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
            await cur.executemany(SQL_BUMP_EPOCH, [("features", IMAGE_ZOOM, t) for t in touched])

    async def replace_detections(self, image_ids: Seq[int], detections: Seq[Detection]
                                 ) -> list[int]:
        """Delete the images' detections, insert the new ones; the features that lost
        evidence."""
        rows = [
            (d.id, d.image_id, d.map_feature_id, d.value,
             Jsonb([[list(p) for p in ring] for ring in d.geometry]), d.created_at_ms)
            for d in detections
        ]
        async with self.db.transaction() as conn, conn.cursor() as cur:
            await cur.execute(
                "DELETE FROM detections WHERE image_id = ANY(%s) RETURNING map_feature_id",
                (list(image_ids),))
            lost = sorted({int(fid) for (fid,) in await cur.fetchall() if fid is not None})
            if rows:
                await cur.executemany(
                    "INSERT INTO detections (id, image_id, map_feature_id, value, geometry,"
                    " created_at_ms) VALUES (%s, %s, %s, %s, %s, %s)", rows)
        return lost

    async def set_quality_scores(self, scores: Seq[tuple[int, float | None]]) -> None:
        """Set images' quality_score."""
        if not scores:
            return
        async with self.db.transaction() as conn, conn.cursor() as cur:
            await cur.executemany("UPDATE images SET quality_score = %s WHERE id = %s",
                                  [(score, image_id) for image_id, score in scores])

    async def set_computed_fields(self, fields: Seq[ComputedFields]) -> int:
        """Write the images' computed fields and rebuild the computed tile index of the
        sequences whose computed positions or angles changed, in one transaction.

        The images' sequences are locked first (FOR UPDATE, in key order), then the images
        are read: two writers of one sequence take turns, and a concurrent rebuild when a
        store opens (which locks the sequence first too) never deadlocks with this one.
        """
        wanted = list(dict.fromkeys(f.image_id for f in fields))
        if not wanted:
            return 0
        async with self.db.transaction() as conn:
            await conn.execute(
                "SELECT id FROM sequences WHERE id IN (SELECT sequence_id FROM images"
                " WHERE id = ANY(%s)) ORDER BY id FOR UPDATE", (wanted,))
            cur = await conn.execute(
                f"SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM} WHERE i.id = ANY(%s)", (wanted,))
            stored = {int(r[0]): _image_from_row(r) for r in await cur.fetchall()}
            changed, moved = computed_updates(stored, fields)
            if changed:
                async with conn.cursor() as c:
                    await c.executemany(
                        "UPDATE images SET computed_lon = %s, computed_lat = %s,"
                        " computed_altitude_m = %s, computed_compass_deg = %s,"
                        " computed_rotation = %s, atomic_scale = %s, camera_parameters = %s,"
                        " assets = %s, merge_cc = %s WHERE id = %s",
                        [(im.computed_lon, im.computed_lat, im.computed_altitude_m,
                          im.computed_compass_angle_deg,
                          list(im.computed_rotation) if im.computed_rotation else None,
                          im.atomic_scale,
                          list(im.camera_parameters) if im.camera_parameters else None,
                          im.assets, im.merge_cc, im.id)
                         for im in sorted(changed, key=lambda im: im.id)])
            await rebuild_computed(conn, moved)
        return len(changed)

    async def delete_images(self, image_ids: Seq[int]) -> DeletedImages:
        """Delete images and what hangs on them, rebuild the tile rows of the sequences that
        keep images and bump the epochs, in one transaction (`postgres.delete`: the affected
        sequences are locked first, as `set_computed_fields` does)."""
        if not image_ids:
            return DeletedImages()
        async with self.db.transaction() as conn:
            return await delete_image_rows(conn, image_ids)

    async def apply_feature_changes(self, changes: FeatureChanges) -> None:
        """Upsert/delete map features and relink detections in one transaction."""
        upserts, deletes = changes.upserts, changes.deletes
        rows, tiles = map_feature_rows(upserts)
        shift = FEATURE_TILE_SHIFT
        ids = [f.id for f in upserts] + list(deletes)
        async with self.db.transaction() as conn, conn.cursor() as cur:
            touched = set(tiles)
            if ids:
                await cur.execute("SELECT qk FROM map_features WHERE id = ANY(%s)", (ids,))
                touched.update(int(qk) >> shift for (qk,) in await cur.fetchall())
            if deletes:
                await cur.execute("UPDATE detections SET map_feature_id = NULL"
                                  " WHERE map_feature_id = ANY(%s)", (list(deletes),))
                await cur.execute("DELETE FROM map_features WHERE id = ANY(%s)",
                                  (list(deletes),))
            if rows:
                await cur.executemany(
                    "INSERT INTO map_features (id, object_value, object_type, lon, lat,"
                    " aligned_direction_deg, first_seen_at_ms, last_seen_at_ms, qk)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE"
                    " SET object_value = excluded.object_value,"
                    " object_type = excluded.object_type, lon = excluded.lon,"
                    " lat = excluded.lat, aligned_direction_deg = excluded.aligned_direction_deg,"
                    " first_seen_at_ms = excluded.first_seen_at_ms,"
                    " last_seen_at_ms = excluded.last_seen_at_ms, qk = excluded.qk", rows)
            if changes.assignments:
                await cur.executemany(
                    "UPDATE detections SET map_feature_id = %s WHERE id = %s",
                    [(fid, did) for did, fid in changes.assignments])
            if touched:
                await cur.executemany(SQL_BUMP_EPOCH, [("features", IMAGE_ZOOM, t)
                                                       for t in sorted(touched)])

    async def insert_detections(self, detections: Seq[Detection]) -> None:
        """Insert detections."""
        if not detections:
            return
        rows = [
            (d.id, d.image_id, d.map_feature_id, d.value,
             Jsonb([[list(p) for p in ring] for ring in d.geometry]), d.created_at_ms)
            for d in detections
        ]
        async with self.db.transaction() as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO detections (id, image_id, map_feature_id, value, geometry,"
                " created_at_ms) VALUES (%s, %s, %s, %s, %s, %s)", rows)

    async def get_map_features(self, ids: Seq[int]) -> dict[int, MapFeature]:
        """Map features by id (read path)."""
        return await self._by_ids(
            f"SELECT {_FEATURE_COLUMNS} FROM map_features f WHERE f.id", ids, _feature_from_row,
            replica=True)

    async def get_detections(self, ids: Seq[int]) -> dict[int, Detection]:
        """Detections by id (read path)."""
        return await self._by_ids(
            f"SELECT {DETECTION_COLUMNS} FROM detections d WHERE d.id", ids,
            _detection_from_row, replica=True)

    async def search_map_features(self, q: MapFeatureSearch) -> Page[MapFeature]:
        """Map features in a bbox, by id (read path)."""
        params: list[Any] = []
        where = [_bbox_clause("f", q.bbox, params)]
        if q.object_values:
            where.append(_values_clause("f.object_value", q.object_values, params))
        if q.object_type is not None:
            where.append("f.object_type = %s")
            params.append(q.object_type)
        for column, start, end in (
            ("f.first_seen_at_ms", q.start_first_seen_at_ms, q.end_first_seen_at_ms),
            ("f.last_seen_at_ms", q.start_last_seen_at_ms, q.end_last_seen_at_ms),
        ):
            if start is not None:
                where.append(f"{column} >= %s")
                params.append(start)
            if end is not None:
                where.append(f"{column} < %s")
                params.append(end)
        if q.after is not None:
            where.append("f.id > %s")
            params.append(q.after)
        sql = (
            f"SELECT {_FEATURE_COLUMNS} FROM map_features f WHERE " + " AND ".join(where)
            + " ORDER BY f.id LIMIT %s"
        )
        params.append(q.limit + 1)
        items = [_feature_from_row(r) for r in await self._all_read(sql, params)]
        if len(items) > q.limit:
            items = items[: q.limit]
            return Page(items=items, next_after=(items[-1].id,))
        return Page(items=items)

    async def search_detections(self, q: DetectionSearch) -> Page[Detection]:
        """Detections whose image is in a bbox, by id (read path)."""
        params: list[Any] = []
        where = [_bbox_clause("i", q.bbox, params)]
        if q.values:
            where.append(_values_clause("d.value", q.values, params))
        if q.start_captured_at_ms is not None:
            where.append("i.captured_at_ms >= %s")
            params.append(q.start_captured_at_ms)
        if q.end_captured_at_ms is not None:
            where.append("i.captured_at_ms < %s")
            params.append(q.end_captured_at_ms)
        if q.after is not None:
            where.append("d.id > %s")
            params.append(q.after)
        sql = (
            f"SELECT {DETECTION_COLUMNS} FROM images i JOIN detections d ON d.image_id = i.id"
            " WHERE " + " AND ".join(where) + " ORDER BY d.id LIMIT %s"
        )
        params.append(q.limit + 1)
        items = [_detection_from_row(r) for r in await self._all_read(sql, params)]
        if len(items) > q.limit:
            items = items[: q.limit]
            return Page(items=items, next_after=(items[-1].id,))
        return Page(items=items)

    async def detections_for_images(self, image_ids: Seq[int]) -> dict[int, list[Detection]]:
        """Detections per image, by id (read path)."""
        if not image_ids:
            return {}
        out: dict[int, list[Detection]] = {i: [] for i in image_ids}
        rows = await self._all_read(
            f"SELECT {DETECTION_COLUMNS} FROM detections d WHERE d.image_id = ANY(%s)"
            " ORDER BY d.id", (list(out),))
        for r in rows:
            out[r[1]].append(_detection_from_row(r))
        return out

    async def detections_for_features(self, feature_ids: Seq[int]) -> dict[int, list[Detection]]:
        """Detections per map feature, newest image first (read path)."""
        if not feature_ids:
            return {}
        out: dict[int, list[Detection]] = {f: [] for f in feature_ids}
        rows = await self._all_read(
            f"SELECT {DETECTION_COLUMNS} FROM detections d JOIN images i ON i.id = d.image_id"
            " WHERE d.map_feature_id = ANY(%s) ORDER BY i.captured_at_ms DESC, d.id",
            (list(out),))
        for r in rows:
            out[r[5]].append(_detection_from_row(r))
        return out

    async def image_ids_for_features(self, feature_ids: Seq[int]) -> dict[int, list[int]]:
        """Images that saw each feature, by capture time (read path)."""
        if not feature_ids:
            return {}
        out: dict[int, list[int]] = {f: [] for f in feature_ids}
        rows = await self._all_read(
            "SELECT DISTINCT d.map_feature_id, i.id, i.captured_at_ms FROM detections d"
            " JOIN images i ON i.id = d.image_id WHERE d.map_feature_id = ANY(%s)"
            " ORDER BY i.captured_at_ms, i.id", (list(out),))
        for fid, iid, _ in rows:
            out[fid].append(iid)
        return out

    # -- vector tiles ----------------------------------------------------------------------
    async def tile_epoch(self, group: str, z: int, x: int, y: int) -> int:
        """The write epoch of a tile (0 = never written). Called for every tile request."""
        row = await self._one(SQL_TILE_EPOCH, (group, z, morton(x, y)))
        return int(row[0]) if row else 0

    async def tile_content(self, z: int, x: int, y: int, layers: Seq[str], *,
                           computed: bool = False, epoch: int | None = None) -> TileContent:
        """The rows of each layer asked for: one statement per layer, sent together in one
        pipeline (one round trip), results in binary (bytea as bytes, not hex text). Both
        layers of a z14 tile of `mly1_public` are one statement, shared with the concurrent
        requests for z14 tiles (`Z14Reads`) when no replica is configured.

        Inside API requests they are read on a replica when one is usable
        (`database_replica_urls`): in one snapshot with the tile's epoch there, used only
        when the replica has reached `epoch` (the epoch the caller read on the primary and
        caches the tile under), else read again on the primary. Each statement on the
        primary reads its own snapshot; a write landing between them bumps the tile's epoch,
        so a tile drawn from both is never cached past that write.
        """
        if not self.reads.replicas and is_z14_pair(z, layers, computed=computed):
            return await self.z14_reads.read(morton(x, y))  # shared with concurrent requests
        statements = tile_statements(z, x, y, layers, computed=computed)

        async def run(conn: Conn, *, at_least: int | None = None
                      ) -> dict[str, list[tuple[Any, ...]]] | None:
            rows: dict[str, list[tuple[Any, ...]]] = {}
            if at_least is not None:
                cur = await conn.execute(
                    SQL_TILE_EPOCH, (TILE_INDEXES[computed].group, z, morton(x, y)))
                found = await cur.fetchone()
                if (int(found[0]) if found else 0) < at_least:
                    return None  # the replica has not replayed the write yet
            if len(statements) == 1:
                name, sql, params = statements[0]
                cur = await conn.execute(sql, params, binary=True)
                rows[name] = await cur.fetchall()
            else:
                async with conn.pipeline():
                    cursors = [(name, await conn.execute(sql, params, binary=True))
                               for name, sql, params in statements]
                for name, cur in cursors:
                    rows[name] = await cur.fetchall()
            return rows

        if self.reads.replicas:
            found = await self.reads.read(lambda conn: run(conn, at_least=epoch),
                                          snapshot=True)
            if found is not None:
                return tile_content_from_rows(found)
        async with self.db.connection() as conn:
            primary = await run(conn)
        assert primary is not None
        return tile_content_from_rows(primary)

    async def tile_map_features(
        self, object_type: str, z: int, x: int, y: int
    ) -> TileFeatureColumns:
        """Map features of one type inside a tile (z14 `point` / `traffic_sign` layers)."""
        low, high = tile_range(z, x, y)
        rows = await self._all(
            "SELECT id, lon, lat, object_value, first_seen_at_ms, last_seen_at_ms"
            " FROM map_features WHERE object_type = %s AND qk BETWEEN %s AND %s"
            " ORDER BY qk, id", (object_type, low, high))
        return TileFeatureColumns(*zip(*rows, strict=True)) if rows else TileFeatureColumns()
