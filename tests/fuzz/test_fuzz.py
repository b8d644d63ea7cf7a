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
from pathlib import Path

import httpx
import pytest
from tests.fuzz.driver import KNOWN_BUGS, fuzz
from tests.fuzz.world import fuzz_server

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


def test_fuzz_live_server_from_its_openapi_document(tmp_path: Path) -> None:
    with fuzz_server(tmp_path) as target:
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
