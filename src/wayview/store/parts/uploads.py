"""wayview.store.parts.uploads: the uploads part of the Store protocol."""

from __future__ import annotations

from typing import Protocol


class UploadsStore(Protocol):
    """Persistence for uploads. Every backend implements it; methods return model objects."""
