"""wayview.auth.permissions: who may change which data (issue #17).

One rule for the API, the web pages and the CLI:

- an image's **owner** (its creator) may delete and correct it, re-blur it and export it;
- an **organization admin** may do the same to the organization's images, and manages the
  organization's members;
- an **instance admin** (`User.role == "admin"`) may do all of it to anyone's data;
- **moderators** (instance role "moderator", and organization admins for their organization's
  images) work the report queue.

Operators at the command line act as instance admins (`actor_id` None in the audit log).
"""

from __future__ import annotations

from collections.abc import Iterable

from wayview.model.entities import Image
from wayview.store.base import Store


async def instance_role(store: Store, user_id: int | None) -> str | None:
    """A user's instance role ("admin", "moderator") or None."""
    if user_id is None:
        return None
    user = (await store.get_users([user_id])).get(user_id)
    return user.role if user is not None else None


async def admin_of(store: Store, user_id: int) -> set[int]:
    """The organizations a user is an active admin of."""
    return {m.organization_id for m in await store.memberships_of(user_id)
            if m.role == "admin" and m.status == "active"}


async def may_manage_images(store: Store, user_id: int | None, images: Iterable[Image]) -> bool:
    """Whether a user may delete, correct or re-blur every one of `images`: each is theirs,
    or of an organization they are an admin of, or they are an instance admin. None (no
    user) may not."""
    if user_id is None:
        return False
    wanted = list(images)
    if all(im.creator_id == user_id for im in wanted):
        return True
    if await instance_role(store, user_id) == "admin":
        return True
    orgs = await admin_of(store, user_id)
    return all(im.creator_id == user_id or (im.organization_id is not None
                                            and im.organization_id in orgs)
               for im in wanted)


async def may_moderate(store: Store, user_id: int | None,
                       organization_id: int | None = None) -> bool:
    """Whether a user may moderate images: an instance admin or moderator may moderate any;
    an organization admin those of `organization_id` (their own organization)."""
    if user_id is None:
        return False
    if await instance_role(store, user_id) in ("admin", "moderator"):
        return True
    return organization_id is not None and organization_id in await admin_of(store, user_id)


async def may_manage_organization(store: Store, user_id: int | None,
                                  organization_id: int) -> bool:
    """Whether a user may invite and remove members of an organization: its admins, and
    instance admins."""
    if user_id is None:
        return False
    if organization_id in await admin_of(store, user_id):
        return True
    return await instance_role(store, user_id) == "admin"
