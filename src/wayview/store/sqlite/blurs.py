"""wayview.store.sqlite.blurs: the SQLite implementation of BlursStore.

Every write runs in the store's single writer (`Database.write`), so raising a revision and
moving a media version forward are each one atomic step, also across processes sharing the
file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from wayview.model.blurs import (
    AutoRegion,
    BlurEdits,
    BlurShape,
    automatic_from_text,
    automatic_to_text,
    shapes_from_text,
    shapes_to_text,
)
from wayview.store.sqlite.connection import Database

_COLUMNS = "image_id, revision, automatic, added, removed, updated_at_ms, updated_by, error"
#: Longest error text kept per image.
_MAX_ERROR_CHARS = 2000


def _edits_from_row(r: tuple[Any, ...]) -> BlurEdits:
    return BlurEdits(image_id=r[0], revision=r[1], automatic=automatic_from_text(r[2]),
                     added=shapes_from_text(r[3]), removed=tuple(json.loads(r[4])),
                     updated_at_ms=r[5], updated_by=r[6], error=r[7])


def _select(conn: sqlite3.Connection, image_id: int) -> BlurEdits | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM image_blurs WHERE image_id = ?",
                       (image_id,)).fetchone()
    return _edits_from_row(row) if row else None


def _image_exists(conn: sqlite3.Connection, image_id: int) -> bool:
    return conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is not None


class BlursMixin:
    """BlursStore on SQLite; `self.db` is the store's Database."""

    db: Database

    async def get_blur_edits(self, image_id: int) -> BlurEdits | None:
        """An image's blur edits."""
        return await self.db.read(lambda c: _select(c, image_id))

    async def record_automatic_blurs(self, image_id: int, regions: Sequence[AutoRegion]
                                     ) -> BlurEdits | None:
        """Record the blurrer's regions once."""
        text = automatic_to_text(list(regions))

        def run(conn: sqlite3.Connection) -> BlurEdits | None:
            if not _image_exists(conn, image_id):
                return None
            conn.execute(
                "INSERT INTO image_blurs (image_id, automatic) VALUES (?, ?)"
                " ON CONFLICT (image_id) DO UPDATE SET automatic = excluded.automatic"
                " WHERE image_blurs.automatic IS NULL", (image_id, text))
            return _select(conn, image_id)

        return await self.db.write(run)

    async def save_blur_edits(self, image_id: int, added: Sequence[BlurShape],
                              removed: Sequence[str], *, user_id: int | None
                              ) -> BlurEdits | None:
        """Replace the edits and raise the revision."""
        added_text = shapes_to_text(list(added))
        removed_text = json.dumps(list(removed))
        now = int(time.time() * 1000)

        def run(conn: sqlite3.Connection) -> BlurEdits | None:
            row = conn.execute("SELECT media_version FROM images WHERE id = ?",
                               (image_id,)).fetchone()
            if row is None:
                return None
            conn.execute(
                "INSERT INTO image_blurs (image_id, revision, added, removed, updated_at_ms,"
                " updated_by) VALUES (?, ? + 1, ?, ?, ?, ?)"
                " ON CONFLICT (image_id) DO UPDATE SET"
                " revision = MAX(image_blurs.revision, ?) + 1, added = excluded.added,"
                " removed = excluded.removed, updated_at_ms = excluded.updated_at_ms,"
                " updated_by = excluded.updated_by, error = NULL",
                (image_id, row[0], added_text, removed_text, now, user_id, row[0]))
            return _select(conn, image_id)

        return await self.db.write(run)

    async def switch_media_version(self, image_id: int, version: int) -> bool:
        """Move the media version forward."""

        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "UPDATE images SET media_version = ? WHERE id = ? AND media_version < ?",
                (version, image_id, version)).rowcount == 1

        return await self.db.write(run)

    async def set_blur_error(self, image_id: int, revision: int, error: str | None) -> None:
        """Record a rendering failure of the current revision."""
        text = error[:_MAX_ERROR_CHARS] if error is not None else None

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE image_blurs SET error = ? WHERE image_id = ? AND revision = ?",
                         (text, image_id, revision))

        await self.db.write(run)
