"""bench/fuzz.py: the long fuzzing run (issue #14): >= 100,000 requests against a live wayview.

The same fuzzer as the CI test (tests/fuzz/test_fuzz.py, tests/fuzz/driver.py) with a bigger
budget: a demo world served by `wayview serve` on 127.0.0.1 only, fuzzed from its own
`/openapi.json` by schemathesis in positive and negative mode. The run is bounded in requests
and minutes and stops by itself; `--jobs` generators run side by side (request generation costs
more CPU than answering). It prints the counts (requests, responses by status class, >= 500,
tracebacks in bodies and in the server log, envelope and document mismatches, peak server RSS)
and exits 1 when any rule was broken.

    python bench/fuzz.py                                  # 100,000 requests, at most 60 min
    python bench/fuzz.py --requests 5000 --minutes 5      # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fuzz.driver import Fuzzer, Report, merge, scan_log  # noqa: E402
from tests.fuzz.world import FuzzTarget, fuzz_server  # noqa: E402

#: Set in the parent before the generators fork (a live server cannot be pickled).
_TARGET: FuzzTarget | None = None
_DOCUMENT: dict[str, Any] = {}
#: Limits that fail the run (MiB): all server processes together, and growth over the run.
MAX_SERVER_RSS_MIB = 1024
MAX_SERVER_GROWTH_MIB = 384


def _job(args: tuple[int, int, float, int, int]) -> Report:
    index, requests, seconds, examples, seed = args
    assert _TARGET is not None
    report = Report()

    def progress(r: Report) -> None:
        print(f"  [job {index}] {r.requests:>7} requests, {r.elapsed_s:5.0f} s, "
              f">= 500: {r.server_errors}, findings: {sum(r.problems.values())}", flush=True)

    Fuzzer(_TARGET, _DOCUMENT, report).run(
        max_requests=requests, max_seconds=seconds, examples_per_round=examples,
        base_seed=seed, progress=progress, first_operation=index * 7)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000, help="request budget")
    parser.add_argument("--minutes", type=float, default=60.0, help="time budget")
    parser.add_argument("--jobs", type=int, default=3, help="generator processes")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--examples", type=int, default=200,
                        help="examples per operation, mode and round")
    parser.add_argument("--images", type=int, default=120, help="demo world size")
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--data-dir", type=Path, default=REPO / "bench" / ".data" / "fuzz",
                        help="world folder (built once, reused)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--postgres", action="store_true",
                        help="serve the world from a throwaway PostgreSQL + PostGIS cluster "
                        "(Debian postgresql-15, postgresql-15-postgis-3) instead of SQLite")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        database_url = ""
        if args.postgres:
            from tests.pg_server import pg_server

            database_url = stack.enter_context(pg_server())
            # A fresh database each time: the world folder must be fresh too.
            args.data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="wayview-fuzz-pg-")))
        return _run(args, database_url)


def _run(args: argparse.Namespace, database_url: str) -> int:
    global _TARGET, _DOCUMENT
    args.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"building/reusing the demo world in {args.data_dir} "
          f"({'PostgreSQL' if database_url else 'SQLite'}) …", flush=True)
    env = {"WAYVIEW_WORKERS": str(args.workers)}
    with fuzz_server(args.data_dir, images=args.images, env=env,
                     database_url=database_url) as target:
        import httpx

        with httpx.Client(trust_env=False, timeout=30.0) as client:
            _DOCUMENT = client.get(f"{target.base_url}/openapi.json").json()
        _TARGET = target
        print(f"fuzzing {target.base_url}: {args.requests:,} requests or {args.minutes:g} min, "
              f"{args.jobs} generator(s), {args.workers} server worker(s)", flush=True)
        started = time.monotonic()
        first = Report()
        first.sample_memory(target)
        seconds = args.minutes * 60
        shares = [args.requests // args.jobs + (1 if i < args.requests % args.jobs else 0)
                  for i in range(args.jobs)]
        jobs = [(i, shares[i], seconds, args.examples, args.seed + 7_919 * i)
                for i in range(args.jobs)]
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            reports = pool.map(_job, jobs)
        report = merge([first, *reports])
        report.sample_memory(target)
        report.elapsed_s = time.monotonic() - started
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            alive = client.get(f"{target.base_url}/healthz").status_code == 200
        report.log_tracebacks = scan_log(target.server.log_path.read_text(errors="replace"))

    print()
    print(report.summary())
    failures = []
    for name, count in (("responses >= 500", report.server_errors),
                        ("tracebacks", report.tracebacks),
                        ("envelope mismatches", report.problems["envelope"]),
                        ("document mismatches", report.problems["document"]),
                        ("requests without an answer", report.problems["no answer"])):
        if count:
            failures.append(f"{count} {name}")
    if not alive:
        failures.append("the server stopped answering /healthz")
    if report.rss_peak_kib > MAX_SERVER_RSS_MIB * 1024:
        failures.append(f"server RSS peaked at {report.rss_peak_kib // 1024} MiB")
    if report.rss_end_kib - report.rss_start_kib > MAX_SERVER_GROWTH_MIB * 1024:
        failures.append(f"server RSS grew by {(report.rss_end_kib - report.rss_start_kib) // 1024} MiB")
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=2))
    print("\nFAILED: " + "; ".join(failures) if failures else "\nPASSED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
