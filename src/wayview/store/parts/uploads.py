"""wayview.store.parts.uploads: upload sessions and finished uploads (Store protocol part).

Only metadata lives in the store: the uploaded bytes are staged files the upload service
writes (see wayview.ingest.upload_sessions).
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Protocol

from wayview.model.entities import UploadFinish, UploadSession


class UploadsStore(Protocol):
    """Persistence for uploads. Every backend implements it; methods return model objects."""

    async def get_upload_session(self, user_id: int, session_key: str) -> UploadSession | None:
        """A user's session by key. Called by the upload POST."""

    async def save_upload_session(
        self, user_id: int, session_key: str, *, handle: str, size: int, expires_at_ms: int
    ) -> UploadSession:
        """Record the bytes held by a session after a POST: create the row with `handle` if
        absent (a stored handle is kept), else update size and expiry. Returns the row."""

    async def upload_sessions_by_handle(
        self, user_id: int, handles: Seq[str]
    ) -> dict[str, UploadSession]:
        """The sessions of `user_id` among `handles` (other users' handles are absent).
        Called by finish_upload and the ingest job."""

    async def user_upload_bytes(self, user_id: int) -> int:
        """The bytes held by a user's upload sessions (the sum of their sizes; sessions stay
        until they expire, finished or not). Called by the upload POST (user quota)."""

    async def extend_upload_sessions(self, session_ids: Seq[int], expires_at_ms: int) -> None:
        """Keep sessions at least until `expires_at_ms` (they are about to be processed)."""

    async def finish_upload_session(
        self, session: UploadSession, *, file_type: str, organization_id: int | None
    ) -> UploadFinish:
        """The finish of a session: created on the first call with a fresh graph-style
        cluster id from the shared id space (kind `upload_cluster`), returned as stored
        afterwards (idempotent per handle). Finishes recorded by earlier versions keep their
        small counter ids, which go on working."""

    async def set_upload_finish_job(self, cluster_id: int, job_id: int) -> None:
        """Remember the ingest job queued for a finish."""

    async def get_upload_finish(self, cluster_id: int) -> UploadFinish | None:
        """A finish by cluster id. Called by the ingest job."""

    async def set_upload_result(self, cluster_id: int, result: dict[str, object]) -> None:
        """Store the ingest job's outcome (JSON-serialisable) for the operator."""

    async def expired_upload_sessions(self, now_ms: int, limit: int) -> list[UploadSession]:
        """Sessions whose expiry has passed, oldest first, at most `limit`."""

    async def delete_upload_session(self, session_id: int, *, expired_before_ms: int) -> bool:
        """Delete a session (and its finish) if it is still expired at `expired_before_ms`;
        False when it was refreshed meanwhile or is already gone."""
