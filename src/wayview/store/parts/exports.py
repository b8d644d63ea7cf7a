"""wayview.store.parts.exports: users' data exports, background jobs producing a zip
(Store protocol part, issue #17).

An export row goes `queued` → `running` → `done` → `expired`, or ends `failed`. The `export`
job (`wayview.pipeline.export`) moves it along; only the row's owner ever sees it.
"""

from __future__ import annotations

from typing import Protocol

from wayview.model.entities import Export


class ExportsStore(Protocol):
    """Persistence for users' data exports (background jobs producing a zip)."""

    async def create_export(self, user_id: int, *, max_active: int) -> Export | None:
        """Queue a new export of a user's data: None (nothing written) when `max_active` of
        their exports are already queued or running. Checked and inserted atomically, so two
        requests at once cannot both pass the limit. Called by POST /me/exports,
        POST /account/export and `wayview export`."""

    async def get_export(self, export_id: int) -> Export | None:
        """One export by id (whoever owns it: the caller checks). Called by
        GET /me/exports/{id} and the export job."""

    async def list_exports(self, user_id: int, *, limit: int = 20) -> list[Export]:
        """A user's exports, newest first. Called by GET /me/exports and /account/export."""

    async def start_export(self, export_id: int, total: int) -> bool:
        """A queued or running export is (again) running from the start: progress 0 of
        `total`, no error. False when it is in any other state (done, failed, expired): the
        job then has nothing to do. Called at the start of every attempt of the job."""

    async def set_export_progress(self, export_id: int, progress: int, total: int) -> None:
        """Record how far a running export is (ignored in any other state)."""

    async def finish_export(self, export_id: int, *, blob_key: str, size_bytes: int,
                            expires_at_ms: int) -> bool:
        """A running export is done: its zip is stored under `blob_key` until
        `expires_at_ms`; progress is set to its total. False when it was not running."""

    async def fail_export(self, export_id: int, error: str) -> bool:
        """A queued or running export failed for good, with a reason for its owner (never a
        secret or a traceback). False when it was in another state."""

    async def exports_to_expire(self, now_ms: int, *, limit: int = 100) -> list[Export]:
        """Done exports whose time is up (`expires_at_ms <= now_ms`), oldest first: their
        blobs are to be deleted. Called by the `export_expire` job and listings."""

    async def expire_export(self, export_id: int) -> bool:
        """A done export is expired (its blob deleted by the caller first); False when it was
        not done."""
