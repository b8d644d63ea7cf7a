"""wayview.api.organizations: organizations and their members over HTTP (issue #17).

    POST   /organizations                       create one (you become its admin)
    GET    /me/organizations                    yours, invitations included
    GET    /{organization_id}/members           members and invitations (members only)
    POST   /{organization_id}/members           invite `username` as `role`, or change a role
    POST   /{organization_id}/join              accept an invitation
    DELETE /{organization_id}/members/{user_id} remove, withdraw, decline or leave

Writes need a user token with the `write` scope; the rules are `wayview.auth.governance`'s.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from wayview.api.accounts import read_params
from wayview.api.graph import acting_user
from wayview.api.responses import json_response
from wayview.api.routing import Route
from wayview.auth import governance
from wayview.errors import MissingParameter, NodeNotFound
from wayview.model.entities import Membership, Organization

if TYPE_CHECKING:
    from wayview.api.app import Context


def organization_json(org: Organization) -> dict[str, object]:
    """An organization as the Graph API shows one."""
    return {"id": str(org.id), "slug": org.slug, "name": org.name,
            "description": org.description}


def membership_json(m: Membership, org: Organization | None = None) -> dict[str, object]:
    """A membership: organization, user, role, status, who invited, since when."""
    out: dict[str, object] = {
        "organization": organization_json(org) if org else {"id": str(m.organization_id)},
        "user": {"id": str(m.user_id), "username": m.username},
        "role": m.role, "status": m.status, "since": m.created_at_ms,
    }
    if m.invited_by is not None:
        out["invited_by"] = str(m.invited_by)
    return out


def _org_id(match: re.Match[str]) -> int:
    raw = match["id"]
    if len(raw) > 16:
        raise NodeNotFound(raw)
    return int(raw)


async def create(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /organizations: `slug` (required), `name`, `description`."""
    params = await read_params(request)
    if not params.get("slug"):
        raise MissingParameter("slug")
    org = await governance.create_organization(
        ctx.store, acting_user(ctx), params["slug"], name=params.get("name", ""),
        description=params.get("description", ""))
    return json_response(organization_json(org))


async def mine(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /me/organizations."""
    memberships = await ctx.store.memberships_of(acting_user(ctx))
    orgs = await ctx.store.get_organizations([m.organization_id for m in memberships])
    return json_response({"data": [membership_json(m, orgs.get(m.organization_id))
                                   for m in memberships]})


async def members(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /{organization_id}/members."""
    org_id = _org_id(match)
    found = await governance.members(ctx.store, acting_user(ctx), org_id)
    return json_response({"data": [membership_json(m) for m in found]})


async def invite(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /{organization_id}/members: `username`, `role` (member or admin)."""
    params = await read_params(request)
    if not params.get("username"):
        raise MissingParameter("username")
    saved = await governance.invite(ctx.store, acting_user(ctx), _org_id(match),
                                    params["username"], params.get("role", "member"))
    return json_response(membership_json(saved))


async def join(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /{organization_id}/join: accept an invitation."""
    saved = await governance.accept(ctx.store, acting_user(ctx), _org_id(match))
    return json_response(membership_json(saved))


async def remove(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """DELETE /{organization_id}/members/{user_id}."""
    user = match["user"]
    if len(user) > 16:
        raise NodeNotFound(user, "delete")
    await governance.remove_member(ctx.store, acting_user(ctx), _org_id(match), int(user))
    return json_response({"success": True})


_r = re.compile
_GET = frozenset({"GET", "HEAD"})
_POST = frozenset({"POST"})

#: This module's routes, placed by app.py before the generic `/{id}` routes.
ROUTES: list[Route] = [
    Route(_r(r"/organizations"), _POST, create, scope="write"),
    Route(_r(r"/me/organizations"), _GET, mine),
    Route(_r(r"/(?P<id>[0-9]+)/members"), _POST, invite, scope="write"),
    Route(_r(r"/(?P<id>[0-9]+)/members"), _GET, members),
    Route(_r(r"/(?P<id>[0-9]+)/join"), _POST, join, scope="write"),
    Route(_r(r"/(?P<id>[0-9]+)/members/(?P<user>[0-9]+)"), frozenset({"DELETE"}), remove,
          scope="write"),
]
