"""bench/bypass_app.py: the wayview app with authentication and rate limiting bypassed.

Only for `bench/graph.py --auth-overhead`, which serves the same store with this factory and
with the real app side by side to measure what auth + limits cost per request. Every request is
treated as the same read-only client; nothing is counted. Never deploy this.
"""

from __future__ import annotations

from typing import Any

from wayview.api.app import app_from_env
from wayview.model.entities import Principal

_PRINCIPAL = Principal(app_id=1, scopes=frozenset({"read"}))


class _OpenDoor:
    async def authenticate(self, token_text: str | None) -> Principal:
        return _PRINCIPAL


async def _no_budget(*args: Any) -> None:
    return None


def app_factory() -> Any:
    """Granian factory: the real app with `authenticate` and `_spend` replaced."""
    app = app_from_env()
    app.auth = _OpenDoor()
    app._spend = _no_budget
    return app
