"""wayview.store.parts.edits: corrections of images, splitting and merging sequences
(Store protocol part, issue #17)."""

from __future__ import annotations

from typing import Protocol


class EditsStore(Protocol):
    """Persistence for corrections of images, splitting and merging sequences."""
