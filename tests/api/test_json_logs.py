"""Structured logs (issue #19 item 3): `log_format = json` writes one JSON object per line, one
per request and one per job attempt, with the trace id, exceptions as one field, and never a
credential."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
from tests.acceptance.live import clean_env

from wayview import logs
from wayview.blobs import LocalBlobs
from wayview.pipeline.jobs import JobContext, job_handler
from wayview.pipeline.worker import JobRunner
from wayview.testing import app_client, make_settings, open_test_store

REQUIRED = {"time", "level", "logger", "message"}


@job_handler("test.json_ok")
async def _ok(ctx: JobContext, payload: dict[str, object]) -> None:
    logging.getLogger("wayview.test").info("inside job %s", ctx.job.id)


@job_handler("test.json_boom")
async def _boom(ctx: JobContext, payload: dict[str, object]) -> None:
    raise RuntimeError("boom\nsecond line")


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every record of `wayview.*` (the access log included) formatted as JSON."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    loggers = [logging.getLogger("wayview"), logs.access_log]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.INFO)
        lg.addHandler(handler)
    logs.access_log.propagate = False
    try:
        yield out
    finally:
        for lg, (level, propagate) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def parsed(out: io.StringIO) -> list[dict]:
    lines = out.getvalue().splitlines()
    objects = [json.loads(line) for line in lines]  # every line is one whole object
    for obj in objects:
        assert REQUIRED <= set(obj), obj
        assert obj["time"].endswith("Z") and "T" in obj["time"]
    return objects


async def test_json_log_one_object_per_request_with_its_fields(client, seeded, json_lines):
    image = seeded.images[0]
    r = await client.get(f"/{image.id}?fields=id&access_token={seeded.client_token}")
    assert r.status_code == 200
    r2 = await client.get(f"/maps/vtp/mly1_public/2/14/0/0?access_token={seeded.client_token}")
    [node, tile] = [o for o in parsed(json_lines) if o["logger"] == "wayview.access"]
    assert node["method"] == "GET" and node["route"] == "graph.node"
    assert node["path"] == f"/{image.id}" and node["status"] == 200
    assert node["query"] == "fields=id&access_token=[redacted]"
    assert node["trace_id"] == r.headers["x-fb-trace-id"]
    assert isinstance(node["duration_ms"], float) and node["duration_ms"] >= 0
    assert node["app_id"] == int(seeded.client_token.split("|")[1])
    assert node["level"] == "INFO"
    assert tile["route"] == "tiles.tile" and tile["trace_id"] == r2.headers["x-fb-trace-id"]


async def test_json_log_never_holds_tokens_or_secrets(client, seeded, json_lines):
    image = seeded.images[0]
    await client.get(f"/{image.id}?access_token={seeded.client_token}&fields=id",
                     headers={"Authorization": f"OAuth {seeded.user_token}"})
    await client.get(f"/{image.id}", headers={"Authorization": f"Bearer {seeded.bob_token}"})
    await client.post("/token?client_secret=sEcReT1&code=c0De2&refresh_token=rEfResH3")
    await client.post("/login", data={"password": "hUnTeR4", "email": "alice@example.org"})
    text = json_lines.getvalue()
    assert len(parsed(json_lines)) >= 4
    for secret in (seeded.client_token, seeded.client_token.split("|")[-1],
                   seeded.user_token, seeded.bob_token, "sEcReT1", "c0De2", "rEfResH3",
                   "hUnTeR4"):
        assert secret not in text, secret


async def test_json_log_records_inside_a_request_carry_its_trace_id(
        settings, store, seeded, json_lines, monkeypatch):
    """A failing handler's error record (logged by the app) has the request's trace id and
    its traceback as one field."""
    from wayview.api import graph

    async def broken(*args: object) -> None:
        raise RuntimeError("handler broke\nwith a second line")

    monkeypatch.setattr(graph, "node", broken)  # before the app builds its route table
    async with app_client(settings, store) as client:
        r = await client.get(f"/{seeded.images[0].id}",
                             headers={"Authorization": f"OAuth {seeded.client_token}"})
    assert r.status_code == 500
    trace = r.headers["x-fb-trace-id"]
    objects = parsed(json_lines)
    [error] = [o for o in objects if o["level"] == "ERROR"]
    assert error["trace_id"] == trace and error["error_type"] == "RuntimeError"
    assert "Traceback" in error["exception"] and "with a second line" in error["exception"]
    [access] = [o for o in objects if o["logger"] == "wayview.access"]
    assert access["status"] == 500 and access["trace_id"] == trace
    assert len(json_lines.getvalue().splitlines()) == len(objects)  # no stray lines


async def test_json_log_one_object_per_job_attempt(settings, store, json_lines):
    done = await store.enqueue_job("test.json_ok", {})
    failed = await store.enqueue_job("test.json_boom", {})
    runner = JobRunner(settings, store, LocalBlobs(settings.blobs_path), concurrency=1)
    assert await runner.drain() == 2
    objects = parsed(json_lines)
    ended = [o for o in objects if "outcome" in o]
    assert [(o["job_id"], o["kind"], o["outcome"], o["attempt"]) for o in ended] == [
        (done.id, "test.json_ok", "done", 1), (failed.id, "test.json_boom", "retry", 1)]
    for o in ended:
        assert o["logger"] == "wayview.jobs" and o["duration_ms"] >= 0 and o["worker"]
    assert ended[1]["level"] == "WARNING" and ended[1]["error_type"] == "RuntimeError"
    assert "second line" in ended[1]["exception"]
    [inside] = [o for o in objects if o["logger"] == "wayview.test"]
    assert inside["job_id"] == done.id and inside["kind"] == "test.json_ok"


def test_json_formatter_keeps_an_exception_on_one_line():
    try:
        raise ValueError("a\nb")
    except ValueError:
        record = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "failed %s",
                                                   ("here",), sys.exc_info())
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["message"] == "failed here" and obj["error_type"] == "ValueError"
    assert obj["exception"].startswith("Traceback") and "a\nb" in obj["exception"]


def test_configure_switches_the_format_of_our_handlers_only():
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "wayview", False)]
    assert not ours  # pytest owns the root logger here: configure adds no second handler
    saved_level = root.level
    try:
        logs.configure("info", "json")
        batching = [h for h in logs.access_log.handlers if isinstance(h, logs.BatchingHandler)]
        assert batching and isinstance(batching[0].formatter, logs.JsonFormatter)
        logs.configure("info", "plain")
        assert not isinstance(batching[0].formatter, logs.JsonFormatter)
    finally:
        for h in list(logs.access_log.handlers):
            if isinstance(h, logs.BatchingHandler):
                logs.access_log.removeHandler(h)
                h.close()
        logs.access_log.propagate = True
        root.setLevel(saved_level)


def test_json_log_of_a_real_worker_process(tmp_path):
    """`wayview worker --drain` with WAYVIEW_LOG_FORMAT=json: its records are JSON lines."""
    settings = make_settings(tmp_path)

    async def enqueue() -> None:
        async with open_test_store(settings) as store:
            await store.enqueue_job("no.such.kind", {})

    asyncio.run(enqueue())
    env = clean_env(WAYVIEW_LOG_FORMAT="json")
    done = subprocess.run([sys.executable, "-m", "wayview", "worker", "--drain",
                           "--data-dir", str(tmp_path / "data")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[-1] == "ran 1 jobs"  # the command's own summary, not a log record
    records = [json.loads(line) for line in lines[:-1]]
    [parked] = [r for r in records if r.get("outcome") == "parked"]
    assert parked["kind"] == "no.such.kind" and parked["level"] == "ERROR"
    for record in records:
        assert REQUIRED <= set(record)
