"""Organizations, roles, reports and the audit log over HTTP (issue #17): who may delete
what (owner, organization admin, instance admin), the deletion forms for sequences and whole
accounts, invitations and roles, the moderation queue, and the audit log of all of it."""

from __future__ import annotations

import httpx

from wayview.auth import governance
from wayview.auth.tokens import issue_user_token
from wayview.store import Store
from wayview.testing import Seeded


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"OAuth {token}"}


async def _token(store: Store, username: str, role: str | None = None) -> tuple[int, str]:
    user = await store.create_user(username)
    if role:
        await store.set_user_role(user.id, role)
    return user.id, (await issue_user_token(store, user)).access_token


async def _exists(client: httpx.AsyncClient, seeded: Seeded, image_id: int) -> bool:
    r = await client.get(f"/{image_id}", headers=_auth(seeded.client_token))
    return r.status_code == 200


async def test_organization_admins_invite_members_who_accept_and_roles_change(
        client: httpx.AsyncClient, seeded: Seeded, store: Store) -> None:
    bob = _auth(seeded.bob_token)
    carol_id, carol_token = await _token(store, "carol")
    carol = _auth(carol_token)
    r = await client.post("/organizations", headers=bob,
                          data={"slug": "Bob-Maps", "name": "Bob's maps"})
    assert r.status_code == 200, r.text
    org = r.json()
    assert org["slug"] == "bob-maps" and org["name"] == "Bob's maps"
    org_id = org["id"]
    # The organization is a Graph node like any other.
    node = await client.get(f"/{org_id}", headers=_auth(seeded.client_token),
                            params={"fields": "id,slug,name"})
    assert node.json() == {"id": org_id, "slug": "bob-maps", "name": "Bob's maps"}
    bad = await client.post("/organizations", headers=bob, data={"slug": "no spaces!"})
    assert bad.status_code == 400 and "slug" in bad.json()["error"]["message"]
    taken = await client.post("/organizations", headers=carol, data={"slug": "BOB-MAPS"})
    assert taken.status_code == 400
    # Only admins invite; an invitation is not a membership until accepted.
    assert (await client.post(f"/{org_id}/members", headers=carol,
                              data={"username": "alice"})).status_code == 403
    r = await client.post(f"/{org_id}/members", headers=bob, json={"username": "carol"})
    assert r.status_code == 200 and r.json()["status"] == "invited"
    assert not await store.is_organization_member(int(org_id), carol_id)
    mine = (await client.get("/me/organizations", headers=carol)).json()["data"]
    assert [(m["organization"]["slug"], m["status"]) for m in mine] == [("bob-maps", "invited")]
    assert (await client.get(f"/{org_id}/members", headers=_auth(seeded.user_token))
            ).status_code == 403  # alice is not in it
    r = await client.post(f"/{org_id}/join", headers=carol)
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert await store.is_organization_member(int(org_id), carol_id)
    listed = (await client.get(f"/{org_id}/members", headers=carol)).json()["data"]
    assert [(m["user"]["username"], m["role"], m["status"]) for m in listed] == [
        ("bob", "admin", "active"), ("carol", "member", "active")]
    # The last admin cannot leave; after making carol an admin, bob can.
    r = await client.delete(f"/{org_id}/members/{seeded.bob.id}", headers=bob)
    assert r.status_code == 400 and "admin" in r.json()["error"]["message"]
    r = await client.post(f"/{org_id}/members", headers=bob,
                          data={"username": "carol", "role": "admin"})
    assert r.json()["role"] == "admin" and r.json()["status"] == "active"
    assert (await client.delete(f"/{org_id}/members/{seeded.bob.id}", headers=bob)
            ).json() == {"success": True}
    assert [m["user"]["username"] for m in (await client.get(
        f"/{org_id}/members", headers=carol)).json()["data"]] == ["carol"]
    # A client token cannot act for a user.
    r = await client.get("/me/organizations", headers=_auth(seeded.client_token))
    assert r.status_code in (401, 403)
    # carol, now its admin, reads the organization's whole history.
    actions = [(e["action"], e["actor"].get("username")) for e in (await client.get(
        "/audit_log", headers=carol)).json()["data"]]
    assert actions == [("organization.leave", "bob"), ("organization.set_role", "bob"),
                       ("organization.join", "carol"), ("organization.invite", "bob"),
                       ("organization.create", "bob")]


async def test_organization_and_instance_admins_delete_what_they_manage(
        client: httpx.AsyncClient, seeded: Seeded, store: Store) -> None:
    s1, s2, s3 = seeded.sequences.values()  # alice; alice in acme; bob
    # bob becomes an admin of acme (an operator adds him, as `wayview org` does).
    await governance.invite(store, None, seeded.org.id, "bob", "admin")
    bob = _auth(seeded.bob_token)
    r = await client.delete(f"/{s1[0].id}", headers=bob)  # alice's own, not acme's
    assert r.status_code == 400 and r.json()["error"]["code"] == 100
    assert await _exists(client, seeded, s1[0].id)
    r = await client.delete(f"/{s2[0].id}", headers=bob)  # acme's
    assert r.json() == {"success": True} and not await _exists(client, seeded, s2[0].id)
    r = await client.delete(f"/sequences/{s2[0].sequence_id}", headers=bob)
    assert r.json() == {"success": True}
    assert not any([await _exists(client, seeded, im.id) for im in s2])
    # An instance admin may delete anyone's data; bob may not delete alice's account data.
    admin_id, admin_token = await _token(store, "root", role="admin")
    r = await client.delete(f"/{seeded.alice.id}/images", headers=bob)
    assert r.status_code == 400
    r = await client.delete(f"/sequences/{s3[0].sequence_id}", headers=_auth(admin_token))
    assert r.json() == {"success": True} and not await _exists(client, seeded, s3[0].id)
    r = await client.delete(f"/{seeded.alice.id}/images", headers=_auth(admin_token))
    assert r.json() == {"success": True, "images": len(s1)}
    assert not any([await _exists(client, seeded, im.id) for im in s1])
    # Users delete all of their own images with DELETE /me/images (none left for bob).
    r = await client.delete("/me/images", headers=bob)
    assert r.json() == {"success": True, "images": 0}
    entries = (await client.get("/audit_log", headers=_auth(admin_token))).json()["data"]
    by_action = {(e["action"], e["target"]["id"]): e for e in entries}
    account = by_action[("user.delete_images", str(seeded.alice.id))]
    assert account["actor"] == {"id": str(admin_id), "username": "root"}
    assert account["details"]["images"] == len(s1)
    assert by_action[("image.delete", str(s2[0].id))]["organization_id"] == str(seeded.org.id)
    # alice sees her own actions only (none); bob, acme's admin, sees acme's entries.
    assert (await client.get("/audit_log", headers=_auth(seeded.user_token))).json() == {
        "data": []}
    acme = (await client.get("/audit_log", headers=bob)).json()["data"]
    assert acme and all(e["organization_id"] == str(seeded.org.id) for e in acme)


async def test_users_report_images_and_moderators_dismiss_or_delete(
        client: httpx.AsyncClient, seeded: Seeded, store: Store) -> None:
    s1, s2, _ = seeded.sequences.values()
    carol_id, carol_token = await _token(store, "carol")
    _, mod_token = await _token(store, "mod", role="moderator")
    carol, mod = _auth(carol_token), _auth(mod_token)
    r = await client.post(f"/{s1[3].id}/reports", headers=carol,
                          data={"reason": "privacy", "comment": "a face, unblurred"})
    assert r.status_code == 200 and r.json()["status"] == "open"
    first = r.json()["id"]
    r = await client.post(f"/{s2[1].id}/reports", headers=carol, json={"reason": "offensive"})
    second = r.json()["id"]
    r = await client.post(f"/{s1[3].id}/reports", headers=carol, data={"reason": "rude"})
    assert r.status_code == 400 and "reason" in r.json()["error"]["message"]
    r = await client.post("/4999999999999999/reports", headers=carol, data={"reason": "other"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 100
    # Contributors have no queue; an organization admin sees their organization's reports.
    assert (await client.get("/reports", headers=carol)).status_code == 403
    await governance.invite(store, None, seeded.org.id, "bob", "admin")
    acme = (await client.get("/reports", headers=_auth(seeded.bob_token))).json()["data"]
    assert [x["id"] for x in acme] == [second]
    queue = (await client.get("/reports", headers=mod)).json()["data"]
    assert [x["id"] for x in queue] == [second, first]
    assert queue[1]["reason"] == "privacy" and queue[1]["owner_id"] == str(seeded.alice.id)
    # bob may not resolve a report outside acme; the moderator dismisses it.
    r = await client.post(f"/reports/{first}", headers=_auth(seeded.bob_token),
                          data={"action": "dismiss"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 100
    r = await client.post(f"/reports/{first}", headers=mod, data={"action": "dismiss",
                                                                  "note": "it is blurred"})
    assert r.json()["resolved"][0]["resolution"] == "dismissed"
    assert await _exists(client, seeded, s1[3].id)
    again = await client.post(f"/reports/{first}", headers=mod, data={"action": "dismiss"})
    assert again.status_code == 400
    # bob deletes the acme image reported as offensive.
    r = await client.post(f"/reports/{second}", headers=_auth(seeded.bob_token),
                          data={"action": "delete"})
    assert r.json()["resolved"][0]["resolution"] == "deleted"
    assert not await _exists(client, seeded, s2[1].id)
    assert (await client.get("/reports", headers=mod)).json() == {"data": []}
    done = (await client.get("/reports", headers=mod, params={"status": "resolved"})
            ).json()["data"]
    assert {x["id"]: x["resolution"] for x in done} == {first: "dismissed", second: "deleted"}
    trail = (await client.get("/audit_log", headers=_auth(seeded.bob_token), params={
        "target_kind": "image", "target_id": str(s2[1].id)})).json()["data"]
    assert [e["action"] for e in trail] == ["report.delete", "report.create"]
    assert (await client.get("/audit_log", headers=carol)).json()["data"][0][
        "details"]["reason"] == "offensive"


async def test_hidden_images_vanish_for_everyone_but_owner_and_moderators(
        client: httpx.AsyncClient, seeded: Seeded, store: Store) -> None:
    import mapbox_vector_tile

    from wayview.tiles.index import IMAGE_ZOOM
    from wayview.tiles.tilemath import lnglat_to_tile

    s1 = next(iter(seeded.sequences.values()))
    victim = s1[2]  # a stop sign's detection is on it
    detection = seeded.detections[0]
    sign = seeded.features[0]
    _, mod_token = await _token(store, "mod", role="moderator")
    mod, alice, bob = _auth(mod_token), _auth(seeded.user_token), _auth(seeded.bob_token)
    public = _auth(seeded.client_token)

    async def tile_ids(tileset: str) -> set[int]:
        x, y = lnglat_to_tile(victim.lon, victim.lat, IMAGE_ZOOM)
        r = await client.get(f"/maps/vtp/{tileset}/2/{IMAGE_ZOOM}/{x}/{y}",
                             headers={**public, "Accept-Encoding": "identity"})
        layers = mapbox_vector_tile.decode(r.content) if r.content else {}
        return {int(f["properties"]["id"]) for f in layers.get("image", {}).get("features", [])}

    async def sees(headers: dict[str, str]) -> dict[str, bool]:
        one = await client.get(f"/{victim.id}", headers=headers)
        ids = await client.get("/image_ids", headers=headers,
                               params={"sequence_id": victim.sequence_id})
        many = await client.get("/", headers=headers, params={"ids": str(victim.id)})
        det = await client.get(f"/{detection.id}", headers=headers)
        of_sign = await client.get(f"/{sign.id}/detections", headers=headers)
        tiles = await client.get(f"/{victim.id}/tiles", headers=headers, params={"z": "0"})
        west, south = victim.lon - 1e-4, victim.lat - 1e-4
        near = await client.get("/detections", headers=headers, params={
            "bbox": f"{west},{south},{west + 2e-4},{south + 2e-4}", "fields": "id"})
        return {
            "node": one.status_code == 200,
            "image_ids": str(victim.id) in {row["id"] for row in ids.json()["data"]},
            "many": str(victim.id) in many.json(),
            "detection": det.status_code == 200,
            "feature_detections": str(detection.id) in {
                row["id"] for row in of_sign.json()["data"]},
            "image_tiles": tiles.status_code == 200,
            "detections_search": str(detection.id) in {row["id"] for row in
                                                       near.json()["data"]},
        }

    everything = {k: True for k in await sees(public)}
    assert await sees(public) == everything
    before = {t: await tile_ids(t) for t in ("mly1_public", "mly1_computed_public")}
    assert all(victim.id in ids for ids in before.values())
    # Only moderators hide.
    r = await client.post(f"/{victim.id}/hide", headers=bob, data={"reason": "a face"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 100
    r = await client.post(f"/{victim.id}/hide", headers=mod, data={"reason": "a face"})
    assert r.json() == {"success": True, "changed": True}
    nothing = {k: False for k in everything}
    assert await sees(public) == nothing
    assert await sees(bob) == nothing
    assert await sees(alice) == everything  # the owner
    assert await sees(mod) == everything
    for tileset in before:
        assert await tile_ids(tileset) == before[tileset] - {victim.id}
    r = await client.get(f"/{sign.id}", headers=public, params={"fields": "images"})
    assert str(victim.id) not in {row["id"] for row in r.json()["images"]["data"]}
    listed = (await client.get("/hidden_images", headers=mod)).json()["data"]
    assert [(h["image_id"], h["reason"]) for h in listed] == [(str(victim.id), "a face")]
    assert (await client.get("/hidden_images", headers=bob)).status_code == 403
    # Shown again, to everyone.
    r = await client.post(f"/{victim.id}/unhide", headers=mod)
    assert r.json() == {"success": True, "changed": True}
    assert await sees(public) == everything
    for tileset in before:
        assert await tile_ids(tileset) == before[tileset]
    # A report resolved by hiding.
    r = await client.post(f"/{victim.id}/reports", headers=bob, data={"reason": "privacy"})
    r = await client.post(f"/reports/{r.json()['id']}", headers=mod, data={"action": "hide"})
    assert r.json()["resolved"][0]["resolution"] == "hidden"
    assert await sees(public) == nothing
    actions = [e["action"] for e in (await client.get(
        "/audit_log", headers=mod, params={"target_kind": "image",
                                           "target_id": str(victim.id)})).json()["data"]]
    assert actions == ["report.hide", "report.create", "image.unhide", "image.hide"]


async def test_deleting_all_your_images_discards_your_data_exports(
        client: httpx.AsyncClient, seeded: Seeded, store: Store, settings: object) -> None:
    from wayview.blobs import LocalBlobs
    from wayview.pipeline.worker import JobRunner

    bob = _auth(seeded.bob_token)
    r = await client.post("/me/exports", headers=bob)
    assert r.status_code == 200, r.text
    export_id = r.json()["id"]
    blobs = LocalBlobs(settings.blobs_path)  # type: ignore[attr-defined]
    await JobRunner(settings, store, blobs).drain()  # type: ignore[arg-type]
    done = (await client.get(f"/me/exports/{export_id}", headers=bob)).json()
    assert done["state"] == "done"
    assert (await client.get(f"/me/exports/{export_id}/download", headers=bob)).status_code == 200
    r = await client.delete("/me/images", headers=bob)
    assert r.json() == {"success": True, "images": 4}
    gone = (await client.get(f"/me/exports/{export_id}", headers=bob)).json()
    assert gone["state"] == "expired" and "download_url" not in gone
    assert not list((settings.blobs_path / "private").rglob("*.zip"))  # type: ignore[attr-defined]


async def test_closing_an_account_deletes_the_user_with_everything_they_uploaded(
        client: httpx.AsyncClient, seeded: Seeded, store: Store) -> None:
    s1, s2, s3 = seeded.sequences.values()
    admin_id, admin_token = await _token(store, "root", role="admin")
    admin = _auth(admin_token)
    await governance.invite(store, None, seeded.org.id, "bob")
    # Nobody else closes an account; a client token cannot.
    r = await client.delete(f"/{seeded.alice.id}", headers=_auth(seeded.bob_token))
    assert r.status_code == 400 and r.json()["error"]["code"] == 100
    assert (await client.delete("/me", headers=_auth(seeded.client_token))).status_code in (
        401, 403)
    # bob closes his own.
    r = await client.delete("/me", headers=_auth(seeded.bob_token))
    assert r.json() == {"success": True, "images": len(s3)}
    assert (await client.get(f"/{seeded.bob.id}", headers=admin)).status_code == 400
    assert (await client.get("/me", headers=_auth(seeded.bob_token))).status_code == 401
    assert not [im for im in s3 if (await client.get(f"/{im.id}", headers=admin)
                                    ).status_code == 200]
    assert await store.get_membership(seeded.org.id, seeded.bob.id) is None
    # An instance admin closes alice's: her images go, and so does her app (its client
    # token stops working for everyone).
    r = await client.delete(f"/{seeded.alice.id}", headers=admin)
    assert r.json() == {"success": True, "images": len(s1) + len(s2)}
    assert (await client.get(f"/{s1[0].id}", headers=admin)).status_code == 400
    r = await client.get(f"/{s1[0].id}", headers=_auth(seeded.client_token))
    assert r.status_code == 401
    assert await store.get_user_by_username("alice") is None
    entries = (await client.get("/audit_log", headers=admin, params={
        "target_kind": "user", "target_id": str(seeded.alice.id)})).json()["data"]
    [closed] = [e for e in entries if e["action"] == "user.delete"]
    assert closed["actor"] == {"id": str(admin_id), "username": "root"}
    assert closed["details"] == {"username": "alice", "images": len(s1) + len(s2)}
    # bob's own entry keeps his name although his account is gone.
    [own] = (await client.get("/audit_log", headers=admin, params={
        "target_kind": "user", "target_id": str(seeded.bob.id)})).json()["data"][:1]
    assert own["action"] == "user.delete" and own["actor"]["username"] == "bob"


async def test_a_hidden_image_s_media_answers_404(client: httpx.AsyncClient, seeded: Seeded,
                                                  store: Store, settings: object) -> None:
    from wayview.blobs import LocalBlobs
    from wayview.blobs.base import image_blob_key

    image = next(iter(seeded.sequences.values()))[0]
    blobs = LocalBlobs(settings.blobs_path)  # type: ignore[attr-defined]
    blobs.put_bytes(image_blob_key(image.id, "thumb_256"), b"\xff\xd8 not really a jpeg")
    url = f"/media/images/{image.id}/thumb_256.jpg"
    assert (await client.get(url)).status_code == 200
    await governance.hide_image(store, None, image.id, "privacy")
    assert (await client.get(url)).status_code == 404
    await governance.unhide_image(store, None, image.id)
    assert (await client.get(url)).status_code == 200
