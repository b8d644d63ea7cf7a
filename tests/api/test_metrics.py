"""Prometheus metrics at /metrics (issue #19 item 2): the switch, the token and allow-list, and
what the counters, histograms and gauges show after real requests, uploads and jobs.

The metric objects are global to the test process, so every check compares a value before
and after (other tests may have counted too).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from wayview import metrics
from wayview.api.app import create_app
from wayview.blobs import LocalBlobs
from wayview.pipeline.jobs import JobContext, job_handler
from wayview.pipeline.worker import JobRunner
from wayview.settings import Settings
from wayview.store import Store
from wayview.testing import BASE_URL, Seeded
from wayview.tiles.tilemath import lnglat_to_tile

TOKEN = "s3cr3t-metrics-token-0123456789abcdef"


@job_handler("test.metrics_ok")
async def _ok(ctx: JobContext, payload: dict[str, object]) -> None:
    return None


@job_handler("test.metrics_boom")
async def _boom(ctx: JobContext, payload: dict[str, object]) -> None:
    raise RuntimeError("boom")


def with_metrics(settings: Settings, **metric_values: Any) -> Settings:
    values = {"enabled": True, **metric_values}
    return settings.model_copy(update={
        "metrics": settings.metrics.model_copy(update=values)})


@asynccontextmanager
async def client_for(settings: Settings, store: Store, *, peer: str = "127.0.0.1"
                     ) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, store=store, blobs=LocalBlobs(settings.blobs_path))
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


async def scrape(client: httpx.AsyncClient, token: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = await client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"OAuth {token}"}


# -- the switch and who may scrape -------------------------------------------------------------

async def test_metrics_disabled_the_path_does_not_exist(client, seeded: Seeded):
    """Off (the default): /metrics answers exactly as an unknown path does (the Graph API's
    "unsupported get request", 400, with a token; 401 without)."""
    for headers in ({}, auth(seeded.client_token)):
        r = await client.get("/metrics", headers=headers)
        other = await client.get("/metricz", headers=headers)
        assert r.status_code == other.status_code
        error, other_error = r.json()["error"], other.json()["error"]
        assert (error["type"], error["code"]) == (other_error["type"], other_error["code"])
        assert "wayview_" not in r.text
    assert (await client.get("/metrics", headers=auth(seeded.client_token))).status_code == 400
    assert (await client.get("/metrics")).status_code == 401


async def test_metrics_bearer_token_is_required_when_set(settings, store):
    async with client_for(with_metrics(settings, bearer_token=TOKEN), store) as client:
        missing = await client.get("/metrics")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in missing.text
        for wrong in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"OAuth {TOKEN}", TOKEN):
            assert (await client.get("/metrics", headers={"Authorization": wrong})
                    ).status_code == 401
        ok = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "wayview_build_info" in ok.text


async def test_metrics_allow_list_refuses_other_addresses(settings, store):
    allowed = with_metrics(settings, allow_from="192.0.2.0/24, 2001:db8::/32")
    for peer, status in (("192.0.2.7", 200), ("198.51.100.1", 403), ("2001:db8::5", 200),
                         ("::ffff:192.0.2.9", 200), ("127.0.0.1", 403)):
        async with client_for(allowed, store, peer=peer) as client:
            assert (await client.get("/metrics")).status_code == status, peer
    both = with_metrics(settings, allow_from="192.0.2.0/24", bearer_token=TOKEN)
    async with client_for(both, store, peer="198.51.100.1") as client:  # the address first
        r = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 403
    async with client_for(both, store, peer="192.0.2.1") as client:
        assert (await client.get("/metrics")).status_code == 401


def test_metrics_allow_from_is_checked_when_settings_load():
    with pytest.raises(ValueError, match="10.0.0/33"):
        Settings(_env_file=None, metrics={"allow_from": "10.0.0.0/8,10.0.0/33"})  # type: ignore[call-arg]


# -- what the metrics show -----------------------------------------------------------------------

async def test_metrics_count_requests_by_route_name_never_by_path(settings, store, seeded):
    async with client_for(with_metrics(settings), store) as client:
        before = await scrape(client)
        image = seeded.images[0]
        for _ in range(3):
            assert (await client.get(f"/{image.id}?fields=id",
                                     headers=auth(seeded.client_token))).status_code == 200
        assert (await client.get("/999999999999", headers=auth(seeded.client_token))
                ).status_code == 400
        assert (await client.get(f"/{image.id}")).status_code == 401
        unknown = await client.get("/no/such/path", headers=auth(seeded.client_token))
        after = await scrape(client)
        r = await client.get("/metrics")
    name = "wayview_http_requests_total"
    assert value(after, name, route="graph.node", method="GET", status="200") - \
        value(before, name, route="graph.node", method="GET", status="200") == 3
    assert value(after, name, route="graph.node", method="GET", status="400") - \
        value(before, name, route="graph.node", method="GET", status="400") == 1
    assert value(after, name, route="graph.node", method="GET", status="401") - \
        value(before, name, route="graph.node", method="GET", status="401") == 1
    assert value(after, name, route="unmatched", method="GET", status=str(unknown.status_code)) - \
        value(before, name, route="unmatched", method="GET", status=str(unknown.status_code)) == 1
    hist = "wayview_http_request_duration_seconds_count"
    assert value(after, hist, route="graph.node") - value(before, hist, route="graph.node") == 5
    assert value(after, "wayview_http_request_duration_seconds_bucket", route="graph.node",
                 le="+Inf") >= 5
    # No label carries a path or an id.
    label_values = {v for (_, labels) in after for k, v in labels if k not in ("le", "version")}
    assert not any(str(image.id) in v or "999999999999" in v or "/" in v
                   for v in label_values), label_values
    # (In a label, that is: a sample's value such as 2.8999999999999997 may hold the digits.)
    leaks = [line for line in r.text.splitlines() if "/no/such/path" in line
             or '"999999999999' in line or "999999999999\"" in line]
    assert not leaks, leaks
    routes = {dict(labels).get("route") for (n, labels) in after if n == name}
    assert all(route and "/" not in route for route in routes), routes


async def test_metrics_tile_cache_hits_and_misses(settings, store, seeded):
    async with client_for(with_metrics(settings), store) as client:
        before = await scrape(client)
        im = seeded.images[0]
        x, y = lnglat_to_tile(im.lon, im.lat, 14)
        for _ in range(3):
            r = await client.get(f"/maps/vtp/mly1_public/2/14/{x}/{y}",
                                 headers=auth(seeded.client_token))
            assert r.status_code == 200 and r.content
        empty = await client.get("/maps/vtp/mly1_public/2/14/0/0",
                                 headers=auth(seeded.client_token))
        assert empty.status_code in (200, 204)
        after = await scrape(client)
    name = "wayview_tile_cache_lookups_total"
    assert value(after, name, result="miss") - value(before, name, result="miss") == 1
    assert value(after, name, result="hit") - value(before, name, result="hit") == 2
    assert value(after, name, result="empty") - value(before, name, result="empty") == 1
    renders = "wayview_tile_render_duration_seconds_count"
    assert value(after, renders) - value(before, renders) == 1
    req = "wayview_http_requests_total"
    assert value(after, req, route="tiles.tile", method="GET", status="200") - \
        value(before, req, route="tiles.tile", method="GET", status="200") >= 3


async def test_metrics_count_rate_limit_refusals_by_budget(settings, store, seeded):
    limited = with_metrics(settings).model_copy(update={
        "rate_limit": settings.rate_limit.model_copy(update={"graph_per_minute": 1})})
    async with client_for(limited, store) as client:
        before = await scrape(client)
        statuses = [(await client.get(f"/{seeded.images[0].id}",
                                      headers=auth(seeded.client_token))).status_code
                    for _ in range(5)]
        after = await scrape(client)  # /metrics is never rate limited
    assert statuses.count(429) >= 2, statuses  # even if a minute ends meanwhile
    name = "wayview_rate_limit_refusals_total"
    assert value(after, name, budget="graph") - value(before, name, budget="graph") == \
        statuses.count(429)
    req = "wayview_http_requests_total"
    assert value(after, req, route="graph.node", method="GET", status="429") - \
        value(before, req, route="graph.node", method="GET", status="429") == statuses.count(429)


async def test_metrics_count_upload_bytes(settings, store, seeded):
    async with client_for(with_metrics(settings), store) as client:
        before = await scrape(client)
        body = b"\xff\xd8" + b"x" * 70_000
        r = await client.post("/upload/mly_tools_metrics.jpg", content=body,
                              headers={**auth(seeded.user_token), "Offset": "0"})
        assert r.status_code == 200, r.text
        r = await client.post("/upload/mly_tools_metrics.jpg", content=b"y" * 1000,
                              headers={**auth(seeded.user_token), "Offset": str(len(body))})
        assert r.status_code == 200, r.text
        after = await scrape(client)
    name = "wayview_upload_received_bytes_total"
    assert value(after, name) - value(before, name) == len(body) + 1000


async def test_metrics_job_queue_gauges_come_from_the_store(settings, store, seeded):
    await store.enqueue_job("test.metrics_ok", {"n": 1})
    await store.enqueue_job("test.metrics_ok", {"n": 2})
    await store.enqueue_job("test.metrics_ok", {"n": 3}, delay_s=3600)
    await store.enqueue_job("test.metrics_boom", {})
    await store.claim_job("somebody", lease_s=60, kinds=("test.metrics_boom",))
    time.sleep(0.05)
    async with client_for(with_metrics(settings), store) as client:
        samples = await scrape(client)
    assert value(samples, "wayview_jobs", kind="test.metrics_ok", state="queued") == 3
    assert value(samples, "wayview_jobs_due", kind="test.metrics_ok") == 2
    assert value(samples, "wayview_jobs", kind="test.metrics_boom", state="running") == 1
    assert value(samples, "wayview_jobs", kind="test.metrics_boom", state="queued") == 0
    assert 0.04 <= value(samples, "wayview_jobs_oldest_due_age_seconds",
                         kind="test.metrics_ok") < 60
    assert value(samples, "wayview_jobs_oldest_due_age_seconds", kind="test.metrics_boom") == 0
    # Process metrics of this (single) process, and the version.
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "wayview_build_info", version=metrics.__version__) == 1


async def test_metrics_job_runs_and_pipeline_stages(settings, store, seeded):
    enabled = with_metrics(settings)
    async with client_for(enabled, store) as client:
        before = await scrape(client)
        await store.enqueue_job("test.metrics_ok", {"n": 1})
        await store.enqueue_job("test.metrics_boom", {})
        runner = JobRunner(enabled, store, LocalBlobs(enabled.blobs_path), concurrency=1)
        assert await runner.drain() == 2
        with metrics.stage("blur"):
            time.sleep(0.01)
        after = await scrape(client)
    runs = "wayview_job_runs_total"
    assert value(after, runs, kind="test.metrics_ok", outcome="done") - \
        value(before, runs, kind="test.metrics_ok", outcome="done") == 1
    assert value(after, runs, kind="test.metrics_boom", outcome="retry") - \
        value(before, runs, kind="test.metrics_boom", outcome="retry") == 1
    durations = "wayview_job_duration_seconds_count"
    assert value(after, durations, kind="test.metrics_ok") - \
        value(before, durations, kind="test.metrics_ok") == 1
    stage = "wayview_pipeline_stage_duration_seconds_sum"
    assert value(after, stage, stage="blur") - value(before, stage, stage="blur") >= 0.01


async def test_metrics_worker_serves_its_own_endpoint(settings):
    """`wayview worker` with metrics.worker_port: the same token rules, on its own port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scrape_settings = with_metrics(settings, bearer_token=TOKEN, worker_port=port).metrics
    server = metrics.start_worker_server(scrape_settings)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as c:
            assert (await c.get("/metrics")).status_code == 401
            assert (await c.get("/other", headers={"Authorization": f"Bearer {TOKEN}"})
                    ).status_code == 404
            r = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 200 and "wayview_job_runs" in r.text
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_docs_and_dashboard_name_exactly_the_metrics_there_are():
    import json
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    metrics.activate()
    assert metrics._m is not None
    families = {f.name for f in metrics._m.registry.collect()}
    families |= {f.name for f in metrics.JobQueueGauges().collect()} | {"wayview_build_info"}
    suffix = re.compile(r"_(total|bucket|sum|count)$")

    def named(text: str) -> set[str]:
        return {suffix.sub("", m) for m in re.findall(r"wayview_[a-z_]+[a-z]", text)}

    page = (docs / "monitoring.md").read_text()
    documented = named(page)
    assert families <= documented, families - documented
    assert documented <= families, documented - families
    dashboard = json.loads((docs / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert named(exprs) <= families, named(exprs) - families
    assert len(named(exprs)) >= 10
