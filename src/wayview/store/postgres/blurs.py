"""wayview.store.postgres.blurs: the PostgreSQL implementation of BlursStore.

`save_blur_edits` locks the image's row (`SELECT … FOR UPDATE`) in its transaction, so two
edits at once are serialised and get two revisions; `switch_media_version` is one
conditional UPDATE.
"""

from __future__ import annotations

import json
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
from wayview.store.postgres.connection import Queries

_COLUMNS = "image_id, revision, automatic, added, removed, updated_at_ms, updated_by, error"
#: Longest error text kept per image.
_MAX_ERROR_CHARS = 2000


def _edits_from_row(r: tuple[Any, ...]) -> BlurEdits:
    return BlurEdits(image_id=r[0], revision=r[1], automatic=automatic_from_text(r[2]),
                     added=shapes_from_text(r[3]), removed=tuple(json.loads(r[4])),
                     updated_at_ms=r[5], updated_by=r[6], error=r[7])


class BlursMixin(Queries):
    """BlursStore on PostgreSQL; `self.db` is the store's Database."""

    async def get_blur_edits(self, image_id: int) -> BlurEdits | None:
        """An image's blur edits."""
        row = await self._one(f"SELECT {_COLUMNS} FROM image_blurs WHERE image_id = %s",
                              (image_id,))
        return _edits_from_row(row) if row else None

    async def record_automatic_blurs(self, image_id: int, regions: Sequence[AutoRegion]
                                     ) -> BlurEdits | None:
        """Record the blurrer's regions once."""
        text = automatic_to_text(list(regions))
        async with self.db.transaction() as conn:
            cur = await conn.execute("SELECT 1 FROM images WHERE id = %s FOR SHARE",
                                     (image_id,))
            if await cur.fetchone() is None:
                return None
            await conn.execute(
                "INSERT INTO image_blurs (image_id, automatic) VALUES (%s, %s)"
                " ON CONFLICT (image_id) DO UPDATE SET automatic = excluded.automatic"
                " WHERE image_blurs.automatic IS NULL", (image_id, text))
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM image_blurs WHERE image_id = %s", (image_id,))
            row = await cur.fetchone()
            return _edits_from_row(row) if row else None

    async def save_blur_edits(self, image_id: int, added: Sequence[BlurShape],
                              removed: Sequence[str], *, user_id: int | None
                              ) -> BlurEdits | None:
        """Replace the edits and raise the revision."""
        added_text = shapes_to_text(list(added))
        removed_text = json.dumps(list(removed))
        now = int(time.time() * 1000)
        async with self.db.transaction() as conn:
            cur = await conn.execute("SELECT media_version FROM images WHERE id = %s FOR UPDATE",
                                     (image_id,))
            row = await cur.fetchone()
            if row is None:
                return None
            cur = await conn.execute(
                "INSERT INTO image_blurs (image_id, revision, added, removed, updated_at_ms,"
                " updated_by) VALUES (%s, %s + 1, %s, %s, %s, %s)"
                " ON CONFLICT (image_id) DO UPDATE SET"
                " revision = GREATEST(image_blurs.revision, %s) + 1, added = excluded.added,"
                " removed = excluded.removed, updated_at_ms = excluded.updated_at_ms,"
                " updated_by = excluded.updated_by, error = NULL"
                f" RETURNING {_COLUMNS}",
                (image_id, row[0], added_text, removed_text, now, user_id, row[0]))
            saved = await cur.fetchone()
            return _edits_from_row(saved) if saved else None

    async def switch_media_version(self, image_id: int, version: int) -> bool:
        """Move the media version forward."""
        return await self._run(
            "UPDATE images SET media_version = %s WHERE id = %s AND media_version < %s",
            (version, image_id, version)) == 1

    async def set_blur_error(self, image_id: int, revision: int, error: str | None) -> None:
        """Record a rendering failure of the current revision."""
        text = error[:_MAX_ERROR_CHARS] if error is not None else None
        await self._run(
            "UPDATE image_blurs SET error = %s WHERE image_id = %s AND revision = %s",
            (text, image_id, revision))
