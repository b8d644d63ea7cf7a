"""Acceptance: several processes on one store (issue #7). Two `wayview serve` processes on one
data directory and one Redis share every app's budget exactly ("a rate limit of 100/min holds
exactly across both"); an upload started on one process is resumed on the other; two
`wayview worker` processes run every job exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.acceptance.live import (
    LiveServer,
    clean_env,
    create_uploader,
    live_server,
    wayview_json,
)
from tests.api.test_upload_ingest import photo, zip_of
from tests.pg_server import pg_server
from tests.redis_server import redis_server

from wayview.model.entities import Job
from wayview.settings import Settings
from wayview.store import open_store

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


# -- uploads and jobs across processes (issue #7) -------------------------------------------


@dataclass
class Cluster:
    """Two `serve` processes without job threads on one store (SQLite in the shared data
    directory, or one PostgreSQL database), and an uploader."""

    a: LiveServer
    b: LiveServer
    root: Path
    data: Path
    token: str
    env: dict[str, str]  # the store setting every process gets

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"OAuth {self.token}"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp(f"two-servers-jobs-{request.param}")
    data = root / "data"
    with contextlib.ExitStack() as stack:
        store_env = {}
        if request.param == "postgres":
            store_env["WAYVIEW_DATABASE_URL"] = stack.enter_context(pg_server())
        _, token = create_uploader("multi", data_dir=data, cwd=root, env=store_env)
        # Only the worker processes of the test run jobs.
        env = {**store_env, "WAYVIEW_JOBS__SERVE_WORKERS": "0"}
        a = stack.enter_context(live_server(data, root / "a.log", cwd=root, env=env))
        b = stack.enter_context(live_server(data, root / "b.log", cwd=root, env=env))
        yield Cluster(a, b, root, data, token, store_env)


def test_an_upload_started_on_one_process_is_resumed_on_the_other(cluster: Cluster) -> None:
    body = zip_of([(f"{k}.jpg", photo(100 + k)) for k in range(3)])
    half = len(body) // 2
    key = "mly_tools_two_hosts.zip"
    with httpx.Client(timeout=60, trust_env=False) as http:
        r = http.post(f"{cluster.a.base_url}/upload/{key}", content=body[:half],
                      headers={**cluster.auth, "Offset": "0"})
        assert r.status_code == 200, r.text
        r = http.get(f"{cluster.b.base_url}/upload/{key}", headers=cluster.auth)
        assert r.json() == {"offset": half}
        r = http.post(f"{cluster.b.base_url}/upload/{key}", content=body[half:],
                      headers={**cluster.auth, "Offset": str(half)})
        assert r.status_code == 200, r.text
        handle = r.json()["h"]
        r = http.get(f"{cluster.a.base_url}/upload/{key}", headers=cluster.auth)
        assert r.json() == {"offset": len(body)}
        r = http.post(f"{cluster.a.base_url}/finish_upload", headers=cluster.auth,
                      json={"file_handle": handle, "file_type": "zip"})
        assert r.status_code == 200, r.text


def test_two_worker_processes_run_every_job_exactly_once(cluster: Cluster) -> None:
    uploads = 8
    with httpx.Client(timeout=60, trust_env=False) as http:
        for n in range(uploads):
            server = cluster.a if n % 2 else cluster.b
            body = zip_of([(f"{k}.jpg", photo(200 + 10 * n + k)) for k in range(2)])
            r = http.post(f"{server.base_url}/upload/mly_tools_jobs_{n}.zip", content=body,
                          headers={**cluster.auth, "Offset": "0"})
            assert r.status_code == 200, r.text
            r = http.post(f"{server.base_url}/finish_upload", headers=cluster.auth,
                          json={"file_handle": r.json()["h"], "file_type": "zip"})
            assert r.status_code == 200, r.text
    logs = [cluster.root / f"worker-{n}.log" for n in range(2)]
    workers = []
    for log in logs:
        with log.open("wb") as out:
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "wayview", "worker", "--drain", "--concurrency", "2",
                 "--data-dir", str(cluster.data)],
                cwd=cluster.root, env=clean_env(**cluster.env), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL))
    for worker in workers:
        assert worker.wait(timeout=300) == 0, [log.read_text()[-3000:] for log in logs]

    done = [int(m.group(1)) for log in logs
            for m in re.finditer(r"job (\d+) \(ingest\.upload\) done by", log.read_text())]
    jobs = _jobs(cluster)
    assert len(jobs) == uploads + 1  # the earlier test's finish too
    assert sorted(done) == sorted(j.id for j in jobs)  # each job finished once, in total
    assert all(j.state == "done" and j.attempts == 1 for j in jobs), jobs
    per_worker = [len(re.findall(r"\(ingest\.upload\) done by", log.read_text()))
                  for log in logs]
    assert sum(per_worker) == uploads + 1
    with httpx.Client(timeout=60, trust_env=False) as http:
        images = http.get(f"{cluster.a.base_url}/images",
                          params={"bbox": "13.18,55.69,13.21,55.72", "fields": "id,sequence"},
                          headers=cluster.auth).json()["data"]
    assert len(images) == 2 * uploads + 3
    assert len({im["sequence"] for im in images}) == uploads + 1


def _jobs(cluster: Cluster) -> list[Job]:
    async def read() -> list[Job]:
        store = open_store(Settings(
            _env_file=None, data_dir=cluster.data,
            database_url=cluster.env.get("WAYVIEW_DATABASE_URL", "")))
        await store.open()
        try:
            return await store.list_jobs(limit=1000)
        finally:
            await store.close()

    return asyncio.run(read())
