"""wayview.store.parts.jobs: the jobs part of the Store protocol."""

from __future__ import annotations

from typing import Protocol


class JobsStore(Protocol):
    """Persistence for jobs. Every backend implements it; methods return model objects."""
