"""GovernanceStore: instance roles, organization memberships and invitations, the audit log
and image reports, on every backend (the `store` fixture)."""

from __future__ import annotations

from wayview.model.entities import AuditEntry, Membership, Report
from wayview.store import Store


async def test_instance_roles_are_set_read_and_cleared(store: Store) -> None:
    alice = await store.create_user("alice")
    bob = await store.create_user("bob")
    assert (await store.get_users([alice.id]))[alice.id].role is None
    assert await store.set_user_role(alice.id, "admin")
    assert await store.set_user_role(bob.id, "moderator")
    assert not await store.set_user_role(4_999_999_999, "admin")  # no such user
    assert (await store.get_users([alice.id]))[alice.id].role == "admin"
    found = await store.get_user_by_username("BOB")
    assert found is not None and found.role == "moderator"
    assert await store.users_with_roles() == [(alice.id, "alice", "admin"),
                                              (bob.id, "bob", "moderator")]
    await store.set_user_role(alice.id, None)
    assert await store.users_with_roles() == [(bob.id, "bob", "moderator")]


async def test_an_invitation_is_no_membership_until_it_is_accepted(store: Store) -> None:
    alice = await store.create_user("alice")
    bob = await store.create_user("bob")
    org = await store.create_organization("lund-city")
    assert await store.get_organization_by_slug("LUND-CITY") == org.id
    assert await store.get_organization_by_slug("nowhere") is None
    admin = await store.save_membership(Membership(org.id, alice.id, role="admin"))
    assert (admin.role, admin.status, admin.username) == ("admin", "active", "alice")
    invited = await store.save_membership(Membership(org.id, bob.id, status="invited",
                                                     invited_by=alice.id))
    assert invited.invited_by == alice.id and invited.created_at_ms > 0
    assert not await store.is_organization_member(org.id, bob.id)
    assert await store.is_organization_member(org.id, alice.id)
    members = await store.organization_members(org.id)
    assert [(m.username, m.role, m.status) for m in members] == [
        ("alice", "admin", "active"), ("bob", "member", "invited")]
    # Accepting keeps when the invitation was made.
    accepted = await store.save_membership(Membership(org.id, bob.id, status="active",
                                                      invited_by=alice.id))
    assert accepted.created_at_ms == invited.created_at_ms
    assert await store.is_organization_member(org.id, bob.id)
    assert [m.organization_id for m in await store.memberships_of(bob.id)] == [org.id]
    assert await store.remove_membership(org.id, bob.id)
    assert not await store.remove_membership(org.id, bob.id)
    assert await store.get_membership(org.id, bob.id) is None
    assert not await store.is_organization_member(org.id, bob.id)
    # The command line's add_organization_member still makes active members.
    await store.add_organization_member(org.id, bob.id)
    assert await store.is_organization_member(org.id, bob.id)


async def test_the_audit_log_keeps_who_what_when_and_filters(store: Store) -> None:
    alice = await store.create_user("alice")
    first = await store.record_audit(AuditEntry(
        "image.delete", alice.id, "image", "123", organization_id=77,
        details={"sequence": "abc", "images": 1}))
    second = await store.record_audit(AuditEntry("user.role", None, "user", str(alice.id),
                                                 details={"role": "admin"}))
    assert second.id > first.id and first.at_ms > 0
    assert first.actor_username == "alice" and second.actor_username is None
    assert first.details == {"sequence": "abc", "images": 1}
    every = await store.audit_entries()
    assert [e.id for e in every] == [second.id, first.id]
    assert [e.id for e in await store.audit_entries(actor_id=alice.id)] == [first.id]
    assert [e.id for e in await store.audit_entries(target=("image", "123"))] == [first.id]
    assert [e.id for e in await store.audit_entries(organization_ids=(77,))] == [first.id]
    assert await store.audit_entries(organization_ids=()) == []
    assert [e.id for e in await store.audit_entries(before_id=second.id)] == [first.id]
    assert len(await store.audit_entries(limit=1)) == 1


async def test_reports_open_once_per_reporter_and_resolve(store: Store) -> None:
    carol = await store.create_user("carol")
    dave = await store.create_user("dave")
    one = await store.create_report(Report(0, 555, carol.id, "privacy", "a face",
                                           owner_id=9, organization_id=None))
    again = await store.create_report(Report(0, 555, carol.id, "offensive", "changed mind"))
    assert again.id == one.id and (again.reason, again.comment) == ("offensive",
                                                                   "changed mind")
    other = await store.create_report(Report(0, 555, dave.id, "wrong_location",
                                             organization_id=42))
    elsewhere = await store.create_report(Report(0, 556, dave.id, "other"))
    assert [r.id for r in await store.list_reports()] == [elsewhere.id, other.id, one.id]
    assert [r.id for r in await store.list_reports(organization_ids=(42,))] == [other.id]
    assert [r.id for r in await store.list_reports(image_id=555)] == [other.id, one.id]
    done = await store.resolve_reports([555], resolver_id=dave.id, resolution="dismissed",
                                       report_id=one.id)
    assert [(r.id, r.status, r.resolution, r.resolver_id) for r in done] == [
        (one.id, "resolved", "dismissed", dave.id)]
    assert [r.id for r in await store.list_reports()] == [elsewhere.id, other.id]
    rest = await store.resolve_reports([555], resolver_id=None, resolution="deleted")
    assert [r.id for r in rest] == [other.id]
    assert await store.resolve_reports([555], resolver_id=None, resolution="deleted") == []
    resolved = await store.list_reports(status="resolved")
    assert {r.id for r in resolved} == {one.id, other.id}
    # Several images in one call (a deletion resolves all their reports at once).
    assert await store.resolve_reports([], resolver_id=None, resolution="deleted") == []
    both = await store.resolve_reports([556, 999], resolver_id=None, resolution="deleted")
    assert [r.id for r in both] == [elsewhere.id]
    fetched = await store.get_report(one.id)
    assert fetched is not None and fetched.resolved_at_ms
    assert await store.get_report(10**9) is None
    # Once resolved, the same reporter may report the image again.
    anew = await store.create_report(Report(0, 555, carol.id, "privacy"))
    assert anew.id not in (one.id, other.id)
