"""Acceptance: /metrics of a real `wayview serve --workers 2` (issue #19 items 2-3).

Each granian worker process counts its own requests; whichever worker answers a scrape
reports the sum of both (prometheus_client's multiprocess files in a folder `serve` made).
The test reads each worker's files on their own to show that both served requests and that
the scrape is their sum, and that the folder is gone once the server stops. With
`log_format = json` the access records of the server's log are JSON lines.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from tests.acceptance.live import LiveServer, live_server

pytestmark = [pytest.mark.slow]

TOKEN = "live-metrics-token-6f1d0c2a9b8e7d6c"
REQUESTS = 80
#: The metric folders the tests found (checked to be gone after the server stops).
FOLDERS: list[Path] = []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("metrics-live")
    env = {"WAYVIEW_WORKERS": "2", "WAYVIEW_METRICS__ENABLED": "true",
           "WAYVIEW_METRICS__BEARER_TOKEN": TOKEN, "WAYVIEW_LOG_FORMAT": "json",
           "WAYVIEW_JOBS__SERVE_WORKERS": "0"}
    with live_server(root / "data", root / "serve.log", cwd=root, env=env) as live:
        yield live
    for folder in FOLDERS:  # `serve` removes its metric files when it stops
        assert not folder.exists(), folder


def scrape(server: LiveServer) -> str:
    r = httpx.get(f"{server.base_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
                  trust_env=False, timeout=10)
    assert r.status_code == 200, r.text
    return r.text


def healthz_count(families: list) -> float:
    return sum(s.value for f in families for s in f.samples
               if s.name == "wayview_http_requests_total"
               and s.labels.get("route") == "graph.healthz")


def worker_pids(text: str) -> set[int]:
    return {int(s.labels["pid"]) for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "process_resident_memory_bytes"}


def multiproc_dir(pids: set[int]) -> Path:
    """The folder `serve` made for its workers' metric files (a fresh temporary folder)."""
    [folder] = [d for d in Path(tempfile.gettempdir()).glob("wayview-metrics-*")
                if all(list(d.glob(f"*_{pid}.db")) for pid in pids)]
    return folder


def files_of(folder: Path, pid: int) -> list:
    """The metric families one process wrote, read from its own files only."""
    with tempfile.TemporaryDirectory() as alone:
        for f in folder.glob(f"*_{pid}.db"):
            os.symlink(f, Path(alone) / f.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=alone)
        return list(registry.collect())


def test_metrics_sum_the_requests_of_both_worker_processes(server: LiveServer) -> None:
    assert httpx.get(f"{server.base_url}/metrics", trust_env=False).status_code == 401
    before = healthz_count(list(text_string_to_metric_families(scrape(server))))
    for _ in range(REQUESTS):  # a new connection each time: the kernel spreads them
        assert httpx.get(f"{server.base_url}/healthz", trust_env=False).status_code == 200
    texts = [scrape(server) for _ in range(6)]  # answered by either worker
    totals = {healthz_count(list(text_string_to_metric_families(t))) for t in texts}
    assert totals == {before + REQUESTS}, totals
    pids = worker_pids(texts[-1])
    assert len(pids) == 2, pids
    folder = multiproc_dir(pids)
    FOLDERS.append(folder)
    per_worker = {pid: healthz_count(files_of(folder, pid)) for pid in pids}
    assert all(count > 0 for count in per_worker.values()), per_worker
    assert sum(per_worker.values()) == before + REQUESTS
    # The latency histogram is summed too.
    counts = [s.value for f in text_string_to_metric_families(texts[-1]) for s in f.samples
              if s.name == "wayview_http_request_duration_seconds_count"
              and s.labels.get("route") == "graph.healthz"]
    assert counts == [before + REQUESTS]


def test_json_access_records_of_the_live_server(tmp_path: Path) -> None:
    env = {"WAYVIEW_LOG_FORMAT": "json", "WAYVIEW_METRICS__ENABLED": "true",
           "WAYVIEW_METRICS__BEARER_TOKEN": TOKEN, "WAYVIEW_JOBS__SERVE_WORKERS": "0"}
    with live_server(tmp_path / "data", tmp_path / "serve.log", cwd=tmp_path, env=env) as live:
        trace = httpx.get(f"{live.base_url}/healthz?access_token=MLY|1|sEcReT",
                          headers={"Authorization": "OAuth MLY|1|hEaDeRsEcReT"},
                          trust_env=False).headers["x-fb-trace-id"]
        assert httpx.get(f"{live.base_url}/metrics", trust_env=False,
                         headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    # Read once the server has stopped: the access log is written in batches.
    text = live.log_path.read_text()
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    [record] = [o for o in records if o.get("trace_id") == trace]
    assert record["logger"] == "wayview.access" and record["route"] == "graph.healthz"
    assert record["status"] == 200 and record["query"] == "access_token=[redacted]"
    assert {o["logger"] for o in records} >= {"wayview.access", "_granian"}  # granian too
    for secret in ("sEcReT", "hEaDeRsEcReT", TOKEN):
        assert secret not in text
    # The one line that is not JSON: the command's banner.
    others = [line for line in text.splitlines() if not line.startswith("{")]
    assert len(others) == 1 and others[0].startswith("wayview "), others
