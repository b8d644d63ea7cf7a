"""wayview.pipeline.jobs: job handlers by kind, and what a handler gets to work with.

Producers enqueue with `store.enqueue_job(kind, payload)`; a worker (threads inside `serve`, or
`wayview worker` processes) claims jobs and runs the handler registered for their kind. A
handler must be idempotent: a crashed attempt is retried.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wayview.blobs.base import BlobStore
from wayview.model.entities import Job
from wayview.settings import Settings
from wayview.store.base import Store


@dataclass(slots=True)
class JobContext:
    """Services a job handler uses."""

    settings: Settings
    store: Store
    blobs: BlobStore
    job: Job


JobHandler = Callable[[JobContext, dict[str, object]], Awaitable[None]]
_HANDLERS: dict[str, JobHandler] = {}


def job_handler(kind: str) -> Callable[[JobHandler], JobHandler]:
    """Register the handler of one job kind (module import time)."""

    def register(fn: JobHandler) -> JobHandler:
        if kind in _HANDLERS and _HANDLERS[kind] is not fn:
            raise ValueError(f"two handlers for job kind {kind!r}")
        _HANDLERS[kind] = fn
        return fn

    return register


def handler_for(kind: str) -> JobHandler | None:
    """The registered handler of a kind, or None."""
    return _HANDLERS.get(kind)


#: Modules that register job handlers when imported.
_HANDLER_MODULES = ("wayview.ingest.upload_job", "wayview.pipeline.sfm_job",
                    "wayview.pipeline.delete", "wayview.pipeline.edits",
                    "wayview.pipeline.export", "wayview.pipeline.reblur")


def load_handlers() -> None:
    """Import every module that registers handlers (a runner calls this before claiming)."""
    import importlib

    for name in _HANDLER_MODULES:
        importlib.import_module(name)
