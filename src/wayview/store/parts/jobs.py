"""wayview.store.parts.jobs: the durable job queue part of the Store protocol."""

from __future__ import annotations

from typing import Protocol

from wayview.model.entities import Job


class JobsStore(Protocol):
    """A durable job queue: jobs survive restarts; each job is taken by exactly one worker.

    The pipeline issue fills in claiming, completion, retry with backoff and parking; the
    contract below is what producers (upload, import) rely on.
    """

    async def enqueue_job(
        self, kind: str, payload: dict[str, object], *, dedupe_key: str | None = None,
        delay_s: float = 0.0,
    ) -> Job:
        """Queue a job. With `dedupe_key`, a job with the same key that is not yet done is
        returned instead of a new one (idempotent producers). Called by upload and import."""
