"""Owners correct their data (issue #17, "Correct"): `POST /{image_id}` and the sequence
routes, through HTTP. What a user sees follows at once: the Graph answers, searches, both
image tilesets (decoded), `image_ids` order; others get E7 as for an unknown id."""

from __future__ import annotations

import httpx
import mapbox_vector_tile
import pytest

from wayview.blobs import LocalBlobs
from wayview.pipeline.edits import REPOSITION_JOB
from wayview.pipeline.worker import JobRunner
from wayview.settings import Settings
from wayview.store import Store
from wayview.testing import Seeded
from wayview.tiles.index import IMAGE_ZOOM
from wayview.tiles.tilemath import lnglat_to_tile

E7 = 100


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"OAuth {token}"}


async def tile_layers(client: httpx.AsyncClient, token: str, tileset: str, lon: float,
                      lat: float, z: int = IMAGE_ZOOM) -> dict[str, list[dict[str, object]]]:
    x, y = lnglat_to_tile(lon, lat, z)
    r = await client.get(f"/maps/vtp/{tileset}/2/{z}/{x}/{y}",
                         headers={**_auth(token), "Accept-Encoding": "identity"})
    assert r.status_code == 200
    if not r.content:
        return {}
    return {name: [f["properties"] for f in layer["features"]]
            for name, layer in mapbox_vector_tile.decode(r.content).items()}


async def image_ids(client: httpx.AsyncClient, token: str, sequence_id: str) -> list[int]:
    r = await client.get("/image_ids", params={"sequence_id": sequence_id},
                         headers=_auth(token))
    assert r.status_code == 200, r.text
    return [int(row["id"]) for row in r.json()["data"]]


async def test_owner_corrects_an_image_and_every_endpoint_follows(
        client: httpx.AsyncClient, seeded: Seeded, store: Store, settings: Settings) -> None:
    sequence = next(iter(seeded.sequences.values()))
    image = sequence[3]
    path = f"/{image.id}"
    far = (13.4300, 52.5300)  # another z14 tile

    r = await client.post(path, headers=_auth(seeded.user_token),
                          data={"compass_angle": "123.5", "lon": str(far[0]),
                                "lat": str(far[1]), "captured_at": "2021-05-02T08:00:00Z"})
    assert r.status_code == 200 and r.json() == {"success": True}

    got = (await client.get(path, headers=_auth(seeded.client_token), params={
        "fields": "geometry,compass_angle,captured_at,computed_geometry"})).json()
    assert got["geometry"]["coordinates"] == [far[0], far[1]]
    assert got["compass_angle"] == 123.5
    assert got["captured_at"] == 1_619_942_400_000
    # Searches by bbox and time.
    r = await client.get("/images", headers=_auth(seeded.client_token), params={
        "bbox": f"{far[0] - 0.001},{far[1] - 0.001},{far[0] + 0.001},{far[1] + 0.001}",
        "fields": "id"})
    assert [row["id"] for row in r.json()["data"]] == [str(image.id)]
    r = await client.get("/images", headers=_auth(seeded.client_token), params={
        "sequence_ids": image.sequence_id, "start_captured_at": "2021-05-02T00:00:00Z",
        "fields": "id"})
    assert [row["id"] for row in r.json()["data"]] == [str(image.id)]
    # Capture order: the image is now the last of its sequence.
    assert (await image_ids(client, seeded.client_token, image.sequence_id))[-1] == image.id
    # Both tilesets: at the new position with the new angle, gone from the old tile.
    for tileset in ("mly1_public", "mly1_computed_public"):
        here = await tile_layers(client, seeded.client_token, tileset, *far)
        assert [(p["id"], p["compass_angle"]) for p in here["image"]] == [(image.id, 124)]
        old = await tile_layers(client, seeded.client_token, tileset, image.lon, image.lat)
        assert image.id not in {p["id"] for p in old.get("image", [])}
    # The values as uploaded are kept; the action is in the audit log with old and new.
    original = (await store.image_originals([image.id]))[image.id]
    assert (original.lon, original.lat) == (image.lon, image.lat)
    entries = await store.audit_entries(target=("image", str(image.id)))
    assert [e.action for e in entries] == ["image.correct"]
    assert entries[0].actor_id == seeded.alice.id
    assert entries[0].details["old"]["lon"] == image.lon
    assert entries[0].details["new"]["compass_angle"] == 123.5
    # JSON with a GeoJSON point works too; the job computes positions again.
    r = await client.post(path, headers=_auth(seeded.user_token),
                          json={"geometry": {"type": "Point", "coordinates": [*far]},
                                "compass_angle": 90})
    assert r.status_code == 200
    jobs = await store.list_jobs()
    assert REPOSITION_JOB in {j.kind for j in jobs}
    assert await JobRunner(settings, store, LocalBlobs(settings.blobs_path),
                           kinds=(REPOSITION_JOB,)).drain() >= 1
    after = (await store.get_images([image.id]))[image.id]
    assert after.computed_lon is not None and after.compass_angle_deg == 90


@pytest.mark.parametrize("body", [
    {}, {"compass_angle": "north"}, {"lon": "13.4"}, {"lon": "200", "lat": "52"},
    {"captured_at": "yesterday"}, {"geometry": "{\"type\": \"LineString\"}"},
    {"compass_angle": "nan"},
])
async def test_correction_with_bad_values_is_a_400_never_a_500(
        client: httpx.AsyncClient, seeded: Seeded, body: dict[str, str]) -> None:
    image = seeded.images[0]
    r = await client.post(f"/{image.id}", headers=_auth(seeded.user_token), data=body)
    assert r.status_code == 400 and set(r.json()["error"]) >= {"message", "type", "code"}


async def test_others_cannot_edit_and_get_what_an_unknown_id_gets(
        client: httpx.AsyncClient, seeded: Seeded) -> None:
    alice_image = seeded.images[0]
    alice_sequence = alice_image.sequence_id
    bob_sequence = next(s for s, ims in seeded.sequences.items()
                        if ims[0].creator_id == seeded.bob.id)
    unknown = await client.post("/4999999999999999", headers=_auth(seeded.bob_token),
                                data={"compass_angle": "1"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == E7
    for path, data in [(f"/{alice_image.id}", {"compass_angle": "1"}),
                       (f"/sequences/{alice_sequence}/split",
                        {"image_id": str(seeded.sequences[alice_sequence][2].id)}),
                       (f"/sequences/{alice_sequence}/reorder", {"image_ids": "1"}),
                       (f"/sequences/{bob_sequence}/merge", {"sequence_id": alice_sequence}),
                       ("/sequences/nosuchsequence/split", {"image_id": "1"})]:
        r = await client.post(path, headers=_auth(seeded.bob_token), data=data)
        assert r.status_code == 400 and r.json()["error"]["code"] == E7, path
        assert "does not exist" in r.json()["error"]["message"]
        # A client token (no user) is refused before anything is looked at: E7 on a node
        # (as for any node that does not take POST), E2 on the sequence forms.
        r = await client.post(path, headers=_auth(seeded.client_token), data=data)
        expected = 400 if path == f"/{alice_image.id}" else 401
        assert r.status_code == expected and "error" in r.json(), path
    r = await client.post(f"/{alice_image.id}", data={"compass_angle": "1"})
    assert r.status_code == 401
    got = (await client.get(f"/{alice_image.id}", headers=_auth(seeded.client_token),
                            params={"fields": "compass_angle"})).json()
    assert got["compass_angle"] == alice_image.compass_angle_deg


async def test_owner_splits_merges_and_reorders_a_sequence(
        client: httpx.AsyncClient, seeded: Seeded, store: Store) -> None:
    sequence_id, images = next(iter(seeded.sequences.items()))
    at = images[6]
    r = await client.post(f"/sequences/{sequence_id}/split", headers=_auth(seeded.user_token),
                          data={"image_id": str(at.id)})
    assert r.status_code == 200, r.text
    new_id = r.json()["id"]
    assert r.json()["success"] is True and new_id != sequence_id and len(new_id) == 22
    token = seeded.client_token
    assert await image_ids(client, token, sequence_id) == [im.id for im in images[:6]]
    assert await image_ids(client, token, new_id) == [im.id for im in images[6:]]
    got = (await client.get(f"/{at.id}", headers=_auth(token),
                            params={"fields": "sequence"})).json()
    assert got["sequence"] == new_id
    for tileset in ("mly1_public", "mly1_computed_public"):
        layers = await tile_layers(client, token, tileset, at.lon, at.lat)
        by_id = {p["id"]: p["sequence_id"] for p in layers["image"]}
        assert by_id[at.id] == new_id and by_id[images[0].id] == sequence_id
        lines = {p["id"]: p["image_id"] for p in layers["sequence"]}
        assert lines[sequence_id] == images[0].id and lines[new_id] == at.id
    entries = await store.audit_entries(target=("sequence", sequence_id))
    assert entries[0].action == "sequence.split"
    assert entries[0].details["new_sequence_id"] == new_id
    # Splitting at the first image is refused (400, not 500).
    r = await client.post(f"/sequences/{new_id}/split", headers=_auth(seeded.user_token),
                          data={"image_id": str(at.id)})
    assert r.status_code == 400 and r.json()["error"]["code"] == 100

    # Merge back (JSON body): one sequence again; the other answers nothing.
    r = await client.post(f"/sequences/{sequence_id}/merge", headers=_auth(seeded.user_token),
                          json={"sequence_id": new_id})
    assert r.status_code == 200 and r.json() == {"success": True}
    assert await image_ids(client, token, sequence_id) == [im.id for im in images]
    assert await image_ids(client, token, new_id) == []
    layers = await tile_layers(client, token, "mly1_public", at.lon, at.lat)
    drawn = {p["id"] for p in layers["sequence"]}
    assert sequence_id in drawn and new_id not in drawn
    assert (await store.audit_entries(target=("sequence", sequence_id)))[0].action \
        == "sequence.merge"
    # Alice's two sequences of different organizations cannot be merged.
    org_sequence = next(s for s, ims in seeded.sequences.items()
                        if ims[0].organization_id == seeded.org.id)
    r = await client.post(f"/sequences/{sequence_id}/merge", headers=_auth(seeded.user_token),
                          data={"sequence_id": org_sequence})
    assert r.status_code == 400 and "organization" in r.json()["error"]["message"]

    # Reorder: the capture times, earliest first, go to the images in the order given.
    wanted = [im.id for im in reversed(images)]
    r = await client.post(f"/sequences/{sequence_id}/reorder",
                          headers=_auth(seeded.user_token),
                          data={"image_ids": ",".join(map(str, wanted))})
    assert r.status_code == 200
    assert await image_ids(client, token, sequence_id) == wanted
    layers = await tile_layers(client, token, "mly1_public", at.lon, at.lat)
    lines = {p["id"]: p["image_id"] for p in layers["sequence"]}
    assert lines[sequence_id] == images[-1].id
    r = await client.post(f"/sequences/{sequence_id}/reorder",
                          headers=_auth(seeded.user_token), data={"image_ids": "1,2"})
    assert r.status_code == 400
