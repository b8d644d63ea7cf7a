"""The upload service during an outage (issue #22): any service that does not answer (the
store, the blob store, a fail-closed limiter) is a retriable 503 with Retry-After in the
upload envelope, never a 500 with a traceback."""

from __future__ import annotations

import logging

import pytest

from wayview.errors import BlobsUnavailable, LimiterUnavailable, ServiceUnavailable
from wayview.testing import app_client, make_settings


@pytest.mark.parametrize("error", [BlobsUnavailable, LimiterUnavailable])
async def test_an_unavailable_service_is_a_retriable_503(
        tmp_path, store, seeded, monkeypatch: pytest.MonkeyPatch, caplog,
        error: type[ServiceUnavailable]) -> None:
    async def down(*args: object, **kwargs: object) -> None:
        raise error()

    monkeypatch.setattr(store, "save_upload_session", down)
    async with app_client(make_settings(tmp_path), store) as client:
        r = await client.post("/upload/down", content=b"a" * 1000, headers={
            "Authorization": f"OAuth {seeded.user_token}", "Offset": "0"})
    assert r.status_code == 503, r.text
    assert r.json()["debug_info"]["retriable"] is True
    assert r.headers["retry-after"] == str(error.retry_after_s)
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
