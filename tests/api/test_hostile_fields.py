"""Hostile `fields=` selections (issue #14, items 1–2): bounded before the work, E9 not 500."""

from __future__ import annotations

import time

import pytest

from wayview.settings import GraphSettings
from wayview.testing import app_client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"OAuth {token}"}


def nested(open_: str, close: str, depth: int, leaf: str = "id") -> str:
    return open_ * depth + leaf + close * depth


def assert_e9(r, *words: str) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert isinstance(error["type"], str)
    assert error["code"] == 100
    assert set(error) >= {"message", "type", "code", "fbtrace_id"}
    for word in words:
        assert word in error["message"], error["message"]
    assert "Traceback" not in r.text


async def test_doubling_selection_with_embed_grade_token_is_e9(client, seeded):
    """`detections{image{` × 16 on an image with two detections doubles at every level."""
    image = seeded.images[7]  # two detections
    fields = nested("detections{image{", "}}", 16)
    started = time.monotonic()
    r = await client.get(f"/{image.id}?fields={fields}", headers=auth(seeded.client_token))
    assert_e9(r, "fields", "graph.fields_max_depth")
    assert time.monotonic() - started < 5


async def test_object_budget_stops_doubling_when_depth_is_allowed(settings, store, seeded):
    """Even with a generous depth limit the response's object budget ends the doubling."""
    settings = settings.model_copy(update={"graph": GraphSettings(fields_max_depth=64)})
    image = seeded.images[7]
    async with app_client(settings, store) as c:
        ok = await c.get(f"/{image.id}?fields={nested('detections{image{', '}}', 3)}",
                         headers=auth(seeded.client_token))
        assert ok.status_code == 200
        assert len(ok.json()["detections"]["data"]) == 2
        r = await c.get(f"/{image.id}?fields={nested('detections{image{', '}}', 16)}",
                        headers=auth(seeded.client_token))
    assert_e9(r, "graph.max_rendered_objects")


async def test_object_budget_counts_every_level(settings, store, seeded):
    settings = settings.model_copy(update={"graph": GraphSettings(max_rendered_objects=3)})
    image = seeded.images[7]
    async with app_client(settings, store) as c:
        # 1 image + 2 detections = 3 objects: fits.
        ok = await c.get(f"/{image.id}?fields=detections{{value}}",
                         headers=auth(seeded.client_token))
        assert ok.status_code == 200
        # + 2 images behind the detections = 5: refused.
        r = await c.get(f"/{image.id}?fields=detections{{image}}",
                        headers=auth(seeded.client_token))
        assert_e9(r, "more than 3 objects")
        # A search shares one budget over all its rows.
        r = await c.get("/images?bbox=13.40,52.51,13.41,52.53&fields=id",
                        headers=auth(seeded.client_token))
        assert_e9(r, "graph.max_rendered_objects")
        r = await c.get(f"/?ids={seeded.images[0].id},{seeded.images[1].id},"
                        f"{seeded.images[2].id},{seeded.images[3].id}",
                        headers=auth(seeded.client_token))
        assert_e9(r, "graph.max_rendered_objects")


async def test_map_feature_images_loop_is_bounded(client, seeded):
    feature = seeded.features[0]
    fields = nested("images{detections{image{", "}}}", 12)
    r = await client.get(f"/{feature.id}?fields={fields}", headers=auth(seeded.client_token))
    assert_e9(r, "graph.fields_max_depth")


@pytest.mark.parametrize("fields", [
    "{" * 1000 + "}" * 1000,
    "a{" * 1000 + "}" * 1000,
    ".".join(["detections"] * 1000),
    "detections." * 5000,
    "a" + "{" * 3000,
    "}" * 3000,
])
async def test_deep_selections_are_fast_e9(client, seeded, fields):
    started = time.monotonic()
    r = await client.get(f"/{seeded.images[0].id}", params={"fields": fields},
                         headers=auth(seeded.client_token))
    assert_e9(r, "fields")
    assert time.monotonic() - started < 2


async def test_long_and_wide_selections_are_e9(client, seeded):
    r = await client.get(f"/{seeded.images[0].id}", params={"fields": "id," * 3000},
                         headers=auth(seeded.client_token))
    assert_e9(r, "graph.fields_max_length")
    wide = ",".join(f"f{k}" for k in range(300))
    r = await client.get(f"/{seeded.images[0].id}", params={"fields": wide},
                         headers=auth(seeded.client_token))
    assert_e9(r, "graph.fields_max_names")


@pytest.mark.parametrize("fields", ["id{}", "creator{}", "make{id}", "id{{}}", "creator{,}"])
async def test_empty_and_scalar_braces_never_500(client, seeded, fields):
    r = await client.get(f"/{seeded.images[0].id}", params={"fields": fields},
                         headers=auth(seeded.client_token))
    assert r.status_code in (200, 400), r.text
    assert "error" in r.json() or r.json()["id"] == str(seeded.images[0].id)


async def test_four_deep_requests_do_not_stall_healthz(client, seeded):
    """Before: each deep selection held the event loop for 2–3 s (/healthz took 12.9 s)."""
    import asyncio

    fields = "a{" * 1000 + "}" * 1000

    async def hostile():
        return await client.get(f"/{seeded.images[0].id}", params={"fields": fields},
                                headers=auth(seeded.client_token))

    started = time.monotonic()
    results = await asyncio.gather(*(hostile() for _ in range(4)), client.get("/healthz"))
    assert all(r.status_code == 400 for r in results[:4])
    assert results[4].status_code == 200
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("error", [RecursionError, OverflowError, MemoryError])
async def test_resource_errors_are_e9_never_500(client, seeded, monkeypatch, error):
    """Whatever hostile input a limit misses: exhausted resources answer E9, no traceback."""
    from wayview.graph.service import Graph

    async def explode(self, *args, **kwargs):
        raise error("internal detail")

    monkeypatch.setattr(Graph, "node", explode)
    r = await client.get(f"/{seeded.images[0].id}", headers=auth(seeded.client_token))
    assert_e9(r, "too complex")
    assert "internal detail" not in r.text


@pytest.mark.parametrize("z", ["²", "١١", "11²", "⁹"])
async def test_non_ascii_digits_are_e9_not_500(client, seeded, z):
    """`str.isdigit()` holds for `²` and `١`, but they are no level (found by the fuzzer)."""
    r = await client.get(f"/{seeded.images[0].id}/tiles", params={"z": z},
                         headers=auth(seeded.client_token))
    assert_e9(r, "z")


async def test_finish_upload_with_a_non_ascii_organization_is_refused(client, seeded):
    r = await client.post("/finish_upload", headers=auth(seeded.user_token),
                          json={"file_handle": "x", "file_type": "zip",
                                "organization_id": "²"})
    assert 400 <= r.status_code < 500, r.text
    assert "organization_id" in r.text
