"""wayview.store.parts.exports: users' data exports, background jobs producing a zip
(Store protocol part, issue #17)."""

from __future__ import annotations

from typing import Protocol


class ExportsStore(Protocol):
    """Persistence for users' data exports (background jobs producing a zip)."""
