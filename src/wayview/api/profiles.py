"""wayview.api.profiles: the public profile pages of contributors and organizations (issue #18
item 6), at Mapillary's own addresses:

    /app/user/{username}        a contributor's images, sequences, distance, capture span
    /app/org/{id or slug}       the same for an organization, with its contributors

No sign-in: they show what the Graph API shows anyone (usernames; an organization's id, slug,
name and description) and figures of public images only (hidden images count nowhere). The
figures are rendered on the server; the map (the owner's coverage from `mly1_public`, filtered
on the tiles' `creator_id` / `organization_id`) is the `profile` bundle's, with the embed
token like /app. An unknown (or closed) account or organization answers a 404 page.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from wayview.api import web
from wayview.api.routing import Route
from wayview.api.web import _config, _message, _page_headers, _templates, map_page_csp
from wayview.auth.embed import EmbedDisabled, embed_token
from wayview.ids import parse_id
from wayview.model.profiles import Coverage

if TYPE_CHECKING:
    from wayview.api.app import Context

#: Sequences listed on a profile, newest first.
LATEST_SEQUENCES = 20
#: Sequence starts the map draws below the zoom where tile lines carry their owner.
MAP_STARTS = 1000
#: Contributors listed on an organization's page.
CONTRIBUTORS = 20
_FRAME_ANCESTORS = "'self'"


def user_path(username: str) -> str:
    """The profile address of a username (every character but unreserved ones escaped).

    >>> user_path("a b/c")
    '/app/user/a%20b%2Fc'
    """
    return "/app/user/" + quote(username, safe="")


def _day(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def distance_text(length_m: float) -> str:
    """A distance for people: metres below 1 km, else kilometres with one decimal.

    >>> distance_text(812.4), distance_text(12_345.0), distance_text(0.0)
    ('812 m', '12.3 km', '0 m')
    """
    return f"{length_m:,.0f} m" if length_m < 1000 else f"{length_m / 1000:,.1f} km"


async def _render(ctx: Context, *, kind: str, owner_id: int, title: str,
                  coverage: Coverage, explore: str, **values: Any) -> Response:
    """The profile page; without a built front-end or embed token, the figures alone."""
    assets = web._assets(web.STATIC_ROOT)
    config: dict[str, Any] | None = None
    if assets is not None:
        try:
            token = await embed_token(ctx.store, ctx.authenticator, ctx.server_secret)
        except EmbedDisabled:
            assets = None
        else:
            config = _config(ctx, token, assets, None, profile={
                "kind": kind, "id": str(owner_id),
                "bbox": list(coverage.bbox) if coverage.bbox else None,
                "starts": [list(p) for p in coverage.starts]})
    body = _templates.get_template("profiles/profile.html").render(
        kind=kind, title=title, coverage=coverage, assets=assets, config=config,
        explore=explore, day=_day, distance=distance_text, user_path=user_path, **values)
    return HTMLResponse(body, headers=_page_headers(
        _FRAME_ANCESTORS, map_page_csp(ctx, _FRAME_ANCESTORS, allow_eval=False)))


async def user_profile(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /app/user/{username}: a contributor's public profile."""
    user = await ctx.store.get_user_by_username(match["username"])
    if user is None:
        return _message(404, "User not found",
                        "There is no contributor of that name here.", _FRAME_ANCESTORS)
    coverage = await ctx.store.coverage_of(creator_id=user.id, latest=LATEST_SEQUENCES,
                                           starts=MAP_STARTS)
    return await _render(ctx, kind="user", owner_id=user.id, title=user.username,
                         coverage=coverage, explore="/app?creator=" + quote(user.username,
                                                                            safe=""),
                         user=user)


async def organization_profile(ctx: Context, request: Request,
                               match: re.Match[str]) -> Response:
    """GET /app/org/{id or slug}: an organization's public profile."""
    key = match["key"]
    org_id = parse_id(key)
    org = (await ctx.store.get_organizations([org_id])).get(org_id) if org_id else None
    if org is None:
        found = await ctx.store.get_organization_by_slug(key)
        org = (await ctx.store.get_organizations([found])).get(found) if found else None
    if org is None:
        return _message(404, "Organization not found",
                        "There is no organization with that id or name here.",
                        _FRAME_ANCESTORS)
    coverage = await ctx.store.coverage_of(organization_id=org.id, latest=LATEST_SEQUENCES,
                                           starts=MAP_STARTS)
    contributors = await ctx.store.organization_contributors(org.id, limit=CONTRIBUTORS)
    return await _render(ctx, kind="organization", owner_id=org.id,
                         title=org.name or org.slug, coverage=coverage,
                         explore=f"/app?organization={org.id}", organization=org,
                         contributors=contributors)


_GET = frozenset({"GET", "HEAD"})
ROUTES: list[Route] = [
    Route(re.compile(r"/app/user/(?P<username>[^/]{1,100})"), _GET, user_profile, auth=False,
          budget=None),
    Route(re.compile(r"/app/org/(?P<key>[^/]{1,100})"), _GET, organization_profile,
          auth=False, budget=None),
]
