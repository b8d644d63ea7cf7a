"""wayview.auth.governance: deleting on behalf of owners and admins, organizations and their
members, instance roles, and reports with their moderation (issue #17).

The API, the web pages and the CLI all come here, so one set of rules (`wayview.auth.
permissions`) decides and every action lands in the audit log the same way. `actor_id` None
is an operator at the command line, who acts as an instance admin.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from wayview.auth.audit import audit
from wayview.auth.permissions import (
    instance_role,
    may_manage_images,
    may_manage_organization,
    may_moderate,
)
from wayview.errors import Conflict, InvalidParameter, NodeNotFound, PermissionDenied
from wayview.model.entities import (
    INSTANCE_ROLES,
    ORGANIZATION_ROLES,
    REPORT_REASONS,
    HiddenImage,
    Image,
    Membership,
    Organization,
    Report,
)
from wayview.pipeline.delete import DeletionReport, images_of, request_deletion
from wayview.store.base import Store

#: Organization slugs: lower-case letters, digits and dashes, 2-64 characters.
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])")
#: Longest report comment kept.
MAX_COMMENT = 2000
#: Images whose reports one statement resolves (well below SQLite's host-parameter limit).
_REPORT_BATCH = 500
#: Resolutions of a report a moderator picks.
RESOLUTIONS = ("dismiss", "hide", "delete")


# -- deletion ---------------------------------------------------------------------------------
async def _images(store: Store, ids: Sequence[int]) -> list[Image]:
    found = await store.get_images(list(ids))
    return [found[i] for i in ids if i in found]


async def delete_image(store: Store, actor_id: int | None, image_id: int) -> DeletionReport:
    """Delete one image the actor may manage; E7 (as if it did not exist) otherwise."""
    images = await _images(store, [image_id])
    if not images or (actor_id is not None
                      and not await may_manage_images(store, actor_id, images)):
        raise NodeNotFound(str(image_id), "delete")
    report = await request_deletion(store, [image_id])
    await _after_deletion(store, actor_id, images, "image.delete", "image", image_id)
    return report


async def delete_sequence(store: Store, actor_id: int | None,
                          sequence_id: str) -> DeletionReport:
    """Delete every image of a sequence the actor may manage (all or nothing)."""
    images = await _images(store, await images_of(store, sequence_ids=[sequence_id]))
    if not images or (actor_id is not None
                      and not await may_manage_images(store, actor_id, images)):
        raise NodeNotFound(sequence_id, "delete")
    report = await request_deletion(store, [im.id for im in images])
    await _after_deletion(store, actor_id, images, "sequence.delete", "sequence", sequence_id)
    return report


async def delete_user_images(store: Store, actor_id: int | None,
                             user_id: int) -> DeletionReport:
    """Delete every image a user uploaded: the user themself or an instance admin."""
    user = (await store.get_users([user_id])).get(user_id)
    if user is None:
        raise NodeNotFound(str(user_id), "delete")
    if actor_id is not None and actor_id != user_id and (
            await instance_role(store, actor_id) != "admin"):
        raise NodeNotFound(str(user_id), "delete")
    images = await _images(store, await images_of(store, username=user.username))
    report = await request_deletion(store, [im.id for im in images])
    await _after_deletion(store, actor_id, images, "user.delete_images", "user", user_id)
    return report


async def close_account(store: Store, actor_id: int | None, user_id: int
                        ) -> tuple[DeletionReport, list[str]]:
    """Delete an account with everything it uploaded: the user themself, an instance admin
    or an operator (E7 for anyone else). Its images go as `delete_user_images` deletes them;
    then the account (`Store.delete_user`). The report and the hashes of the tokens that
    stopped working (for the callers' token caches). The caller also discards the user's
    data exports (`wayview.pipeline.export.discard_exports`)."""
    user = (await store.get_users([user_id])).get(user_id)
    if user is None or (actor_id is not None and actor_id != user_id and (
            await instance_role(store, actor_id) != "admin")):
        raise NodeNotFound(str(user_id), "delete")
    images = await _images(store, await images_of(store, username=user.username))
    report = await request_deletion(store, [im.id for im in images])
    await _resolve_deleted(store, actor_id, images)
    # Logged before the row goes, so the entry keeps the actor's name.
    await audit(store, "user.delete", actor_id=actor_id, target_kind="user",
                target_id=user_id, username=user.username, images=len(images))
    hashes = await store.delete_user(user_id)
    return report, hashes or []


async def _after_deletion(store: Store, actor_id: int | None, images: list[Image],
                          action: str, kind: str, target: object) -> None:
    orgs = {im.organization_id for im in images}
    sequences = sorted({im.sequence_id for im in images})
    await audit(store, action, actor_id=actor_id, target_kind=kind, target_id=target,
                organization_id=orgs.pop() if len(orgs) == 1 else None,
                images=len(images), sequences=sequences[:50],
                owners=sorted({im.creator_id for im in images})[:50])
    await _resolve_deleted(store, actor_id, images)


async def _resolve_deleted(store: Store, actor_id: int | None, images: list[Image]) -> None:
    """Resolve every open report of deleted images as "deleted" (a statement per
    `_REPORT_BATCH` images, not one per image)."""
    ids = [im.id for im in images]
    for start in range(0, len(ids), _REPORT_BATCH):
        await store.resolve_reports(ids[start:start + _REPORT_BATCH], resolver_id=actor_id,
                                    resolution="deleted")


# -- organizations ----------------------------------------------------------------------------
async def create_organization(store: Store, actor_id: int, slug: str, *, name: str = "",
                              description: str = "") -> Organization:
    """A new organization with the actor as its first admin."""
    slug = slug.strip().lower()
    if not SLUG.fullmatch(slug):
        raise InvalidParameter("slug", "2-64 lower-case letters, digits and dashes, "
                               "starting and ending with a letter or digit")
    if len(name) > 200 or len(description) > 2000:
        raise InvalidParameter("name", "at most 200 characters (description: 2,000)")
    org = await store.create_organization(slug, name=name.strip() or slug,
                                          description=description.strip())
    await store.save_membership(Membership(org.id, actor_id, role="admin"))
    await audit(store, "organization.create", actor_id=actor_id, target_kind="organization",
                target_id=org.id, organization_id=org.id, slug=slug)
    return org


async def organization(store: Store, organization_id: int) -> Organization:
    """An organization by id; E7 if there is none."""
    found = (await store.get_organizations([organization_id])).get(organization_id)
    if found is None:
        raise NodeNotFound(str(organization_id))
    return found


async def members(store: Store, actor_id: int | None, organization_id: int
                  ) -> list[Membership]:
    """An organization's members and invitations: for its members and instance admins."""
    await organization(store, organization_id)
    if actor_id is not None and await store.get_membership(organization_id, actor_id) is None \
            and await instance_role(store, actor_id) != "admin":
        raise PermissionDenied("only an organization's members see its member list")
    return await store.organization_members(organization_id)


def _role(role: str) -> str:
    if role not in ORGANIZATION_ROLES:
        raise InvalidParameter("role", f"one of {', '.join(ORGANIZATION_ROLES)}")
    return role


async def invite(store: Store, actor_id: int | None, organization_id: int, username: str,
                 role: str = "member") -> Membership:
    """Invite a user (they join when they accept), or change a member's role. Admins only."""
    await organization(store, organization_id)
    if actor_id is not None and not await may_manage_organization(store, actor_id,
                                                                  organization_id):
        raise PermissionDenied("only an organization's admins invite members")
    user = await store.get_user_by_username(username)
    if user is None:
        raise InvalidParameter("username", f"no user named {username!r}")
    existing = await store.get_membership(organization_id, user.id)
    if existing is not None and existing.role == "admin" and role != "admin":
        await _keep_an_admin(store, organization_id, user.id)
    status = existing.status if existing is not None else "invited"
    if actor_id is None:
        status = "active"  # an operator adds members directly
    saved = await store.save_membership(Membership(
        organization_id, user.id, role=_role(role), status=status,
        invited_by=existing.invited_by if existing is not None else actor_id))
    action = "organization.invite" if existing is None else "organization.set_role"
    await audit(store, action, actor_id=actor_id, target_kind="user", target_id=user.id,
                organization_id=organization_id, username=user.username, role=role,
                status=saved.status)
    return saved


async def accept(store: Store, user_id: int, organization_id: int) -> Membership:
    """The invited user joins; E7 when there is no invitation."""
    existing = await store.get_membership(organization_id, user_id)
    if existing is None:
        raise NodeNotFound(str(organization_id), "join")
    if existing.status == "active":
        return existing
    saved = await store.save_membership(Membership(
        organization_id, user_id, role=existing.role, status="active",
        invited_by=existing.invited_by))
    await audit(store, "organization.join", actor_id=user_id, target_kind="user",
                target_id=user_id, organization_id=organization_id, role=saved.role)
    return saved


async def remove_member(store: Store, actor_id: int | None, organization_id: int,
                        user_id: int) -> None:
    """Remove a member or withdraw an invitation (admins), or leave / decline (the user).
    The last admin cannot leave: an organization always has one."""
    await organization(store, organization_id)
    if actor_id is not None and actor_id != user_id and not await may_manage_organization(
            store, actor_id, organization_id):
        raise PermissionDenied("only an organization's admins remove members")
    existing = await store.get_membership(organization_id, user_id)
    if existing is None:
        raise NodeNotFound(str(user_id), "delete")
    if existing.role == "admin" and existing.status == "active":
        await _keep_an_admin(store, organization_id, user_id)
    await store.remove_membership(organization_id, user_id)
    await audit(store, "organization.remove" if actor_id != user_id else "organization.leave",
                actor_id=actor_id, target_kind="user", target_id=user_id,
                organization_id=organization_id, was=existing.status)


async def _keep_an_admin(store: Store, organization_id: int, leaving: int) -> None:
    admins = [m for m in await store.organization_members(organization_id)
              if m.role == "admin" and m.status == "active" and m.user_id != leaving]
    if not admins:
        raise Conflict("an organization needs at least one admin: make another member an "
                       "admin first")


# -- instance roles ---------------------------------------------------------------------------
async def set_role(store: Store, actor_id: int | None, username: str,
                   role: str | None) -> None:
    """Give or take an instance role: operators and instance admins."""
    if role is not None and role not in INSTANCE_ROLES:
        raise InvalidParameter("role", f"one of {', '.join(INSTANCE_ROLES)} or none")
    if actor_id is not None and await instance_role(store, actor_id) != "admin":
        raise PermissionDenied("only instance admins give roles")
    user = await store.get_user_by_username(username)
    if user is None:
        raise InvalidParameter("username", f"no user named {username!r}")
    await store.set_user_role(user.id, role)
    await audit(store, "user.set_role", actor_id=actor_id, target_kind="user",
                target_id=user.id, username=user.username, role=role, was=user.role)


# -- reports and moderation -------------------------------------------------------------------
async def report_image(store: Store, reporter_id: int, image_id: int, reason: str,
                       comment: str = "") -> Report:
    """A signed-in user reports an image they can see."""
    if reason not in REPORT_REASONS:
        raise InvalidParameter("reason", f"one of {', '.join(REPORT_REASONS)}")
    images = await _images(store, [image_id])
    if not images:
        raise NodeNotFound(str(image_id))
    image = images[0]
    report = await store.create_report(Report(
        0, image_id, reporter_id, reason, comment.strip()[:MAX_COMMENT],
        owner_id=image.creator_id, organization_id=image.organization_id))
    await audit(store, "report.create", actor_id=reporter_id, target_kind="image",
                target_id=image_id, organization_id=image.organization_id, report=report.id,
                reason=reason)
    return report


async def moderated_organizations(store: Store, actor_id: int | None) -> tuple[int, ...] | None:
    """Which reports a moderator sees: None = all (instance moderators and admins, operators),
    else the organizations they are an admin of (possibly none)."""
    if actor_id is None or await instance_role(store, actor_id) in ("admin", "moderator"):
        return None
    return tuple(sorted({m.organization_id for m in await store.memberships_of(actor_id)
                         if m.role == "admin" and m.status == "active"}))


async def audit_scope(store: Store, actor_id: int | None, wanted_actor: int | None = None
                      ) -> tuple[int | None, tuple[int, ...] | None]:
    """Which audit entries someone may read, as (actor filter, organization filter): instance
    admins and moderators (and operators) everything, organization admins their
    organizations' entries, everyone else (and anyone asking for their own) their own
    actions. `wanted_actor` narrows to one actor where allowed."""
    if actor_id is None or await instance_role(store, actor_id) in ("admin", "moderator"):
        return wanted_actor, None
    orgs = tuple(sorted({m.organization_id for m in await store.memberships_of(actor_id)
                         if m.role == "admin" and m.status == "active"}))
    if wanted_actor == actor_id or not orgs:
        return actor_id, None
    return wanted_actor, orgs


async def queue(store: Store, actor_id: int | None, *, status: str | None = "open",
                before_id: int | None = None, limit: int = 100) -> list[Report]:
    """The reports a moderator may work on, newest first."""
    orgs = await moderated_organizations(store, actor_id)
    if orgs == ():
        raise PermissionDenied("only moderators and organization admins see reports")
    return await store.list_reports(status=status, organization_ids=orgs, before_id=before_id,
                                    limit=limit)


async def resolve(store: Store, actor_id: int | None, report_id: int, action: str,
                  note: str = "") -> list[Report]:
    """Dismiss a report, or hide or delete its image (which resolves every open report of
    it)."""
    if action not in RESOLUTIONS:
        raise InvalidParameter("action", f"one of {', '.join(RESOLUTIONS)}")
    report = await store.get_report(report_id)
    if report is None or (actor_id is not None and not await may_moderate(
            store, actor_id, report.organization_id)):
        raise NodeNotFound(str(report_id))
    if report.status != "open":
        raise Conflict(f"report {report_id} is already resolved ({report.resolution})")
    await audit(store, f"report.{action}", actor_id=actor_id, target_kind="image",
                target_id=report.image_id, organization_id=report.organization_id,
                report=report_id, reason=report.reason, note=note.strip()[:MAX_COMMENT])
    if action == "dismiss":
        return await store.resolve_reports([report.image_id], resolver_id=actor_id,
                                           resolution="dismissed", report_id=report_id)
    if action == "hide":
        await store.set_hidden([report.image_id], True, by=actor_id, reason=report.reason)
        return await store.resolve_reports([report.image_id], resolver_id=actor_id,
                                           resolution="hidden")
    resolved = await store.resolve_reports([report.image_id], resolver_id=actor_id,
                                           resolution="deleted")
    if await _images(store, [report.image_id]):
        await request_deletion(store, [report.image_id])
    return resolved


async def _moderated_image(store: Store, actor_id: int | None, image_id: int,
                           method: str) -> Image:
    images = await _images(store, [image_id])
    if not images or (actor_id is not None and not await may_moderate(
            store, actor_id, images[0].organization_id)):
        raise NodeNotFound(str(image_id), method)
    return images[0]


async def hide_image(store: Store, actor_id: int | None, image_id: int,
                     reason: str = "") -> bool:
    """Hide an image (moderators): it leaves every tile and every Graph answer except to its
    owner and moderators; its open reports are resolved as "hidden". False if it was hidden
    already."""
    image = await _moderated_image(store, actor_id, image_id, "post")
    changed = bool(await store.set_hidden([image_id], True, by=actor_id,
                                          reason=reason.strip()[:MAX_COMMENT]))
    if changed:
        await audit(store, "image.hide", actor_id=actor_id, target_kind="image",
                    target_id=image_id, organization_id=image.organization_id,
                    owner=image.creator_id, reason=reason.strip()[:MAX_COMMENT])
    await store.resolve_reports([image_id], resolver_id=actor_id, resolution="hidden")
    return changed


async def unhide_image(store: Store, actor_id: int | None, image_id: int) -> bool:
    """Show a hidden image again (moderators). False if it was not hidden."""
    image = await _moderated_image(store, actor_id, image_id, "post")
    changed = bool(await store.set_hidden([image_id], False))
    if changed:
        await audit(store, "image.unhide", actor_id=actor_id, target_kind="image",
                    target_id=image_id, organization_id=image.organization_id,
                    owner=image.creator_id)
    return changed


async def hidden_queue(store: Store, actor_id: int | None, limit: int = 200
                       ) -> list[HiddenImage]:
    """The hidden images a moderator may show again, most recent first."""
    orgs = await moderated_organizations(store, actor_id)
    if orgs == ():
        raise PermissionDenied("only moderators and organization admins see hidden images")
    return await store.list_hidden(organization_ids=orgs, limit=limit)
