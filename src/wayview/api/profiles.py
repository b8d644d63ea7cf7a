"""wayview.api.profiles: placeholder (issue #18); filled in by the commit that builds it."""

from __future__ import annotations

from wayview.api.routing import Route

ROUTES: list[Route] = []
