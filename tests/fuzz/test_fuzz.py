"""Fuzzing a live `wayview serve` from its own `/openapi.json` (issue #14; schemathesis).

A demo world (120 images, map features, detections, two upload sessions) is served on loopback
and fuzzed, operation by operation, in positive and negative mode (tests/fuzz/driver.py). The run
is deterministic (fixed seeds, no example database) and bounded by a request count and a
deadline, so CI pays about two minutes. Pass: no status >= 500, no traceback (bodies and server
log), every error in its envelope, every positive answer as the document promises, every
operation exercised, the server alive and its memory bounded.

The long mode (>= 100,000 requests) is `python bench/fuzz.py` (bench/README.md).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import httpx
import pytest
from tests.fuzz.driver import KNOWN_BUGS, fuzz, scan_log
from tests.fuzz.world import FuzzTarget, fuzz_server

pytestmark = [pytest.mark.slow]

#: CI budget: requests and seconds (whichever ends first), overridable for a local look.
MAX_REQUESTS = int(os.environ.get("WAYVIEW_FUZZ_REQUESTS", "6000"))
MAX_SECONDS = float(os.environ.get("WAYVIEW_FUZZ_SECONDS", "110"))
SEED = int(os.environ.get("WAYVIEW_FUZZ_SEED", "20261206"))
#: The server (granian's main process plus its worker) stays under this, all processes summed;
#: it starts near 200 MiB.
MAX_SERVER_RSS_MIB = 768
#: Growth of the server's memory over the run (caches fill up; a leak would not stop).
MAX_SERVER_GROWTH_MIB = 192


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    with fuzz_server(tmp_path_factory.mktemp("fuzz")) as live:
        yield live


def test_fuzz_live_server_from_its_openapi_document(target: FuzzTarget) -> None:
    report = fuzz(target, max_requests=MAX_REQUESTS, max_seconds=MAX_SECONDS,
                  examples_per_round=25, base_seed=SEED)
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        alive = client.get(f"{target.base_url}/healthz").status_code
        document = client.get(f"{target.base_url}/openapi.json").json()
    summary = report.summary()
    print(summary)

    assert alive == 200, summary
    operations = {op["operationId"] for path in document["paths"].values()
                  for op in path.values()}
    assert report.requests >= min(MAX_REQUESTS, 500), summary
    assert operations <= set(report.by_operation), (
        f"operations never exercised: {operations - set(report.by_operation)}\n{summary}")
    assert report.server_errors == 0, summary
    assert report.tracebacks == 0, summary
    assert report.problems["envelope"] == 0, summary
    assert report.problems["document"] == 0, summary
    assert report.problems["no answer"] == 0, summary
    assert report.rss_peak_kib < MAX_SERVER_RSS_MIB * 1024, summary
    assert report.rss_end_kib - report.rss_start_kib < MAX_SERVER_GROWTH_MIB * 1024, summary


def test_fuzz_known_bugs_name_documented_operations() -> None:
    """Each entry that keeps requests back names an operation of the document (a typo would
    keep nothing back and fail the run instead, which is fine, but a stale name is noise)."""
    from wayview.api.openapi import openapi_document
    from wayview.settings import Settings

    document = openapi_document(Settings(_env_file=None))  # type: ignore[call-arg]
    operations = {op["operationId"] for path in document["paths"].values()
                  for op in path.values()}
    assert {bug.operation for bug in KNOWN_BUGS} <= operations


#: Bodies whose chunked framing is broken (issue #14 item 8: one of them was a 500 on /logging).
BROKEN_CHUNKS = [
    b"zz\r\nabc\r\n0\r\n\r\n",              # size not hex
    b"5\r\nab\r\n0\r\n\r\n",                 # shorter than announced
    b"ffffffffffffffffffff\r\nab\r\n",          # size past 64 bits
    b"-1\r\nx\r\n0\r\n\r\n",                 # negative size
    b"2;" + b"x" * 9000 + b"\r\nab\r\n0\r\n\r\n",  # an endless chunk extension
]


def _raw_post(base_url: str, path: str, token: str, body: bytes) -> bytes:
    host, port = base_url.removeprefix("http://").split(":")
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: OAuth {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("body", BROKEN_CHUNKS, ids=range(len(BROKEN_CHUNKS)))
def test_fuzz_broken_chunked_bodies_are_refused_not_crashed(target: FuzzTarget, body: bytes):
    """Every POST operation of the document, over a raw socket (HTTP clients cannot send
    broken framing): an answer below 500 (or the connection closed by the HTTP layer), the
    server still answering, no traceback in its log."""
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        document = client.get(f"{target.base_url}/openapi.json").json()
        for template, item in document["paths"].items():
            if "post" not in item:
                continue
            path = template.replace("{session_key}", "broken_chunks.jpg")
            answer = _raw_post(target.base_url, path, target.user_token, body)
            status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
            assert status < 500, (path, answer[:300])
            assert b"Traceback" not in answer, (path, answer[:300])
        assert client.get(f"{target.base_url}/healthz").status_code == 200
    assert scan_log(target.server.log_path.read_text(errors="replace")) == 0, \
        target.server.log_tail()
