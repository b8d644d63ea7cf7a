"""bench/graph.py: Graph API throughput and latency on a generated store, plus import throughput.

    python bench/graph.py [--images 1000000] [--data-dir bench/.data/graph-1m] [--workers 2]
                          [--duration 10] [--connections 64] [--threads 2] [--write-docs]

1. Generates (once) a store of N images of metadata only in ~N/200 street-following sequences over
   a 30 × 30 km city (bench/world.py), through `SqliteStore.reserve_ids` + `insert_sequence`.
2. Starts `wayview serve --workers W` on a free loopback port and drives it with wrk over many
   different real paths per endpoint (bench/targets.py, bench/loadgen.py): first saturated (no think
   time), then paced at a fixed offered rate for the latency targets.
3. Times `wayview import` of 40 photos of 4000×3000 against the bare Pillow codec
   (bench/importbench.py).
4. Prints one markdown table; `--write-docs` also replaces the "Graph API (bench/graph.py)"
   section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import importbench  # noqa: E402
import loadgen  # noqa: E402
import targets as tg  # noqa: E402
import world  # noqa: E402
from cpumeter import OTHER_LOAD_LIMIT_CORES, CpuMeter  # noqa: E402
from machine import cpu_model, memory_gib, sh  # noqa: E402
from serverproc import ServerProcess, free_port  # noqa: E402

DOC = REPO / "docs" / "performance.md"
SECTION = "## Graph API (bench/graph.py)"
START, END = "<!-- bench/graph.py:start -->", "<!-- bench/graph.py:end -->"
NODE_RPS_TARGET = 3000.0
NODE_P99_TARGET_MS = 10.0
BBOX200_P50_TARGET_MS = 15.0
IMPORT_RATIO_TARGET = 0.70
PACED_FRACTION = 0.5  # latency rows without a target rate are paced at half the capacity


@dataclass
class Scenario:
    """One endpoint under test: its paths, a target (if any) and what wrk measured."""

    key: str
    label: str
    paths: list[tg.Target]
    auth: bool = True
    paced_rate: float | None = None  # fixed offered rate, else PACED_FRACTION × capacity
    saturated: loadgen.WrkResult | None = None
    paced: loadgen.WrkResult | None = None
    target: str = "—"
    verdict: str = ""
    notes: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # of the saturated run
    paced_cpu: dict[str, float] = field(default_factory=dict)
    sat_rps: list[float] = field(default_factory=list)  # every saturated run, sorted


def log(msg: str) -> None:
    """Progress to stderr (the table goes to stdout)."""
    print(msg, file=sys.stderr, flush=True)


class Server(ServerProcess):
    """`wayview serve` in its own process group; always stopped on exit."""

    def __init__(self, data_dir: Path, workers: int, log_level: str,
                 env: dict[str, str] | None = None, factory: str | None = None) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / ("server.log" if factory is None else "server-bypass.log")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WAYVIEW_")}
        self.env["WAYVIEW_LOG_LEVEL"] = log_level
        self.env.update(env or {})
        self.factory = factory

    def __enter__(self) -> Server:
        cmd = [sys.executable, "-m", "wayview", "serve", "--data-dir", str(self.data_dir),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]
        if self.factory is not None:  # the same app through granian directly (bench only)
            self.env["WAYVIEW_DATA_DIR"] = str(self.data_dir)
            self.env["PYTHONPATH"] = str(BENCH)
            cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
                   "--host", "127.0.0.1", "--port", str(self.port), "--workers",
                   str(self.workers), "--no-access-log", "--log-level", "warning",
                   self.factory]
        self.launch(cmd, cwd=self.data_dir, env=self.env, health="/healthz")
        return self


# -- scenarios ---------------------------------------------------------------------------------


def bboxes(pts: tg.Points, rng: np.random.Generator, rows: int) -> list[tg.Target]:
    """200 bboxes of `rows` rows, or none (logged) when the store is too sparse for them."""
    try:
        return tg.bbox_targets(pts, rng, 200, rows)
    except RuntimeError as exc:
        log(f"skipping the {rows}-row bbox endpoint: {exc} (store too sparse for the "
            f"{tg.MAX_BBOX_AREA_DEG2} deg² bbox limit)")
        return []


def build_scenarios(db: Path, seed: int) -> list[Scenario]:
    """The endpoints under test with their request paths (picked from the store)."""
    started = time.perf_counter()
    pts = tg.load_points(db)
    rng = np.random.default_rng(seed)
    scenarios = [
        Scenario("healthz", "`GET /healthz` (framework ceiling, no auth, no store)",
                 [tg.Target("/healthz", None)], auth=False),
        Scenario("node", "`GET /{id}?fields=` (10 image fields)", tg.node_targets(pts, rng, 5000),
                 paced_rate=NODE_RPS_TARGET,
                 target=f"≥ {NODE_RPS_TARGET:,.0f} req/s; p99 < {NODE_P99_TARGET_MS:g} ms "
                        f"at {NODE_RPS_TARGET:,.0f} req/s"),
        Scenario("bbox200", "`GET /images?bbox=` (200 rows)", bboxes(pts, rng, 200),
                 target=f"p50 < {BBOX200_P50_TARGET_MS:g} ms"),
        Scenario("bbox2000", "`GET /images?bbox=` (2,000 rows)", bboxes(pts, rng, 2000)),
        Scenario("s2", "`GET /images?s2=` (level-17 cell)", tg.s2_targets(pts, rng, 2000)),
        Scenario("ids", "`GET /images?image_ids=` (200 ids)", tg.ids_targets(pts, rng, 500, 200)),
    ]
    log(f"picked request paths in {time.perf_counter() - started:.1f} s")
    return [s for s in scenarios if s.paths]


def rows_note(s: Scenario) -> str:
    """Rows per response, as a short text."""
    counts = [t.rows for t in s.paths if t.rows is not None]
    if not counts:
        return "1"
    lo, hi, mean = min(counts), max(counts), sum(counts) / len(counts)
    return f"{lo:,}" if lo == hi else f"{lo}–{hi} (mean {mean:.0f})"


def verify(base_url: str, token: str, s: Scenario, samples: int = 5) -> None:
    """A few paths of the scenario answer 200 with the expected rows, before any timing."""
    headers = {"Authorization": f"OAuth {token}"} if s.auth else {}
    picks = s.paths[:samples - 1] + s.paths[-1:] if len(s.paths) > 1 else s.paths
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        for t in picks:
            r = client.get(t.path)
            if r.status_code != 200:
                raise RuntimeError(f"{t.path[:120]} → {r.status_code}: {r.text[:300]}")
            body = r.json()
            if s.key == "healthz":
                continue
            if t.rows is None:
                want = t.path[1:].split("?")[0]
                fields = tg.NODE_FIELDS.split(",")
                missing = [f for f in fields if f not in body]
                if body.get("id") != want or missing:
                    raise RuntimeError(f"{t.path[:80]}: id {body.get('id')}, missing {missing}")
            else:
                got = len(body.get("data", []))
                if got != t.rows or "paging" in body:
                    raise RuntimeError(f"{t.path[:120]}: {got} rows, expected {t.rows}"
                                       f"{' (+paging)' if 'paging' in body else ''}")


def run_scenario(base_url: str, token: str, s: Scenario, args: argparse.Namespace,
                 meter: CpuMeter) -> None:
    """Warm up, saturate, then pace; each measured run waits for (and checks) a quiet machine."""
    paths = [t.path for t in s.paths]
    auth = f"OAuth {token}" if s.auth else ""
    common = {"threads": args.threads, "connections": args.connections}
    loadgen.run_wrk(base_url, paths, auth, duration_s=args.warmup, **common)
    runs = [meter.measure(
        lambda: loadgen.run_wrk(base_url, paths, auth, duration_s=args.duration, **common),
        retries=args.retries, log=log) for _ in range(args.repeat)]
    runs.sort(key=lambda r: r[0].rps)
    s.saturated, s.cpu = runs[len(runs) // 2]  # the median run
    s.sat_rps = [r[0].rps for r in runs]
    sat = s.saturated
    s.cpu["server_us_per_req"] = s.cpu["server_cpu_s"] / max(1, sat.requests) * 1e6
    log(f"  {s.key:9s} saturated: {sat.rps:9,.0f} req/s "
        f"(runs {', '.join(f'{r:,.0f}' for r in s.sat_rps)})  p50 {sat.p50_ms:7.2f} ms  "
        f"p99 {sat.p99_ms:7.2f} ms  non-2xx {sat.non_2xx}  socket errors {sat.socket_errors}  "
        f"server {s.cpu['server_cores']:.2f} cores ({s.cpu['server_us_per_req']:,.0f} µs/req), "
        f"wrk {s.cpu['bench_cores']:.2f}, other {s.cpu['other_cores']:.2f}")
    rate = s.paced_rate or sat.rps * PACED_FRACTION
    s.paced, s.paced_cpu = meter.measure(
        lambda: loadgen.run_paced(base_url, paths, auth, duration_s=args.duration, rate=rate,
                                  **common),
        retries=args.retries, log=log)
    p = s.paced
    log(f"  {s.key:9s} paced {rate:,.0f}: {p.rps:9,.0f} req/s  p50 {p.p50_ms:7.2f} ms  "
        f"p99 {p.p99_ms:7.2f} ms  non-2xx {p.non_2xx}  socket errors {p.socket_errors}  "
        f"other {s.paced_cpu['other_cores']:.2f}")
    errors = sat.non_2xx + sat.socket_errors + p.non_2xx + p.socket_errors
    if errors:
        s.notes.append(f"{errors} non-2xx/socket errors")
    disturbed = max(s.cpu["other_cores"], s.paced_cpu["other_cores"])
    if disturbed >= OTHER_LOAD_LIMIT_CORES:
        s.notes.append(f"machine busy: other processes used {disturbed:.2f} cores")


def judge(s: Scenario) -> None:
    """Pass/fail against the scenario's target."""
    sat, p = s.saturated, s.paced
    assert sat is not None and p is not None
    ok: bool | None = None
    if s.key == "node":
        ok = sat.rps >= NODE_RPS_TARGET and p.p99_ms < NODE_P99_TARGET_MS and \
            p.rps >= 0.9 * NODE_RPS_TARGET
    elif s.key == "bbox200":
        ok = p.p50_ms < BBOX200_P50_TARGET_MS
    if ok and (sat.non_2xx or sat.socket_errors or p.non_2xx or p.socket_errors):
        ok = False  # errors never pass
    s.verdict = "—" if ok is None else ("**pass**" if ok else "**FAIL**")


# -- report ------------------------------------------------------------------------------------


def machine_facts() -> dict[str, str]:
    """nproc, CPU model, memory, versions."""
    model = cpu_model()
    mem = memory_gib()
    import granian

    wrk_version = sh("wrk", "-v").splitlines()[0] if loadgen.wrk_path() else "not installed"
    return {"nproc": sh("nproc"), "cpu": model, "memory_gib": mem,
            "os": platform.platform(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "granian": granian.__version__,
            "wrk": wrk_version.split(" Copyright")[0]}


def rps_cell(s: Scenario) -> str:
    """The median saturated req/s, with the range of the runs."""
    assert s.saturated is not None
    if len(s.sat_rps) < 2:
        return f"{s.saturated.rps:,.0f}"
    return f"{s.saturated.rps:,.0f} ({s.sat_rps[0]:,.0f}–{s.sat_rps[-1]:,.0f})"


def fmt_ms(v: float) -> str:
    """Milliseconds with sensible precision."""
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def render(scenarios: list[Scenario], imp: importbench.ImportResult | None,
           meta: dict[str, Any], facts: dict[str, str], args: argparse.Namespace,
           command: str) -> str:
    """The markdown section: settings, the table, notes."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {when} with `{command}`.",
        "",
        f"- Machine: {facts['nproc']} cores ({facts['cpu']}), {facts['memory_gib']} GiB RAM, "
        f"{facts['os']}; Python {facts['python']}, SQLite {facts['sqlite']}, "
        f"granian {facts['granian']}, {facts['wrk']}. wrk runs on the same cores as the "
        "server, so it takes part of the CPU the server could use.",
        f"- Store: {meta['images']:,} images (metadata only) in {meta['sequences']:,} sequences, "
        f"{meta['users']} users, {meta['organizations']} organizations, 30 × 30 km; generated "
        f"in {meta['generated_s']:,} s through `{meta['method']}`.",
        f"- Server: `wayview serve --workers {args.workers}` (granian), log level "
        f"`{args.server_log_level}` (access log {'on' if args.server_log_level in ('debug', 'info') else 'off'}), default settings otherwise.",
        f"- wrk: `-t{args.threads} -c{args.connections} -d{args.duration:g}s --latency`, a Lua "
        "script rotating through the listed number of distinct real paths per endpoint, client "
        f"token in `Authorization: OAuth …`; {args.warmup:g} s warm-up per endpoint first. "
        f"*Saturated* = no think time, {args.repeat} runs, the median run shown with the range "
        "of req/s (capacity; latency there is mostly queueing: ≈ connections ÷ req/s). *Paced* = the same connections with exponential think times "
        "fitted so the offered load is the rate shown (closed loop, so the achieved rate is "
        "given); the latency targets are judged on the paced run.",
        "",
        "| Endpoint | rows / response | paths | saturated req/s (range) | p50 ms | p99 ms | server CPU "
        "µs/req | paced at req/s | p50 ms | p99 ms | target | result |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in scenarios:
        sat, p = s.saturated, s.paced
        assert sat is not None and p is not None
        verdict = s.verdict + (f" ({'; '.join(s.notes)})" if s.notes else "")
        lines.append(
            f"| {s.label} | {rows_note(s)} | {len(s.paths):,} | {rps_cell(s)} | "
            f"{fmt_ms(sat.p50_ms)} | {fmt_ms(sat.p99_ms)} | "
            f"{s.cpu.get('server_us_per_req', 0):,.0f} | {p.rps:,.0f} | {fmt_ms(p.p50_ms)} | "
            f"{fmt_ms(p.p99_ms)} | {s.target} | {verdict} |")
    cpu = [s.cpu for s in scenarios if s.cpu]
    paced = [s.paced_cpu for s in scenarios if s.paced_cpu]
    if cpu:
        lines += ["", "*Server CPU µs/req* = CPU time of the server processes during the "
                  "saturated run ÷ requests served (all cores together). During the saturated "
                  f"runs the server used {min(c['server_cores'] for c in cpu):.2f}–"
                  f"{max(c['server_cores'] for c in cpu):.2f} cores, wrk "
                  f"{min(c['bench_cores'] for c in cpu):.2f}–{max(c['bench_cores'] for c in cpu):.2f}"
                  f", other processes on the machine at most "
                  f"{max(c['other_cores'] for c in cpu + paced):.2f} cores during any "
                  "measured run (each run waits for a quiet machine and is repeated up to "
                  f"{args.retries} times when others use ≥ {OTHER_LOAD_LIMIT_CORES} cores)."]
    lines += ["", "| Import (40 photos of 4000×3000, EXIF GPS/time) | images/s | target | result |",
              "|---|---:|---|---|"]
    if imp is None:
        lines.append("| (skipped: `--skip-import`) | | | |")
    else:
        lines.append(f"| codec only, 1 thread (Pillow decode + 2048/1024/256 + encode) | "
                     f"{imp.codec_1_ips:.2f} | | |")
        lines.append(f"| codec only, {imp.threads} threads | "
                     f"{imp.codec_n_ips:.2f} | | |")
        if imp.import_ips is None:
            lines.append(f"| `wayview import` | n/a | ≥ {IMPORT_RATIO_TARGET:.0%} of codec only "
                         f"| not measured: {imp.import_note} |")
        else:
            best = max(imp.codec_1_ips, imp.codec_n_ips)
            ratio = imp.import_ips / best
            verdict = "**pass**" if ratio >= IMPORT_RATIO_TARGET else "**FAIL**"
            lines.append(
                f"| `wayview import --json` (wall clock, fresh data dir, incl. "
                f"{imp.cli_startup_s:.1f} s CLI start-up) | {imp.import_ips:.2f} | "
                f"≥ {IMPORT_RATIO_TARGET:.0%} of the faster codec-only row | "
                f"{verdict}: {ratio:.0%} ({imp.import_ips / imp.codec_1_ips:.0%} of 1 thread, "
                f"{imp.import_ips / imp.codec_n_ips:.0%} of {imp.threads}) |")
        lines += ["", f"Other processes used at most {imp.other_cores:.2f} cores during the "
                  "import timings. The synthetic photos decode faster than camera photos (flat "
                  "colours), so the fixed per-image costs of the importer weigh more here than "
                  "with real photos."]
    return "\n".join(lines)


def write_docs(body: str) -> None:
    """Replace (or append) the Graph API section of docs/performance.md."""
    write_section(SECTION, START, END, body)


AUTH_SECTION = "### Authentication and rate-limit overhead (bench/graph.py --auth-overhead)"
AUTH_START = "<!-- bench/graph.py auth-overhead:start -->"
AUTH_END = "<!-- bench/graph.py auth-overhead:end -->"
AUTH_OVERHEAD_TARGET = 0.10
#: The "on" server counts every request but never refuses one: the bench sends far more than
#: the default 50,000 requests per minute with one app's token.
HUGE_BUDGET = {"WAYVIEW_RATE_LIMIT__GRAPH_PER_MINUTE": str(10**12),
               "WAYVIEW_RATE_LIMIT__SEARCH_PER_MINUTE": "0"}


def auth_overhead(args: argparse.Namespace, node: Scenario, token: str, command: str) -> str:
    """GET /{id} saturated on the shipped app and on the bypassed one, runs alternating."""
    paths = [t.path for t in node.paths]
    common = {"threads": args.threads, "connections": args.connections}
    results: dict[str, list[tuple[Any, dict[str, float]]]] = {"on": [], "bypassed": []}
    with Server(args.data_dir, args.workers, args.server_log_level, env=HUGE_BUDGET) as on, \
            Server(args.data_dir, args.workers, args.server_log_level,
                   factory="bypass_app:app_factory") as off:
        servers = {"on": (on, f"OAuth {token}"), "bypassed": (off, "")}
        for server, auth in servers.values():
            verify(server.base_url, token, node)
            loadgen.run_wrk(server.base_url, paths, auth, duration_s=args.warmup, **common)
        for _ in range(args.repeat):
            for name, (server, auth) in servers.items():
                meter = CpuMeter(server.all_pids)
                res = meter.measure(
                    lambda s=server, a=auth: loadgen.run_wrk(s.base_url, paths, a,
                                                             duration_s=args.duration, **common),
                    retries=args.retries, log=log)
                if res[0].non_2xx or res[0].socket_errors:
                    raise RuntimeError(f"{name}: {res[0].non_2xx} non-2xx, "
                                       f"{res[0].socket_errors} socket errors")
                res[1]["us_per_req"] = res[1]["server_cpu_s"] / max(1, res[0].requests) * 1e6
                results[name].append(res)
                log(f"  {name:8s} {res[0].rps:9,.0f} req/s  p50 {res[0].p50_ms:6.2f} ms  "
                    f"server {res[1]['us_per_req']:,.0f} µs/req  other "
                    f"{res[1]['other_cores']:.2f} cores")

    def median(name: str, key: str) -> float:
        values = sorted(r[0].rps if key == "rps" else r[1][key] for r in results[name])
        return values[len(values) // 2]

    rps_on, rps_off = median("on", "rps"), median("bypassed", "rps")
    cpu_on, cpu_off = median("on", "us_per_req"), median("bypassed", "us_per_req")
    loss = 1 - rps_on / rps_off
    cpu_cost = cpu_on / cpu_off - 1
    ok = loss < AUTH_OVERHEAD_TARGET
    rows = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}`: `GET /{{id}}?fields=` "
        f"(10 image fields, {len(paths):,} different ids) saturated by wrk `-t{args.threads} "
        f"-c{args.connections} -d{args.duration:g}s`, {args.repeat} runs per server alternating "
        "between them, medians. *on* = the shipped app (token lookup, scope check, the "
        "per-app budget counted with a budget too large to refuse anything, `x-app-usage`); "
        "*bypassed* = the same app and store with `authenticate` and the budget replaced by "
        "no-ops (bench/bypass_app.py). Both servers run at the same time with "
        f"`--workers {args.workers}` and log level `{args.server_log_level}`.",
        "",
        "| Server | req/s (runs) | server CPU µs/req | target | result |",
        "|---|---:|---:|---|---|",
        f"| on | {rps_on:,.0f} ({', '.join(f'{r[0].rps:,.0f}' for r in results['on'])}) | "
        f"{cpu_on:,.0f} | — | — |",
        f"| bypassed | {rps_off:,.0f} ({', '.join(f'{r[0].rps:,.0f}' for r in results['bypassed'])})"
        f" | {cpu_off:,.0f} | — | — |",
        f"| overhead | {loss:+.1%} req/s | {cpu_cost:+.1%} CPU | < {AUTH_OVERHEAD_TARGET:.0%} | "
        f"{'**pass**' if ok else '**FAIL**'} |",
    ]
    return "\n".join(rows)


def write_section(section: str, start: str, end: str, body: str) -> None:
    """Replace (or append) a marked section of docs/performance.md."""
    block = f"{section}\n\n{start}\n{body}\n{end}\n"
    text = DOC.read_text() if DOC.exists() else "# Performance\n\n"
    pattern = re.compile(re.escape(section) + r"\n.*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    log(f"updated {DOC}")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="default: bench/.data/graph-<N> (e.g. graph-1m)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per endpoint")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections")
    ap.add_argument("--server-log-level", default="info",
                    help="WAYVIEW_LOG_LEVEL of the server (info = shipped default, access log on)")
    ap.add_argument("--only", default=None,
                    help="comma list of endpoints: healthz,node,bbox200,bbox2000,s2,ids")
    ap.add_argument("--import-images", type=int, default=40)
    ap.add_argument("--skip-import", action="store_true")
    ap.add_argument("--repeat", type=int, default=3,
                    help="saturated runs per endpoint; the median run is reported")
    ap.add_argument("--retries", type=int, default=2,
                    help="re-run a measurement this often when other processes were busy")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--generator", choices=("bulk", "public"), default="bulk",
                    help="how a missing store is written: bench/bulkload.py (default) or "
                         "SqliteStore.reserve_ids + insert_sequence")
    ap.add_argument("--auth-overhead", action="store_true",
                    help="only compare GET /{id} with auth + rate limits against the same app "
                         "with both bypassed (bench/bypass_app.py), alternating runs")
    ap.add_argument("--write-docs", action="store_true",
                    help="replace the 'Graph API (bench/graph.py)' section of docs/performance.md")
    args = ap.parse_args(argv)
    if args.data_dir is None:
        n = args.images
        name = f"{n // 1_000_000}m" if n % 1_000_000 == 0 else (
            f"{n // 1000}k" if n % 1000 == 0 else str(n))
        args.data_dir = BENCH / ".data" / f"graph-{name}"
    args.data_dir = args.data_dir.resolve()
    if loadgen.wrk_path() is None:
        log("wrk is not installed: apt-get install -y wrk")
        return 2
    command = "python bench/graph.py " + " ".join(argv if argv is not None else sys.argv[1:])

    meta = world.ensure_world(args.data_dir, args.images, seed=args.seed,
                              method=args.generator, log=log)
    scenarios = build_scenarios(args.data_dir / "wayview.db", args.seed)
    if args.only:
        wanted = set(args.only.split(","))
        scenarios = [s for s in scenarios if s.key in wanted]
    token = meta["client_token"]
    if args.auth_overhead:
        node = next(s for s in scenarios if s.key == "node")
        body = auth_overhead(args, node, token, command.strip())
        print(f"{AUTH_SECTION}\n\n{body}")
        if args.write_docs:
            write_section(AUTH_SECTION, AUTH_START, AUTH_END, body)
        return 0
    with Server(args.data_dir, args.workers, args.server_log_level, env=HUGE_BUDGET) as server:
        log(f"server up at {server.base_url} (workers: {server.worker_pids()})")
        for s in scenarios:
            verify(server.base_url, token, s)
        log("sample responses verified (status 200, expected rows)")
        meter = CpuMeter(server.all_pids)
        for s in scenarios:
            run_scenario(server.base_url, token, s, args, meter)
            judge(s)
    imp = None
    if not args.skip_import:
        imp = importbench.measure(BENCH / ".data" / f"jpegs-{args.import_images}",
                                  args.import_images, log, retries=args.retries)
    body = render(scenarios, imp, meta, machine_facts(), args, command.strip())
    print(f"{SECTION}\n\n{body}")
    results = {"scenarios": [{"key": s.key, "paths": len(s.paths), "rows": rows_note(s),
                              "saturated": {k: v for k, v in asdict(s.saturated).items()
                                            if k != "raw"} if s.saturated else None,
                              "paced": {k: v for k, v in asdict(s.paced).items()
                                        if k != "raw"} if s.paced else None,
                              "saturated_rps_runs": s.sat_rps,
                              "cpu": s.cpu, "paced_cpu": s.paced_cpu,
                              "verdict": s.verdict, "notes": s.notes}
                             for s in scenarios],
               "import": asdict(imp) if imp else None, "meta": {
                   k: v for k, v in meta.items() if k != "client_token"}}
    (args.data_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.write_docs:
        write_docs(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
