"""Public profiles (issue #18 item 6): /app/user/{username} and /app/org/{id or slug}, and
`Store.coverage_of` behind them, on both backends.

The figures (images, sequences, distance, capture span, extent) are checked against sums
worked out here (an equirectangular distance, independent of the store's haversine); hidden
images count nowhere, whichever write hid them; deletion, corrections, split and merge keep
the figures each sequence stores in step; unknown and closed accounts answer a 404 page; a
hostile username or organization name comes out escaped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tests.api.test_web import CONFIG_SCRIPT, MANIFEST
from tests.api.webforms import sign_up

from wayview.api import web
from wayview.model.entities import Image, ImageCorrection
from wayview.testing import Seeded, add_sequence

EARTH_M = 6_371_008.8


def _line_m(images: list[Image]) -> float:
    """The length through images in the order given: flat-Earth steps (metres apart, well
    within 1 % of the great circle)."""
    total = 0.0
    for a, b in zip(images, images[1:], strict=False):
        mean_lat = math.radians((a.lat + b.lat) / 2)
        dx = math.radians(b.lon - a.lon) * math.cos(mean_lat) * EARTH_M
        dy = math.radians(b.lat - a.lat) * EARTH_M
        total += math.hypot(dx, dy)
    return total


def _ordered(seeded: Seeded, owner: str) -> list[list[Image]]:
    by_owner = {"alice": seeded.alice.id, "bob": seeded.bob.id}
    return [images for images in seeded.sequences.values()
            if images[0].creator_id == by_owner[owner]]


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake front-end build (the manifest is all the pages read)."""
    dist = tmp_path / "static" / "dist"
    dist.mkdir(parents=True)
    (dist / "manifest.json").write_text(json.dumps(MANIFEST))
    monkeypatch.setattr(web, "STATIC_ROOT", tmp_path / "static")


# -- the figures -----------------------------------------------------------------------------
async def test_a_creators_figures_add_up(store, seeded):
    sequences = _ordered(seeded, "alice")
    coverage = await store.coverage_of(creator_id=seeded.alice.id)
    images = [im for seq in sequences for im in seq]
    assert coverage.image_count == len(images) == 15
    assert coverage.sequence_count == 2
    expected = sum(_line_m(seq) for seq in sequences)
    assert coverage.length_m == pytest.approx(expected, rel=0.01)
    assert coverage.length_m == pytest.approx(expected, rel=1e-4)  # and in fact much closer
    assert coverage.first_captured_at_ms == min(im.captured_at_ms for im in images)
    assert coverage.last_captured_at_ms == max(im.captured_at_ms for im in images)
    assert coverage.bbox == pytest.approx((min(im.lon for im in images),
                                           min(im.lat for im in images),
                                           max(im.lon for im in images),
                                           max(im.lat for im in images)))
    # Newest first, each with its first image (the explorer link) and its own figures.
    newest = coverage.latest[0]
    s2 = max(sequences, key=lambda seq: seq[0].captured_at_ms)
    assert [s.id for s in coverage.latest] == [s2[0].sequence_id, sequences[0][0].sequence_id]
    assert (newest.first_image_id, newest.image_count) == (s2[0].id, 5)
    assert newest.length_m == pytest.approx(_line_m(s2), rel=1e-4)
    assert newest.start == pytest.approx((s2[0].lon, s2[0].lat))
    assert coverage.starts[0] == newest.start


async def test_an_organizations_figures_and_contributors(store, seeded):
    (s2,) = [seq for seq in seeded.sequences.values()
             if seq[0].organization_id == seeded.org.id]
    coverage = await store.coverage_of(organization_id=seeded.org.id)
    assert (coverage.image_count, coverage.sequence_count) == (5, 1)
    assert coverage.length_m == pytest.approx(_line_m(s2), rel=1e-4)
    assert await store.organization_contributors(seeded.org.id) == [("alice", 5)]
    assert await store.coverage_of(organization_id=seeded.org.id + 10**9) == \
        type(coverage)()


async def test_hidden_images_count_nowhere(store, seeded):
    s1, s2 = _ordered(seeded, "alice")
    # Hiding the first image of s1 and one in the middle: the line runs through the others
    # and the sequence starts (and links) at its second image.
    await store.set_hidden([s1[0].id, s1[4].id], True)
    coverage = await store.coverage_of(creator_id=seeded.alice.id)
    kept = [im for im in s1 if im.id not in (s1[0].id, s1[4].id)]
    assert coverage.image_count == 13
    assert coverage.length_m == pytest.approx(_line_m(kept) + _line_m(s2), rel=1e-4)
    assert coverage.first_captured_at_ms == s1[1].captured_at_ms
    entry = {s.id: s for s in coverage.latest}[s1[0].sequence_id]
    assert entry.first_image_id == s1[1].id
    assert entry.start == pytest.approx((s1[1].lon, s1[1].lat))
    # A sequence of hidden images only is not there at all.
    (bob_seq,) = _ordered(seeded, "bob")
    await store.set_hidden([im.id for im in bob_seq], True)
    assert (await store.coverage_of(creator_id=seeded.bob.id)).sequence_count == 0
    # Shown again, everything is back.
    await store.set_hidden([s1[0].id, s1[4].id, *(im.id for im in bob_seq)], False)
    again = await store.coverage_of(creator_id=seeded.alice.id)
    assert again.image_count == 15 and again.length_m == pytest.approx(
        _line_m(s1) + _line_m(s2), rel=1e-4)
    assert (await store.coverage_of(creator_id=seeded.bob.id)).image_count == 4


async def test_edits_and_deletion_keep_the_figures_in_step(store, seeded):
    s1, s2 = _ordered(seeded, "alice")
    # Delete the last image of s1.
    await store.delete_images([s1[-1].id])
    s1 = s1[:-1]
    coverage = await store.coverage_of(creator_id=seeded.alice.id)
    assert coverage.image_count == 14
    assert coverage.length_m == pytest.approx(_line_m(s1) + _line_m(s2), rel=1e-4)
    # Move one image 0.001° north (about 111 m): the line grows by the detour.
    moved = s1[3]
    await store.correct_images([ImageCorrection(image_id=moved.id, lon=moved.lon,
                                                lat=moved.lat + 0.001)])
    s1 = [replace(im, lat=im.lat + 0.001) if im.id == moved.id else im for im in s1]
    coverage = await store.coverage_of(creator_id=seeded.alice.id)
    assert coverage.length_m == pytest.approx(_line_m(s1) + _line_m(s2), rel=1e-4)
    entry = {s.id: s for s in coverage.latest}[moved.sequence_id]
    assert entry.bbox[3] == pytest.approx(moved.lat + 0.001)
    # Split s1 before its sixth image: the step between the two halves is gone.
    await store.split_sequence(s1[0].sequence_id, s1[5].id, "split-part-two")
    coverage = await store.coverage_of(creator_id=seeded.alice.id)
    assert (coverage.image_count, coverage.sequence_count) == (14, 3)
    assert coverage.length_m == pytest.approx(
        _line_m(s1[:5]) + _line_m(s1[5:]) + _line_m(s2), rel=1e-4)
    # Merged back, it is one line again.
    await store.merge_sequences(s1[0].sequence_id, "split-part-two")
    coverage = await store.coverage_of(creator_id=seeded.alice.id)
    assert coverage.sequence_count == 2
    assert coverage.length_m == pytest.approx(_line_m(s1) + _line_m(s2), rel=1e-4)


# -- the pages -------------------------------------------------------------------------------
async def test_a_users_page_shows_the_figures_the_map_and_the_latest_sequences(
        client, seeded, built):
    r = await client.get("/app/user/alice")  # no token, no session
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert '<h1 id="profile-title">alice</h1>' in html
    assert re.search(r'data-stat="images">15<', html)
    assert re.search(r'data-stat="sequences">2<', html)
    length_m = float(re.search(r'data-length-m="([0-9.]+)"', html).group(1))
    s1, s2 = _ordered(seeded, "alice")
    assert length_m == pytest.approx(_line_m(s1) + _line_m(s2), rel=0.01)
    assert '<time datetime="2021-05-01">2021-05-01</time>' in html  # s1, 2021-05-01 10:00 UTC
    assert '<time datetime="2021-05-02">2021-05-02</time>' in html  # s2
    # The latest sequences link to the explorer at their first image, newest first.
    links = re.findall(r'href="/app\?pKey=(\d+)"', html)
    assert links == [str(s2[0].id), str(s1[0].id)]
    assert 'href="/app?creator=alice"' in html
    config = json.loads(CONFIG_SCRIPT.search(html).group(1))
    assert config["profile"]["kind"] == "user"
    assert config["profile"]["id"] == str(seeded.alice.id)
    assert config["profile"]["bbox"][0] == pytest.approx(min(im.lon for im in s1 + s2))
    assert len(config["profile"]["starts"]) == 2
    assert config["token"].startswith("MLY|")
    assert f'src="/static/dist/{MANIFEST["profile.js"]}"' in html
    # HEAD answers too; a username is case-insensitive.
    assert (await client.head("/app/user/alice")).status_code == 200
    assert (await client.get("/app/user/ALICE")).status_code == 200


async def test_the_page_works_without_a_built_front_end(client, seeded, monkeypatch, tmp_path):
    monkeypatch.setattr(web, "STATIC_ROOT", tmp_path / "nothing")
    r = await client.get("/app/user/alice")
    assert r.status_code == 200
    assert re.search(r'data-stat="images">15<', r.text)
    assert "wayview-config" not in r.text and 'id="map"' not in r.text


async def test_a_user_without_public_images(store, client, seeded, built):
    await store.create_user("dora")
    r = await client.get("/app/user/dora")
    assert r.status_code == 200
    assert re.search(r'data-stat="images">0<', r.text)
    assert "No public images yet." in r.text and 'id="map"' not in r.text
    (bob_seq,) = _ordered(seeded, "bob")
    await store.set_hidden([im.id for im in bob_seq], True)
    r = await client.get("/app/user/bob")
    assert re.search(r'data-stat="images">0<', r.text)
    assert not any(str(im.id) in r.text for im in bob_seq)


async def test_unknown_and_closed_accounts_answer_404(store, client, seeded):
    for path in ("/app/user/nobody", "/app/user/%3Cnobody%3E", "/app/org/999999999",
                 "/app/org/no-such-org", "/app/org/0"):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("text/html"), path
    carol = await store.create_user("carol")
    assert (await client.get("/app/user/carol")).status_code == 200
    assert await store.delete_user(carol.id) is not None
    r = await client.get("/app/user/carol")
    assert r.status_code == 404 and "User not found" in r.text
    # Deeper paths are not profiles.
    assert (await client.get("/app/user/alice/extra")).status_code != 200


async def test_hostile_names_come_out_escaped(store, client, built):
    name = '<svg onload=alert("u")>&'
    user = await store.create_user(name)
    org = await store.create_organization(
        "evil-org", name='<img src=x onerror=alert(1)>"', description="</script><b>desc</b>")
    await add_sequence(store, user, [(13.0, 52.0), (13.0001, 52.0)], start_ms=1_600_000_000_000,
                       organization_id=org.id)
    r = await client.get("/app/user/" + quote(name, safe=""))
    assert r.status_code == 200, r.text
    assert "<svg onload" not in r.text
    assert "&lt;svg onload=alert(&#34;u&#34;)&gt;&amp;" in r.text
    config = CONFIG_SCRIPT.search(r.text)
    assert config is not None and "</script" not in config.group(1)
    r = await client.get(f"/app/org/{org.id}")
    assert r.status_code == 200
    assert "<img src=x" not in r.text and "<b>desc</b>" not in r.text
    assert "&lt;img src=x onerror=alert(1)&gt;&#34;" in r.text
    # The contributor's link is escaped as a path segment.
    assert 'href="/app/user/%3Csvg%20onload%3Dalert%28%22u%22%29%3E%26"' in r.text


async def test_an_organizations_page_by_id_and_by_slug(client, seeded, built):
    (s2,) = [seq for seq in seeded.sequences.values()
             if seq[0].organization_id == seeded.org.id]
    by_id = await client.get(f"/app/org/{seeded.org.id}")
    by_slug = await client.get("/app/org/acme")
    for r in (by_id, by_slug):
        assert r.status_code == 200, r.text
        assert '<h1 id="profile-title">Acme Mapping</h1>' in r.text
        assert "Test org" in r.text  # the description
        assert re.search(r'data-stat="images">5<', r.text)
        assert re.search(r'data-stat="sequences">1<', r.text)
        assert f'href="/app?pKey={s2[0].id}"' in r.text
        assert f'href="/app?organization={seeded.org.id}"' in r.text
        assert '<a href="/app/user/alice">alice</a>' in r.text
    config: dict[str, Any] = json.loads(CONFIG_SCRIPT.search(by_id.text).group(1))
    assert config["profile"] == {**config["profile"], "kind": "organization",
                                 "id": str(seeded.org.id)}
    # The members list is for members (GET /{id}/members): bob, not a contributor, is absent.
    assert "bob" not in by_id.text


# -- links to the profiles -------------------------------------------------------------------
async def test_the_account_page_and_the_embed_caption_link_to_profiles(client, seeded, built):
    await sign_up(client, "erik.s")
    r = await client.get("/account")
    assert '<a href="/app/user/erik.s">Your public profile</a>' in r.text
    assert (await client.get("/app/user/erik.s")).status_code == 200
    image = seeded.images[0]
    r = await client.get(f"/embed?image_key={image.id}")
    assert r.status_code == 200
    assert '<a href="/app/user/alice" target="_blank" rel="noopener">alice</a>' in r.text
