"""The lifespan path: an app built from settings opens (creates, migrates) its own store."""

from __future__ import annotations

import asyncio

import httpx

from wayview.api.app import create_app
from wayview.testing import BASE_URL


async def test_lifespan_opens_and_migrates_store(settings):
    app = create_app(settings)
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        assert (await c.get("/images?bbox=1,1,1.01,1.01")).status_code == 401
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await task
    assert settings.database_path.exists()
