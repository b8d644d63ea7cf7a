"""wayview.api.moderation: reports, the moderation queue and the audit log over HTTP
(issue #17).

    POST /{image_id}/reports        report an image: `reason`, `comment` (any signed-in user)
    GET  /reports                   the queue: `status` (open, resolved, all), `before`
    POST /reports/{report_id}       resolve: `action` dismiss | hide | delete, `note`
    POST /{image_id}/hide           hide an image (`reason`); POST /{image_id}/unhide shows it
    GET  /hidden_images             the hidden images a moderator may show again
    GET  /audit_log                 who did what: `actor`, `target_kind` + `target_id`,
                                    `before`, `limit`

Moderators are instance admins and moderators (every report) and organization admins (the
reports of their organization's images). The audit log shows instance admins and moderators
everything, organization admins their organizations' entries, and everyone else their own
actions.
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
from wayview.errors import InvalidParameter, MissingParameter, NodeNotFound
from wayview.model.entities import AuditEntry, Report

if TYPE_CHECKING:
    from wayview.api.app import Context

MAX_LIMIT = 500


def report_json(r: Report) -> dict[str, object]:
    """A report as the API shows it."""
    out: dict[str, object] = {
        "id": str(r.id), "image_id": str(r.image_id), "reason": r.reason,
        "comment": r.comment, "status": r.status, "created_at": r.created_at_ms,
        "reporter_id": str(r.reporter_id),
    }
    if r.owner_id is not None:
        out["owner_id"] = str(r.owner_id)
    if r.organization_id is not None:
        out["organization_id"] = str(r.organization_id)
    if r.status != "open":
        out.update(resolution=r.resolution, resolved_at=r.resolved_at_ms,
                   resolver_id=str(r.resolver_id) if r.resolver_id is not None else None)
    return out


def audit_json(e: AuditEntry) -> dict[str, object]:
    """An audit entry as the API shows it."""
    return {
        "id": str(e.id), "at": e.at_ms, "action": e.action,
        "actor": ({"id": str(e.actor_id), "username": e.actor_username}
                  if e.actor_id is not None else {"operator": True}),
        "target": {"kind": e.target_kind, "id": e.target_id},
        "organization_id": str(e.organization_id) if e.organization_id is not None else None,
        "details": e.details,
    }


def _int(params: dict[str, str], name: str, default: int | None = None,
         maximum: int = 2**62) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 18 or int(raw) > maximum:
        raise InvalidParameter(name, f"a whole number up to {maximum}")
    return int(raw)


async def report(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /{image_id}/reports."""
    params = await read_params(request)
    if not params.get("reason"):
        raise MissingParameter("reason")
    image_id = match["id"]
    if len(image_id) > 16:
        raise NodeNotFound(image_id)
    saved = await governance.report_image(ctx.store, acting_user(ctx), int(image_id),
                                          params["reason"], params.get("comment", ""))
    return json_response({"id": str(saved.id), "status": saved.status})


async def reports(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /reports."""
    params = dict(request.query_params)
    status = params.get("status", "open")
    if status not in ("open", "resolved", "all"):
        raise InvalidParameter("status", "open, resolved or all")
    found = await governance.queue(
        ctx.store, acting_user(ctx), status=None if status == "all" else status,
        before_id=_int(params, "before"), limit=_int(params, "limit", 100, MAX_LIMIT) or 100)
    return json_response({"data": [report_json(r) for r in found]})


async def resolve(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /reports/{report_id}: `action` dismiss | delete."""
    params = await read_params(request)
    if not params.get("action"):
        raise MissingParameter("action")
    report_id = match["report"]
    if len(report_id) > 16:
        raise NodeNotFound(report_id)
    resolved = await governance.resolve(ctx.store, acting_user(ctx), int(report_id),
                                        params["action"], params.get("note", ""))
    return json_response({"success": True, "resolved": [report_json(r) for r in resolved]})


async def audit_log(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /audit_log."""
    actor = acting_user(ctx)
    params = dict(request.query_params)
    kind, target = params.get("target_kind"), params.get("target_id")
    if (kind is None) != (target is None):
        raise MissingParameter("target_kind" if kind is None else "target_id")
    wanted_actor, orgs = await governance.audit_scope(ctx.store, actor, _int(params, "actor"))
    entries = await ctx.store.audit_entries(
        actor_id=wanted_actor, target=(kind, target) if kind and target else None,
        organization_ids=orgs, before_id=_int(params, "before"),
        limit=_int(params, "limit", 100, MAX_LIMIT) or 100)
    return json_response({"data": [audit_json(e) for e in entries]})


async def hide(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /{image_id}/hide and POST /{image_id}/unhide (moderators)."""
    image_id = match["id"]
    action = match["action"]
    if len(image_id) > 16:
        raise NodeNotFound(image_id, "post")
    if action == "hide":
        params = await read_params(request)
        changed = await governance.hide_image(ctx.store, acting_user(ctx), int(image_id),
                                              params.get("reason", ""))
    else:
        changed = await governance.unhide_image(ctx.store, acting_user(ctx), int(image_id))
    return json_response({"success": True, "changed": changed})


async def hidden_images(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /hidden_images."""
    params = dict(request.query_params)
    found = await governance.hidden_queue(ctx.store, acting_user(ctx),
                                          _int(params, "limit", 100, MAX_LIMIT) or 100)
    return json_response({"data": [
        {"image_id": str(h.image_id), "hidden_at": h.hidden_at_ms, "reason": h.reason,
         "hidden_by": str(h.hidden_by) if h.hidden_by is not None else None,
         "owner_id": str(h.owner_id) if h.owner_id is not None else None,
         "organization_id": (str(h.organization_id) if h.organization_id is not None
                             else None)} for h in found]})


_r = re.compile
_GET = frozenset({"GET", "HEAD"})
_POST = frozenset({"POST"})

#: This module's routes, placed by app.py before the generic `/{id}` routes.
ROUTES: list[Route] = [
    Route(_r(r"/(?P<id>[0-9]+)/reports"), _POST, report, scope="write"),
    Route(_r(r"/reports"), _GET, reports),
    Route(_r(r"/reports/(?P<report>[0-9]+)"), _POST, resolve, scope="write"),
    Route(_r(r"/audit_log"), _GET, audit_log),
    Route(_r(r"/(?P<id>[0-9]+)/(?P<action>hide|unhide)"), _POST, hide, scope="write"),
    Route(_r(r"/hidden_images"), _GET, hidden_images),
]
