"""Answers the fuzzer once got wrong, pinned in-process (fast; the live run is test_fuzz.py)."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from wayview.testing import Seeded


@pytest.mark.parametrize("z,x,y", [
    ("²", "0", "0"),        # str.isdigit() but int() refuses it: was a 500 (ValueError)
    ("1", "\u0661", "0"),   # Arabic-Indic one: int() reads 1, so it served tile 1/1/0
    ("1", "0", "\u00b9"),
    ("\uff11", "0", "0"),   # full-width one
    ("14", "0" * 6, "0"),
])
async def test_tiles_non_ascii_or_overlong_digits_are_e15(client, seeded: Seeded, z, x, y):
    path = "/".join(quote(part) for part in ("mly1_public", "2", z, x, y))
    r = await client.get(f"/maps/vtp/{path}?access_token={seeded.client_token}")
    assert r.status_code == 404, r.text
    assert r.json()["error"]["message"] == "Unsupported tile request"
