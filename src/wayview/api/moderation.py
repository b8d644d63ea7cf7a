"""wayview.api.moderation: HTTP handlers (issue #17)."""

from __future__ import annotations

from wayview.api.routing import Route

#: This module's routes, placed by app.py before the generic `/{id}` routes.
ROUTES: list[Route] = []
