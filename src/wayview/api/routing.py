"""wayview.api.routing: the route table's row type, shared by app.py and the modules that
contribute routes (each exposes `ROUTES`)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from wayview.api.app import Context

Handler = Callable[["Context", Request, "re.Match[str]"], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    """One route: a full-path regex, the methods it serves, whether it needs a token and which
    scope that token must carry (E6 without it)."""

    pattern: re.Pattern[str]
    methods: frozenset[str]
    handler: Handler
    auth: bool = True
    scope: str = "read"
    #: The request budget the call counts against (spec §9): "graph", "search", "tiles",
    #: "upload" or None (not counted).
    budget: str | None = "graph"
    #: Renders this route's errors (auth included) instead of the Graph envelope: the upload
    #: service's own envelope (spec §8.6).
    on_error: Callable[[Exception], Response] | None = None
