"""Acceptance: two `wayview serve` processes on one data directory and one Redis share every
app's budget exactly (issue #7: "a rate limit of 100/min holds exactly across both")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from tests.acceptance.live import LiveServer, live_server, wayview_json
from tests.redis_server import redis_server

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer, str]]:
    root = tmp_path_factory.mktemp("two-servers")
    data = root / "data"
    wayview_json("users", "create", "shared", data_dir=data, cwd=root)
    app = wayview_json("apps", "create", "both", "--owner", "shared", "--scope", "read",
                       data_dir=data, cwd=root)
    with redis_server(root) as url:
        env = {"WAYVIEW_REDIS_URL": url, "WAYVIEW_RATE_LIMIT__GRAPH_PER_MINUTE": "100",
               "WAYVIEW_RATE_LIMIT_FAIL_OPEN": "false"}
        with live_server(data, root / "a.log", cwd=root, env=env) as a, \
                live_server(data, root / "b.log", cwd=root, env=env) as b:
            yield a, b, app["client_token"]


def test_budget_holds_exactly_across_two_server_processes(servers) -> None:
    a, b, token = servers
    into_minute = time.time() % 60
    if into_minute > 45:  # all 150 requests inside one fixed window
        time.sleep(61 - into_minute)

    async def hammer() -> list[httpx.Response]:
        headers = {"Authorization": f"OAuth {token}"}
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            return await asyncio.gather(*(
                client.get(f"{(a if i % 2 else b).base_url}/images?bbox=1,1,1.001,1.001",
                           headers=headers) for i in range(150)))

    responses = asyncio.run(hammer())
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 100 and codes.count(429) == 50, sorted(codes)
    served_by = {r.url.port for r in responses if r.status_code == 200}
    assert len(served_by) == 2  # both processes answered successes
