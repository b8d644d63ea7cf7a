"""bench/tiles.py: vector-tile throughput, latency and sizes on the bench store, against targets.

    python bench/tiles.py [--images 1000000] [--data-dir bench/.data/graph-1m] [--workers 2]
                          [--duration 10] [--connections 64] [--threads 2] [--write-docs]

1. Store: the synthetic city of bench/graph.py (bench/world.py; the same data folder, reused when
   its marker matches, else generated with `--generator bulk`). If it holds no traffic signs,
   4,000 traffic signs and 2,000 points are added near random images through
   `store.insert_map_features` (the same call the detection pipeline uses).
2. Tile sets: every non-empty `mly1_public` tile at z3, z8, z12 and z14 (the tiles holding at
   least one image, read from `images.qk`, shuffled with a fixed seed) and every z14
   `mly_map_feature_traffic_sign` tile holding a traffic sign.
3. wrk (`-t2 -c64 --latency`, a Lua script rotating through the paths) against
   `wayview serve --workers 2` on loopback:
   - *cold*: a server started with `WAYVIEW_TILES__CACHE_MAX_BYTES=0`, so the tile cache keeps
     nothing (every non-empty tile is bigger than 0 bytes, `TileService._remember` drops it) and
     every request reads the tile index and encodes; checked in-process with
     `TileService.renders`. The whole tile set rotates, 10 s.
   - *cold, each tile once*: a freshly started server with the default cache, a Lua script that
     gives each wrk thread a disjoint slice of the z14 set and stops the thread when its last
     response is in, so every tile is requested exactly once (3 fresh servers, median run).
   - *warm*: the default server, at most 20 tiles of the set, after a warm-up run.
   - `GET /healthz` with the same settings: the framework ceiling.
   - z14 also with `Accept-Encoding: gzip`, which every browser sends;
   - `/healthz`, z14 cold, z3 and z14 warm again with the access log off (log level warning).
4. One dense z14 tile of 30,000 images (60 sequences × 500 images written through
   `reserve_ids` + `insert_sequence` into a separate small store): in-process cold renders
   through `TileService` (cache off; min/median of 7), the same over HTTP from a server without
   tile cache (min/median of 7 requests after one warm-up request), and the first request to 3
   freshly started servers.
5. The encoder alone against mapbox-vector-tile (the cases of bench/tiles_encoder.py).
6. The largest z0–5 tile of the store (uncompressed and gzip).
7. Prints one markdown table with targets and pass/fail; `--write-docs` replaces the
   "Vector tiles (bench/tiles.py)" section of docs/performance.md (nothing else).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import platform
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
import world  # noqa: E402
from cpumeter import OTHER_LOAD_LIMIT_CORES, CpuMeter  # noqa: E402
from machine import cpu_model, memory_gib, sh  # noqa: E402
from serverproc import ServerProcess, free_port  # noqa: E402

from wayview.model.entities import Image, MapFeature, Sequence  # noqa: E402
from wayview.settings import Settings  # noqa: E402
from wayview.store import open_store  # noqa: E402
from wayview.tiles.generalise import coverage_change, drawn_pixels  # noqa: E402
from wayview.tiles.index import decode_lines, unmorton_array  # noqa: E402
from wayview.tiles.mvt import encode_tile  # noqa: E402
from wayview.tiles.prerender import Prerenderer  # noqa: E402
from wayview.tiles.service import TileService, _sequence_lines, generalised_tile  # noqa: E402
from wayview.tiles.tilemath import lnglat_to_tile, tile_bounds  # noqa: E402

DOC = REPO / "docs" / "performance.md"
SECTION = "## Vector tiles (bench/tiles.py)"
START, END = "<!-- bench/tiles.py:start -->", "<!-- bench/tiles.py:end -->"

COLD_Z14_TARGET = 500.0  # tiles/s, uncached z14
COLD_Z8_TARGET = 300.0  # tiles/s, uncached z8 (issue #21: a read of the prerendered tile)
LINE_TILE_TARGET_BYTES = 500_000  # every z6–13 tile (issue #21)
GENERALISED = range(6, 14)
WARM_TARGET = 5000.0  # tiles/s, cached
DENSE_TARGET_MS = 150.0
ENCODER_SPEEDUP_TARGET = 8.0
LOW_ZOOM_TARGET_BYTES = 50 * 1024
ZOOMS = (3, 8, 12, 14)
WARM_SET = 20
DENSE_SEQUENCES, DENSE_PER_SEQUENCE = 60, 500
DENSE_CENTER = (13.40, 52.50)  # lon, lat: the z14 tile of the city centre
DENSE_RENDERS = 7
DENSE_HTTP_SERVERS = 3
ONCE_RUNS = 3
QUIET_LOG_LEVEL = "warning"
FEATURES_SIGNS, FEATURES_POINTS = 4000, 2000
MVT = "application/vnd.mapbox-vector-tile"
SIGN_VALUES = ("regulatory--stop--g1", "regulatory--yield--g1", "regulatory--no-entry--g1",
               "regulatory--maximum-speed-limit-30--g1", "regulatory--maximum-speed-limit-50--g1",
               "warning--pedestrians-crossing--g4", "information--parking--g1",
               "complementary--chevron-left--g1", "regulatory--keep-right--g1",
               "information--pedestrians-crossing--g1")
POINT_VALUES = ("object--street-light", "object--fire-hydrant", "object--bench",
                "object--traffic-light--general-upright", "object--manhole", "object--bike-rack")


def log(msg: str) -> None:
    """Progress to stderr (the table goes to stdout)."""
    print(msg, file=sys.stderr, flush=True)


class Meter(CpuMeter):
    """bench/cpumeter.py's meter, waiting longer for a quiet machine (shared bench machine)."""

    quiet_limit_s = 300.0

    def wait_quiet(self, limit_s: float | None = None,
                   log: Callable[[str], None] = print) -> float:
        """Wait (at most `quiet_limit_s`) until other processes use < the limit for 2 s."""
        return super().wait_quiet(self.quiet_limit_s if limit_s is None else limit_s, log)


# -- server ----------------------------------------------------------------------------------


class Server(ServerProcess):
    """`wayview serve` on loopback in its own process group; always stopped on exit.

    (bench/serverproc.py, plus the bench's environment and its own log file.)
    """

    def __init__(self, data_dir: Path, workers: int, log_level: str, name: str,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"server-tiles-{name}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WAYVIEW_")}
        self.env["WAYVIEW_LOG_LEVEL"] = log_level
        # One app token drives every run: budgets that never refuse (still counted).
        self.env["WAYVIEW_RATE_LIMIT__TILES_PER_DAY"] = str(10**12)
        self.env["WAYVIEW_RATE_LIMIT__GRAPH_PER_MINUTE"] = str(10**12)
        self.env.update(env or {})

    def __enter__(self) -> Server:
        cmd = [sys.executable, "-m", "wayview", "serve", "--data-dir", str(self.data_dir),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]
        self.launch(cmd, cwd=self.data_dir, env=self.env, health="/healthz")
        return self


# -- wrk ---------------------------------------------------------------------------------------

# bench/loadgen.py's rotation, plus an optional Accept-Encoding header and a "once" mode: each
# thread takes a disjoint slice of the paths, a connection whose thread has sent its whole slice
# waits (delay) instead of sending more, and when its last response has arrived the thread stops
# and leaves a marker file. wrk's main thread sleeps for the whole -d duration whatever the
# threads do, so run_wrk sends it SIGINT (which ends that sleep) once every thread's marker is
# there; wrk then reports the real elapsed time.
LUA = r"""
local paths = {}
local requests = {}
local nexti, first, last = 1, 1, 0
local received, reserved = 0, 0
local thread_no = 0
local nthreads = %(threads)d
local once = %(once)s
local args_done = ""

function setup(thread)
  thread:set("tid", thread_no)
  thread_no = thread_no + 1
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  if args[2] ~= "" then wrk.headers["Accept-Encoding"] = args[2] end
  args_done = args[3]
  for i, p in ipairs(paths) do requests[i] = wrk.format("GET", p) end
  if once then
    first = math.floor((tid or 0) * #requests / nthreads) + 1
    last = math.floor(((tid or 0) + 1) * #requests / nthreads)
    nexti = first
  else
    nexti = ((tid or 0) * 7919) %% #requests + 1
  end
end

function request()
  if once then
    -- wrk calls request() once in thread 0 before the run to check the script: no delay()
    -- has reserved a slot yet, so that call sends nothing and must not use up a path
    if reserved == 0 then return requests[first] end
    local r = requests[math.min(nexti, last)]
    nexti = nexti + 1
    return r
  end
  local r = requests[nexti]
  nexti = nexti %% #requests + 1
  return r
end

if once then
  -- called before every request of a connection: reserve one path of the slice, or park the
  -- connection for an hour when the slice is used up
  function delay()
    if reserved >= last - first + 1 then return 3600000 end
    reserved = reserved + 1
    return 0
  end

  function response(status, headers, body)
    received = received + 1
    if received >= last - first + 1 then
      local f = io.open(args_done .. "/done-" .. (tid or 0), "w")
      f:close()
      wrk.thread:stop()
    end
  end
end
"""


def run_wrk(base_url: str, paths: list[str], *, threads: int, connections: int,
            duration_s: float, gzip: bool = False, once: bool = False,
            timeout_s: float = 10.0) -> loadgen.WrkResult:
    """wrk over `paths` (rotating, or each exactly once), parsed by bench/loadgen.py."""
    exe = loadgen.wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    if once:
        connections = max(threads, min(connections, len(paths) // threads))
        duration_s = max(duration_s, 60.0)  # a cap only: ended by SIGINT when all are answered
    with tempfile.TemporaryDirectory(prefix="wayview-wrk-") as tmp:
        path_file = Path(tmp) / "paths.txt"
        path_file.write_text("\n".join(paths) + "\n")
        script = Path(tmp) / "tiles.lua"
        script.write_text(LUA % {"threads": threads, "once": "true" if once else "false"})
        cmd = [exe, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
               f"--timeout={max(1, round(timeout_s))}s", "--latency", "-s", str(script),
               base_url, "--", str(path_file), "gzip" if gzip else "", tmp]
        out_path, err_path = Path(tmp) / "out.txt", Path(tmp) / "err.txt"
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
            try:
                deadline = time.monotonic() + duration_s + timeout_s + 60
                while proc.poll() is None and time.monotonic() < deadline:
                    if once and all((Path(tmp) / f"done-{k}").exists() for k in range(threads)):
                        proc.send_signal(signal.SIGINT)  # ends wrk's sleep(duration)
                        break
                    time.sleep(0.002)
                proc.wait(timeout=max(5.0, deadline - time.monotonic()))
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
        stdout, stderr = out_path.read_text(), err_path.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {stderr}\n{stdout}")
    return loadgen.parse(stdout)


_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def bytes_read(raw: str) -> float:
    """The bytes wrk read (headers included), from its summary line."""
    m = re.search(r"requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", raw)
    return float(m.group(1)) * _SIZE_UNITS[m.group(2)] if m else 0.0


# -- store, tile sets --------------------------------------------------------------------------


def tile_path(tileset: str, z: int, x: int, y: int, token: str) -> str:
    """The request path of a tile, token in the query as the SDK, iD and MapLibre send it."""
    return f"/maps/vtp/{tileset}/2/{z}/{x}/{y}?access_token={token}"


def tiles_with(db: Path, z: int, table: str = "images", where: str = "") -> list[tuple[int, int]]:
    """(x, y) of every zoom-z tile holding a row of `table` (z26 Morton codes in `qk`)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        keys = [r[0] for r in conn.execute(
            f"SELECT DISTINCT qk >> ? FROM {table} {where}", (2 * (26 - z),))]
    finally:
        conn.close()
    xs, ys = unmorton_array(np.array(sorted(keys), dtype=np.int64))
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


def ensure_map_features(data_dir: Path, seed: int) -> int:
    """Add traffic signs and points near random images when the store has no traffic signs."""
    db = data_dir / "wayview.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        have = conn.execute(
            "SELECT COUNT(*) FROM map_features WHERE object_type = 'trafficsign'").fetchone()[0]
        if have:
            return int(have)
        where = np.array(conn.execute("SELECT lon, lat FROM images ORDER BY id").fetchall())
    finally:
        conn.close()
    rng = np.random.default_rng(seed + 101)
    picks = rng.choice(len(where), FEATURES_SIGNS + FEATURES_POINTS, replace=False)
    spots = [(float(lon), float(lat)) for lon, lat in where[picks]]

    async def run() -> None:
        store = open_store(Settings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]
        await store.open()
        try:
            ids = await store.reserve_ids("map_feature", len(spots))
            cos_lat = math.cos(math.radians(world.CENTER_LAT))
            feats = []
            for k, (fid, (lon, lat)) in enumerate(zip(ids, spots, strict=True)):
                sign = k < FEATURES_SIGNS
                values = SIGN_VALUES if sign else POINT_VALUES
                first = int(rng.integers(1_420_070_400_000, 1_700_000_000_000))
                dx, dy = rng.normal(0, 6, 2)  # a few metres beside the road
                feats.append(MapFeature(
                    id=fid, object_value=values[int(rng.integers(len(values)))],
                    object_type="trafficsign" if sign else "point",
                    lon=lon + dx / (world.M_PER_DEG_LAT * cos_lat),
                    lat=lat + dy / world.M_PER_DEG_LAT, first_seen_at_ms=first,
                    last_seen_at_ms=first + int(rng.integers(0, 300 * 86_400_000)),
                    aligned_direction_deg=round(float(rng.uniform(0, 360)), 1) if sign else None))
            await store.insert_map_features(feats)
        finally:
            await store.close()

    asyncio.run(run())
    log(f"added {FEATURES_SIGNS:,} traffic signs and {FEATURES_POINTS:,} points "
        "(store.insert_map_features)")
    return FEATURES_SIGNS


# -- scenarios ---------------------------------------------------------------------------------


@dataclass
class Scenario:
    """One wrk row: which server, which paths, and what was measured."""

    key: str
    label: str
    server: str  # "cold" (cache off), "warm" (default), "once" (fresh server per run), and
    # "coldq" / "warmq": the same with log level warning (no access log)
    paths: list[str]
    gzip: bool = False
    target: str = "—"
    target_rps: float | None = None
    result: loadgen.WrkResult | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    mean_body_bytes: float = 0.0
    verdict: str = "—"
    notes: list[str] = field(default_factory=list)


def build_scenarios(db: Path, token: str, seed: int) -> tuple[list[Scenario], dict[str, int]]:
    """The wrk rows and the size of each tile set."""
    rng = np.random.default_rng(seed)
    out = [Scenario("healthz", "`GET /healthz` (framework ceiling, no auth, no store)", "warm",
                    ["/healthz"])]
    counts: dict[str, int] = {}
    sets: dict[str, list[str]] = {}
    for z in ZOOMS:
        tiles = tiles_with(db, z)
        rng.shuffle(tiles)
        sets[f"z{z}"] = [tile_path("mly1_public", z, x, y, token) for x, y in tiles]
    signs = tiles_with(db, 14, "map_features", "WHERE object_type = 'trafficsign'")
    rng.shuffle(signs)
    sets["sign14"] = [tile_path("mly_map_feature_traffic_sign", 14, x, y, token)
                      for x, y in signs]
    layer = {3: "overview", 8: "sequence", 12: "sequence", 14: "sequence + image"}
    for z in ZOOMS:
        paths = sets[f"z{z}"]
        counts[f"z{z}"] = len(paths)
        cold_target = {14: COLD_Z14_TARGET, 8: COLD_Z8_TARGET}.get(z)
        out.append(Scenario(f"cold{z}", f"`mly1_public` z{z} ({layer[z]}), **cold**", "cold",
                            paths, target=f"≥ {cold_target:,.0f} tiles/s" if cold_target
                            else "—", target_rps=cold_target))
        out.append(Scenario(f"warm{z}", f"`mly1_public` z{z}, warm (cached)", "warm",
                            paths[:WARM_SET], target=f"≥ {WARM_TARGET:,.0f} tiles/s",
                            target_rps=WARM_TARGET))
    z14 = sets["z14"]
    out.append(Scenario("once14", "`mly1_public` z14, **cold, each tile once** (fresh server)",
                        "once", z14, target=f"≥ {COLD_Z14_TARGET:,.0f} tiles/s",
                        target_rps=COLD_Z14_TARGET))
    out.append(Scenario("cold14gz", "`mly1_public` z14, **cold**, `Accept-Encoding: gzip`",
                        "cold", z14, gzip=True, target=f"≥ {COLD_Z14_TARGET:,.0f} tiles/s",
                        target_rps=COLD_Z14_TARGET))
    out.append(Scenario("warm14gz", "`mly1_public` z14, warm, `Accept-Encoding: gzip`", "warm",
                        z14[:WARM_SET], gzip=True, target=f"≥ {WARM_TARGET:,.0f} tiles/s",
                        target_rps=WARM_TARGET))
    if sets["sign14"]:
        counts["sign14"] = len(sets["sign14"])
        out.append(Scenario("coldsign", "`mly_map_feature_traffic_sign` z14, **cold**", "cold",
                            sets["sign14"], target=f"≥ {COLD_Z14_TARGET:,.0f} tiles/s",
                            target_rps=COLD_Z14_TARGET))
        out.append(Scenario("warmsign", "`mly_map_feature_traffic_sign` z14, warm", "warm",
                            sets["sign14"][:WARM_SET], target=f"≥ {WARM_TARGET:,.0f} tiles/s",
                            target_rps=WARM_TARGET))
    # the same with the access log off (one log line per request is the shipped default)
    quiet = f"access log off (`WAYVIEW_LOG_LEVEL={QUIET_LOG_LEVEL}`)"
    out.append(Scenario("healthzq", f"`GET /healthz`, {quiet}", "warmq", ["/healthz"]))
    out.append(Scenario("cold14q", f"`mly1_public` z14, **cold**, {quiet}", "coldq", z14,
                        target=f"≥ {COLD_Z14_TARGET:,.0f} tiles/s", target_rps=COLD_Z14_TARGET))
    for z in (3, 14):
        out.append(Scenario(f"warm{z}q", f"`mly1_public` z{z}, warm, {quiet}", "warmq",
                            sets[f"z{z}"][:WARM_SET], target=f"≥ {WARM_TARGET:,.0f} tiles/s",
                            target_rps=WARM_TARGET))
    return out, counts


def verify(base_url: str, s: Scenario, samples: int = 4) -> None:
    """Sample paths answer 200, MVT, non-empty, with the expected layers."""
    import mapbox_vector_tile

    if s.paths == ["/healthz"]:
        r = httpx.get(base_url + "/healthz", timeout=30)
        if r.status_code != 200:
            raise RuntimeError(f"/healthz → {r.status_code}")
        return
    want = {"z3": {"overview"}, "z8": {"sequence"}, "z12": {"sequence"},
            "z14": {"sequence", "image"}}
    headers = {"Accept-Encoding": "gzip"} if s.gzip else {"Accept-Encoding": "identity"}
    picks = s.paths[:samples - 1] + s.paths[-1:] if len(s.paths) > 1 else s.paths
    with httpx.Client(base_url=base_url, timeout=60, headers=headers) as client:
        for p in picks:
            r = client.get(p)
            if r.status_code != 200 or r.headers.get("content-type") != MVT or not r.content:
                raise RuntimeError(f"{p[:90]} → {r.status_code} {r.headers.get('content-type')}"
                                   f" {len(r.content)} bytes: {r.text[:200]}")
            if s.gzip and r.headers.get("content-encoding") != "gzip":
                raise RuntimeError(f"{p[:90]}: no Content-Encoding: gzip")
            layers = set(mapbox_vector_tile.decode(r.content))
            z = int(p.split("/")[5])
            if "traffic_sign" in p:
                expected = {"traffic_sign"}
            else:
                expected = want.get(f"z{z}", set())
            if not layers or (z != 14 and layers != expected) or \
                    (z == 14 and not layers & expected):
                raise RuntimeError(f"{p[:90]}: layers {sorted(layers)}, expected {expected}")


def run_scenario(base_url: str, s: Scenario, args: argparse.Namespace, meter: Meter,
                 warmup: bool) -> None:
    """(Warm-up,) then the measured wrk run, on a quiet machine."""
    common = {"threads": args.threads, "connections": args.connections, "gzip": s.gzip}
    if warmup:
        run_wrk(base_url, s.paths, duration_s=args.warmup, **common)
    res, cpu = meter.measure(
        lambda: run_wrk(base_url, s.paths, duration_s=args.duration, **common),
        retries=args.retries, log=log)
    record(s, res, cpu)


def record(s: Scenario, res: loadgen.WrkResult, cpu: dict[str, float]) -> None:
    """Keep one run's result, CPU use and mean response size."""
    cpu = dict(cpu)
    cpu["server_us_per_req"] = cpu["server_cpu_s"] / max(1, res.requests) * 1e6
    body = bytes_read(res.raw) / max(1, res.requests)
    s.runs.append({"rps": res.rps, "p50_ms": res.p50_ms, "p99_ms": res.p99_ms,
                   "requests": res.requests, "seconds": res.seconds, "cpu": cpu,
                   "bytes_per_response": body, "non_2xx": res.non_2xx,
                   "socket_errors": res.socket_errors})
    s.result, s.cpu, s.mean_body_bytes = res, cpu, body
    log(f"  {s.key:9s} {res.rps:9,.0f} tiles/s  p50 {res.p50_ms:8.2f} ms  p99 {res.p99_ms:8.2f} "
        f"ms  {res.requests:,} req  {body / 1024:7.1f} KB/resp  non-2xx {res.non_2xx}  "
        f"socket errors {res.socket_errors}  server {cpu['server_cores']:.2f} cores "
        f"({cpu['server_us_per_req']:,.0f} µs/req), wrk {cpu['bench_cores']:.2f}, "
        f"other {cpu['other_cores']:.2f}")


def judge(s: Scenario) -> None:
    """Pass/fail against the scenario's target."""
    res = s.result
    assert res is not None
    if res.non_2xx or res.socket_errors:
        s.notes.append(f"{res.non_2xx + res.socket_errors} non-2xx/socket errors")
    if s.cpu.get("other_cores", 0) >= OTHER_LOAD_LIMIT_CORES:
        s.notes.append(f"machine busy: other processes used {s.cpu['other_cores']:.2f} cores")
    if s.target_rps is None:
        return
    ok = res.rps >= s.target_rps and not (res.non_2xx or res.socket_errors)
    s.verdict = "**pass**" if ok else "**FAIL**"


def check_cache_off(data_dir: Path) -> bool:
    """In-process: with `cache_max_bytes=0` a repeated non-empty tile is rendered again."""
    async def run() -> bool:
        store = open_store(Settings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]
        await store.open()
        try:
            x, y = tiles_with(data_dir / "wayview.db", 14)[0]
            svc = TileService(store, cache_max_bytes=0)
            a = await svc.tile("mly1_public", 14, x, y)
            b = await svc.tile("mly1_public", 14, x, y)
            return svc.renders == 2 and len(a.body) > 0 and a.body == b.body
        finally:
            await store.close()

    return asyncio.run(run())


def run_wrk_rows(scenarios: list[Scenario], data_dir: Path, args: argparse.Namespace) -> None:
    """The cold server, the warm server, then fresh servers for the once-only rows."""
    cache_off = {"WAYVIEW_TILES__CACHE_MAX_BYTES": "0"}
    quiet = {"WAYVIEW_LOG_LEVEL": QUIET_LOG_LEVEL}
    servers: list[tuple[str, dict[str, str]]] = [
        ("cold", cache_off), ("warm", {}), ("coldq", {**cache_off, **quiet}), ("warmq", quiet)]
    for kind, env in servers:
        rows = [s for s in scenarios if s.server == kind]
        if not rows:
            continue
        with Server(data_dir, args.workers, args.server_log_level, kind, env) as server:
            log(f"{kind} server up at {server.base_url} ({env or 'default settings'}; workers "
                f"{server.worker_pids()})")
            for s in rows:
                verify(server.base_url, s)
            meter = Meter(server.all_pids)
            for s in rows:
                # cold rows need no warm-up of the tile cache (there is none); a short run still
                # warms SQLite's page cache and the OS file cache, as a long-running server has
                run_scenario(server.base_url, s, args, meter, warmup=True)
                judge(s)
    for s in (s for s in scenarios if s.server == "once"):
        for k in range(ONCE_RUNS):
            with Server(data_dir, args.workers, args.server_log_level, "once") as server:
                meter = Meter(server.all_pids)
                res, cpu = meter.measure(lambda url=server.base_url, paths=s.paths: run_wrk(
                    url, paths, threads=args.threads, connections=args.connections,
                    duration_s=args.duration, once=True), retries=0, log=log)  # a repeat
                # on this server would find the tiles cached: a busy machine gets a new server
                if res.requests != len(s.paths):
                    raise RuntimeError(f"once-only run answered {res.requests} requests, "
                                       f"expected {len(s.paths)}")
                log(f"  once-only run {k + 1}/{ONCE_RUNS} (fresh server):")
                record(s, res, cpu)
        ranked = sorted(s.runs, key=lambda r: r["rps"])
        median = ranked[len(ranked) // 2]
        s.result = loadgen.WrkResult(
            requests=median["requests"], seconds=median["seconds"], rps=median["rps"],
            avg_ms=0.0, p50_ms=median["p50_ms"], p75_ms=0.0, p90_ms=0.0,
            p99_ms=median["p99_ms"], non_2xx=sum(r["non_2xx"] for r in s.runs),
            socket_errors=sum(r["socket_errors"] for r in s.runs), raw="")
        s.cpu, s.mean_body_bytes = median["cpu"], median["bytes_per_response"]
        s.notes.append(f"median of {ONCE_RUNS} fresh servers: "
                       + ", ".join(f"{r['rps']:,.0f}" for r in s.runs) + " tiles/s")
        judge(s)


# -- in-process: z14 phases, z0–5 sizes -----------------------------------------------------


@dataclass
class Phases:
    """Mean CPU milliseconds per tile of the render steps, in-process, one request at a time.

    CPU time of the whole process (`time.process_time`: the event loop and the SQLite reader
    thread), so other processes on the machine hardly change it.
    """

    tiles: int
    epoch_ms: float
    images_ms: float
    lines_ms: float
    render_ms: float  # TileService.tile with the cache off: epoch + queries + layers + encode
    gzip_ms: float
    mean_bytes: float
    mean_gzip_bytes: float
    max_bytes: int

    @property
    def build_encode_ms(self) -> float:
        """Layer building and MVT encoding (render minus epoch and queries)."""
        return max(0.0, self.render_ms - self.epoch_ms - self.images_ms - self.lines_ms)


async def _phases(store: Any, z: int, tiles: list[tuple[int, int]]) -> Phases:
    svc = TileService(store, cache_max_bytes=0)
    acc = {"epoch": 0.0, "images": 0.0, "lines": 0.0, "render": 0.0, "gzip": 0.0}
    sizes, gz = [], []
    for x, y in tiles:
        t0 = time.process_time()
        await store.tile_epoch("images", z, x, y)
        t1 = time.process_time()
        if z == 14:
            await store.tile_images(z, x, y)
        t2 = time.process_time()
        if z >= 6:
            await store.tile_sequence_lines(z, x, y)
        t3 = time.process_time()
        tile = await svc.tile("mly1_public", z, x, y)
        t4 = time.process_time()
        gz.append(len(tile.gzipped()))
        t5 = time.process_time()
        sizes.append(len(tile.body))
        for k, dt in zip(acc, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            acc[k] += dt
    n = max(1, len(tiles))
    return Phases(len(tiles), *(1000 * acc[k] / n for k in acc),  # type: ignore[arg-type]
                  statistics.mean(sizes), statistics.mean(gz), max(sizes))


def in_process(data_dir: Path) -> dict[str, Any]:
    """Render-step breakdown of every z14 tile (second pass) and the largest z0–5 tile."""
    db = data_dir / "wayview.db"
    meter = Meter()
    meter.wait_quiet(log=log)
    before = meter.snapshot()

    async def run() -> dict[str, Any]:
        store = open_store(Settings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]
        await store.open()
        try:
            out: dict[str, Any] = {}
            for z in ZOOMS:
                tiles = tiles_with(db, z)
                await _phases(store, z, tiles[:50])  # page caches, numpy warm-up
                out[f"z{z}"] = asdict(ph := await _phases(store, z, tiles))
                out[f"z{z}"]["build_encode_ms"] = ph.build_encode_ms
            svc = TileService(store, cache_max_bytes=0)
            largest: dict[str, Any] = {"bytes": -1}
            per_zoom = {}
            for z in range(6):
                zmax = 0
                for x, y in tiles_with(db, z):
                    tile = await svc.tile("mly1_public", z, x, y)
                    zmax = max(zmax, len(tile.body))
                    if len(tile.body) > largest["bytes"]:
                        largest = {"z": z, "x": x, "y": y, "bytes": len(tile.body),
                                   "gzip_bytes": len(tile.gzipped())}
                per_zoom[z] = zmax
            out["low_zoom"] = {"largest": largest, "max_bytes_per_zoom": per_zoom}
            return out
        finally:
            await store.close()

    result = asyncio.run(run())
    result["other_cores"] = meter.delta(before, meter.snapshot())["other_cores"]
    return result


# -- generalised z6–13 tiles (issue #21) -------------------------------------------------------


def prerender(data_dir: Path) -> dict[str, Any]:
    """Render every stale z6–13 tile into the store, as the job runner does after writes."""

    async def run() -> dict[str, Any]:
        store = open_store(Settings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]
        await store.open()
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            tiles = await Prerenderer(store).run_all()
            return {"tiles": tiles, "wall_s": time.perf_counter() - t0,
                    "cpu_s": time.process_time() - c0}
        finally:
            await store.close()

    return asyncio.run(run())


def generalised(data_dir: Path) -> dict[str, Any]:
    """Per zoom 6–13, every tile holding a line: its size without and with thinning, the CPU
    of rendering it (rows + thinning + encoding) and of reading the stored body, and what
    thinning changed in the drawn pixels (lines one pixel wide on a 512-pixel tile)."""
    db = data_dir / "wayview.db"

    async def run() -> dict[str, Any]:
        store = open_store(Settings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]
        await store.open()
        out: dict[str, Any] = {}
        try:
            stored = TileService(store, cache_max_bytes=0)
            for z in GENERALISED:
                tiles = tiles_with(db, z)
                row: dict[str, Any] = {"tiles": len(tiles), "before": [], "after": [],
                                       "render_ms": 0.0, "read_ms": 0.0, "exact": [],
                                       "beyond": [], "lines_before": 0, "lines_after": 0}
                for x, y in tiles:
                    t0 = time.process_time()
                    lines = (await store.tile_content(z, x, y, ("sequence",))).lines or []
                    generalised_tile(lines, LINE_TILE_TARGET_BYTES)  # timed, not kept
                    t1 = time.process_time()
                    tile = await stored.tile("mly1_public", z, x, y)
                    t2 = time.process_time()
                    row["render_ms"] += 1000 * (t1 - t0)
                    row["read_ms"] += 1000 * (t2 - t1)
                    plain = encode_tile([_sequence_lines(lines)]) if lines else b""
                    row["before"].append(len(plain))
                    row["after"].append(len(tile.body))
                    verts, sizes, _ = decode_lines([ln.coords for ln in lines])
                    feats = _decoded_lines(tile.body)
                    row["lines_before"] += len(lines)
                    row["lines_after"] += len(feats[2])
                    exact, beyond = coverage_change(drawn_pixels(verts, sizes),
                                                    drawn_pixels(feats[0], feats[1]))
                    row["exact"].append(exact)
                    row["beyond"].append(beyond)
                n = max(1, len(tiles))
                row["render_ms"] /= n
                row["read_ms"] /= n
                out[f"z{z}"] = row
            out["renders_while_reading"] = stored.renders
            return out
        finally:
            await store.close()

    return asyncio.run(run())


def _decoded_lines(body: bytes) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Vertices, part sizes and sequence ids of a tile's `sequence` layer."""
    import mapbox_vector_tile

    if not body:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64), []
    layer = mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})["sequence"]
    parts: list[np.ndarray] = []
    ids = []
    for f in layer["features"]:
        ids.append(f["properties"]["id"])
        g = f["geometry"]
        lines = [g["coordinates"]] if g["type"] == "LineString" else g["coordinates"]
        parts.extend(np.asarray(p, dtype=np.float64) for p in lines)
    if not parts:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64), ids
    return np.concatenate(parts), np.array([len(p) for p in parts]), ids


def generalised_table(g: dict[str, Any], pre: dict[str, Any] | None) -> str:
    """The markdown table of `generalised`, with the target verdict."""
    rows = ["| zoom | tiles | lines (without → with thinning) | mean size without → with "
            "| largest without → with | render CPU ms | stored read CPU ms | pixels changed "
            "(mean / max) | pixels > 1 px from a drawn line (mean / max) | target "
            f"(≤ {LINE_TILE_TARGET_BYTES // 1000} KB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for z in GENERALISED:
        r = g[f"z{z}"]
        if not r["tiles"]:
            continue
        largest = max(r["after"])
        rows.append(
            f"| z{z} | {r['tiles']} | {r['lines_before']:,} → {r['lines_after']:,} "
            f"| {fmt_bytes(statistics.mean(r['before']))} → "
            f"{fmt_bytes(statistics.mean(r['after']))} | {fmt_bytes(max(r['before']))} → "
            f"{fmt_bytes(largest)} | {r['render_ms']:.2f} | {r['read_ms']:.2f} "
            f"| {100 * statistics.mean(r['exact']):.1f} % / {100 * max(r['exact']):.1f} % "
            f"| {100 * statistics.mean(r['beyond']):.2f} % / {100 * max(r['beyond']):.2f} % "
            f"| {'**pass**' if largest <= LINE_TILE_TARGET_BYTES else '**FAIL**'} |")
    note = (f"\n\nPrerendering every z6–13 tile of both image tilesets into the store (what the "
            f"job runner does after writes, `wayview.tiles.prerender`): {pre['tiles']:,} tiles "
            f"in {pre['wall_s']:.1f} s ({pre['cpu_s']:.1f} s CPU)." if pre else "")
    return "\n".join(rows) + note + (
        f"\n\nReading them back renders nothing: {g['renders_while_reading']} renders.")


# -- the dense tile ----------------------------------------------------------------------------


def _dense_walk(rng: np.random.Generator, bounds: tuple[float, float, float, float],
                n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n positions (lon, lat) and headings walking a 90 m street grid inside the tile."""
    west, south, east, north = bounds
    lat0 = (south + north) / 2
    m_lon = world.M_PER_DEG_LAT * math.cos(math.radians(lat0))
    width, height = (east - west) * m_lon, (north - south) * world.M_PER_DEG_LAT
    block, margin = 90.0, 40.0
    nx, ny = int((width - 2 * margin) // block), int((height - 2 * margin) // block)
    i, j = int(rng.integers(0, nx + 1)), int(rng.integers(0, ny + 1))
    dirs = [(1, 0), (0, 1), (-1, 0), (0, -1)]
    d = int(rng.integers(4))
    step = float(rng.uniform(2.5, 4.0))
    pts = [(i, j)]
    while (len(pts) - 1) * block < n * step + block:
        options = [(d + t) % 4 for t in (0, 0, 1, 3)] if rng.random() < 0.7 else \
            [(d + t) % 4 for t in (1, 3, 0)]
        rng.shuffle(options)
        for cand in [*options, (d + 2) % 4]:
            ni, nj = i + dirs[cand][0], j + dirs[cand][1]
            if 0 <= ni <= nx and 0 <= nj <= ny:
                i, j, d = ni, nj, cand
                break
        pts.append((i, j))
    arr = np.array(pts, dtype=np.float64) * block + margin
    seg = np.hypot(*np.diff(arr, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(n) * step
    xs = np.interp(t, cum, arr[:, 0]) + rng.normal(0, 1.5, n)
    ys = np.interp(t, cum, arr[:, 1]) + rng.normal(0, 1.5, n)
    k = np.clip(np.searchsorted(cum, t, side="right") - 1, 0, len(seg) - 1)
    heading = np.degrees(np.arctan2(np.diff(arr[:, 0]), np.diff(arr[:, 1])))[k] % 360
    return west + xs / m_lon, south + ys / world.M_PER_DEG_LAT, heading


def ensure_dense(data_dir: Path, seed: int) -> dict[str, Any]:
    """A small store whose one z14 tile holds 60 × 500 images (reused when its marker matches)."""
    meta = world.read_marker(data_dir)
    total = DENSE_SEQUENCES * DENSE_PER_SEQUENCE
    if meta and meta.get("schema") == world.schema_fingerprint() and \
            meta.get("images") == total and (data_dir / "wayview.db").exists() and \
            world.count_images(data_dir / "wayview.db") == total:
        return meta
    if data_dir.exists():
        import shutil

        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    x, y = lnglat_to_tile(*DENSE_CENTER, 14)
    bounds = tile_bounds(14, x, y)
    log(f"writing {total:,} images into z14 tile {x}/{y} of {data_dir} …")

    async def run() -> dict[str, Any]:
        rng = np.random.default_rng(seed + 202)
        store = open_store(Settings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]
        await store.open()
        started = time.perf_counter()
        try:
            people = await world.create_people(store, rng)
            for s in range(DENSE_SEQUENCES):
                k = int(rng.choice(world.USERS, p=people.weights))
                prof, user = people.profiles[k], people.users[k]
                org_id = people.orgs[prof.organization].id if prof.organization is not None \
                    else None
                seq = Sequence(id=f"dense{seed:02d}seq{s:013d}", creator_id=user.id,
                               organization_id=org_id)
                ids = await store.reserve_ids("image", DENSE_PER_SEQUENCE)
                lon, lat, compass = _dense_walk(rng, bounds, DENSE_PER_SEQUENCE)
                start = int(rng.integers(1_420_070_400_000, 1_735_689_600_000))
                images = [Image(
                    id=ids[j], sequence_id=seq.id, creator_id=user.id,
                    captured_at_ms=start + j * 1000, lon=float(lon[j]), lat=float(lat[j]),
                    width=prof.width, height=prof.height, altitude_m=40.0,
                    compass_angle_deg=round(float(compass[j]), 2), camera_type=prof.camera_type,
                    make=prof.make, model=prof.model, is_pano=prof.camera_type == "spherical",
                    organization_id=org_id,
                    content_sha256=hashlib.sha256(ids[j].to_bytes(8, "big")).hexdigest(),
                ) for j in range(DENSE_PER_SEQUENCE)]
                await store.insert_sequence(seq, images)
            return {"images": total, "sequences": DENSE_SEQUENCES, "tile": [14, x, y],
                    "client_token": people.client_token,
                    "generated_s": round(time.perf_counter() - started, 1),
                    "method": "SqliteStore.reserve_ids + insert_sequence",
                    "schema": world.schema_fingerprint()}
        finally:
            await store.close()

    meta = asyncio.run(run())
    (data_dir / world.MARKER).write_text(json.dumps(meta, indent=2) + "\n")
    log(f"dense store written in {meta['generated_s']} s")
    return meta


def measure_dense(data_dir: Path, meta: dict[str, Any], args: argparse.Namespace
                  ) -> dict[str, Any]:
    """Cold renders in-process (cache off) and one cold HTTP request per fresh server."""
    z, x, y = meta["tile"]
    db = data_dir / "wayview.db"
    inside = tiles_with(db, 14)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        from wayview.tiles.index import tile_range

        lo, hi = tile_range(z, x, y)
        in_tile = conn.execute("SELECT COUNT(*) FROM images WHERE qk BETWEEN ? AND ?",
                               (lo, hi)).fetchone()[0]
    finally:
        conn.close()

    meter = Meter()
    meter.wait_quiet(log=log)
    before = meter.snapshot()

    async def run() -> dict[str, Any]:
        store = open_store(Settings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]
        await store.open()
        try:
            svc = TileService(store, cache_max_bytes=0)
            t0 = time.perf_counter()
            first = await svc.tile("mly1_public", z, x, y)
            first_ms = (time.perf_counter() - t0) * 1000
            render, render_cpu, images, lines = [], [], [], []
            for _ in range(DENSE_RENDERS):
                t0 = time.perf_counter()
                await store.tile_images(z, x, y)
                t1 = time.perf_counter()
                await store.tile_sequence_lines(z, x, y)
                t2, c2 = time.perf_counter(), time.process_time()
                tile = await svc.tile("mly1_public", z, x, y)
                t3, c3 = time.perf_counter(), time.process_time()
                images.append((t1 - t0) * 1000)
                lines.append((t2 - t1) * 1000)
                render.append((t3 - t2) * 1000)
                render_cpu.append((c3 - c2) * 1000)
            t0 = time.perf_counter()
            gz = len(tile.gzipped())
            gzip_ms = (time.perf_counter() - t0) * 1000
            assert svc.renders == DENSE_RENDERS + 1
            import mapbox_vector_tile

            decoded = mapbox_vector_tile.decode(tile.body)
            return {"first_ms": first_ms, "min_ms": min(render),
                    "median_ms": statistics.median(render),
                    "median_cpu_ms": statistics.median(render_cpu),
                    "images_query_ms": statistics.median(images),
                    "lines_query_ms": statistics.median(lines), "gzip_ms": gzip_ms,
                    "bytes": len(tile.body), "gzip_bytes": gz,
                    "features": {k: len(v["features"]) for k, v in decoded.items()},
                    "first_body_equal": first.body == tile.body}
        finally:
            await store.close()

    out = asyncio.run(run())
    out["other_cores"] = meter.delta(before, meter.snapshot())["other_cores"]
    out["images_in_tile"] = in_tile
    out["tiles_touched_z14"] = len(inside)
    path = tile_path("mly1_public", z, x, y, meta["client_token"])

    def get(client: httpx.Client) -> float:
        t0 = time.perf_counter()
        r = client.get(path)
        ms = (time.perf_counter() - t0) * 1000
        if r.status_code != 200 or len(r.content) != out["bytes"]:
            raise RuntimeError(f"dense tile over HTTP: {r.status_code}, {len(r.content)} bytes "
                               f"(in-process {out['bytes']})")
        return ms

    identity = {"Accept-Encoding": "identity"}
    # steady state: a server without tile cache, one connection, the tile asked again and again
    # (each answer is a fresh render; the first request warms the worker up and is not counted)
    with Server(data_dir, args.workers, args.server_log_level, "dense",
                {"WAYVIEW_TILES__CACHE_MAX_BYTES": "0"}) as server:
        with httpx.Client(base_url=server.base_url, timeout=60, headers=identity) as client:
            get(client)
            meter.wait_quiet(log=log)
            steady = [get(client) for _ in range(DENSE_RENDERS)]
    out["http_ms"] = steady
    out["http_median_ms"] = statistics.median(steady)
    out["http_min_ms"] = min(steady)
    log("  dense tile over HTTP, no tile cache: " + ", ".join(f"{v:.0f}" for v in steady)
        + " ms")
    # the very first request of freshly started servers (default settings)
    first = []
    for _ in range(DENSE_HTTP_SERVERS):
        with Server(data_dir, args.workers, args.server_log_level, "dense") as server:
            meter.wait_quiet(log=log)
            with httpx.Client(base_url=server.base_url, timeout=60, headers=identity) as client:
                first.append(get(client))
    out["http_first_ms"] = first
    log("  dense tile over HTTP, first request of a fresh server: "
        + ", ".join(f"{v:.0f}" for v in first) + " ms")
    return out


# -- encoder ---------------------------------------------------------------------------------


def measure_encoder(repeat: int) -> list[dict[str, Any]]:
    """bench/tiles_encoder.py's cases (same seed, same order): ours vs mapbox-vector-tile."""
    import tiles_encoder as te

    from wayview.tiles.mvt import encode_tile

    rng = np.random.default_rng(1)
    image, image_feats = te.image_case(rng, 2000)
    seq, seq_feats = te.sequence_case(rng, 500, 20)
    dense, dense_feats = te.image_case(rng, 30000)
    cases = [("z14 `image`, 2,000 points × 6 props", image, "image", image_feats, repeat),
             ("z10 `sequence`, 500 lines × 20 vertices", seq, "sequence", seq_feats, repeat),
             ("z14 `image`, 30,000 points × 6 props", dense, "image", dense_feats, 3)]
    out = []
    for name, layer, lname, feats, ref_repeat in cases:
        def ours(layer: Any = layer) -> bytes:
            return encode_tile([layer])

        ref = te.reference_encoder(lname, feats)
        a, b = ours(), ref()
        if te.decoded(a) != te.decoded(b):
            raise RuntimeError(f"encoder case {name}: the two encoders' tiles decode differently")
        ours_ms, ours_wall = te.timed_ms(ours, repeat)
        ref_ms, _ = te.timed_ms(ref, ref_repeat)
        out.append({"case": name, "bytes": len(a), "ours_ms": ours_ms, "ours_wall_ms": ours_wall,
                    "reference_ms": ref_ms, "speedup": ref_ms / ours_ms})
        log(f"  encoder {name}: {ours_ms:.2f} ms vs {ref_ms:.1f} ms = {ref_ms / ours_ms:.1f}×")
    return out


def speed_check() -> dict[str, float]:
    """CPU ms of two fixed workloads (best of 3): how fast the (shared, virtual) machine is now.

    The same code measured at different times on the bench VM varied by up to 2× with nothing
    else running in the VM (host contention); rows measured while these numbers are high are
    slow for that reason.
    """
    def loop() -> None:
        total = 0
        for i in range(3_000_000):
            total += i

    def sort() -> None:
        np.sort(np.random.default_rng(1).integers(0, 2**40, 1_000_000))

    out = {}
    for name, fn in (("python_loop_ms", loop), ("numpy_sort_ms", sort)):
        best = math.inf
        for _ in range(3):
            t0 = time.process_time()
            fn()
            best = min(best, time.process_time() - t0)
        out[name] = round(best * 1000, 1)
    return out


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
            "numpy": np.__version__, "wrk": wrk_version.split(" Copyright")[0]}


def fmt_ms(v: float) -> str:
    """Milliseconds with sensible precision."""
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_bytes(v: float) -> str:
    """Bytes as B / KB / MB (1 KB = 1,024 bytes)."""
    if v >= 1024 * 1024:
        return f"{v / 1024 / 1024:.2f} MB"
    if v >= 1024:
        return f"{v / 1024:.1f} KB"
    return f"{v:.0f} B"


def render(scenarios: list[Scenario], counts: dict[str, int], ip: dict[str, Any] | None,
           dense: dict[str, Any] | None, enc: list[dict[str, Any]] | None,
           meta: dict[str, Any], facts: dict[str, str], args: argparse.Namespace,
           command: str, gen: dict[str, Any] | None = None,
           pre: dict[str, Any] | None = None) -> str:
    """The markdown section: settings, the table, the in-process breakdown."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sets = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    lines = [
        f"Measured {when} with `{command}`.",
        "",
        f"- Machine: {facts['nproc']} cores ({facts['cpu']}), {facts['memory_gib']} GiB RAM, "
        f"{facts['os']}; Python {facts['python']}, SQLite {facts['sqlite']}, numpy "
        f"{facts['numpy']}, granian {facts['granian']}, {facts['wrk']}. wrk runs on the same "
        "cores as the server. Speed check (CPU ms of a 3 M-step Python loop / a numpy sort of "
        f"1 M integers, at the start → end of the run): {facts['speed']}; the same checks "
        "ranged 116–217 ms / 21–31 ms on this VM within minutes with nothing else running in it "
        "(host contention), and all figures below move with them.",
        f"- Store: the bench/graph.py city, {meta['images']:,} images in "
        f"{meta['sequences']:,} sequences over 30 × 30 km (bench/world.py, "
        f"`{meta['method']}`), plus {FEATURES_SIGNS:,} traffic signs and {FEATURES_POINTS:,} "
        "points added with `store.insert_map_features`. Non-empty tiles per set: "
        f"{sets} (every tile holding an image, resp. a traffic sign).",
        f"- Server: `wayview serve --workers {args.workers}`, log level "
        f"`{args.server_log_level}`, default settings otherwise. wrk `-t{args.threads} "
        f"-c{args.connections} -d{args.duration:g}s --latency`, a Lua script rotating through "
        f"the paths (token in `?access_token=`); {args.warmup:g} s warm-up run first. Latencies "
        "are saturated (no think time): mostly queueing, ≈ connections ÷ tiles/s.",
        "- **Cold** = no tile cache: the server runs with `WAYVIEW_TILES__CACHE_MAX_BYTES=0`, so "
        "`TileService` keeps no rendered tile (checked in-process: a repeated tile is rendered "
        "again) and every request reads the tile index and encodes, except z6–13, whose "
        "requests read the body kept rendered in the store (prerendered before the runs, as "
        "the job runner does after writes; issue #21); the whole set rotates. "
        "**Cold, each tile once** = freshly started servers with the default cache, each "
        "wrk thread owns a disjoint slice of the z14 set and stops after its last response, so "
        "each tile is requested exactly once per server. **Warm** = default server, "
        f"at most {WARM_SET} tiles of the set, already in both workers' caches. SQLite's and "
        "the OS's page caches are warm in all rows (a running server's steady state). The rows "
        f"marked *access log off* run the same servers with `WAYVIEW_LOG_LEVEL={QUIET_LOG_LEVEL}`"
        " (the shipped `info` writes one access-log line per request).",
        "",
        "| Measurement | tiles in set | tiles/s | p50 ms | p99 ms | mean response | server CPU "
        "ms/tile | target | result |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in scenarios:
        r = s.result
        if r is None:
            continue
        verdict = s.verdict + (f" ({'; '.join(s.notes)})" if s.notes else "")
        lines.append(
            f"| {s.label} | {len(s.paths):,} | {r.rps:,.0f} | {fmt_ms(r.p50_ms)} | "
            f"{fmt_ms(r.p99_ms)} | {fmt_bytes(s.mean_body_bytes)} | "
            f"{s.cpu.get('server_us_per_req', 0) / 1000:.2f} | {s.target} | {verdict} |")
    if dense:
        ok = dense["median_ms"] < DENSE_TARGET_MS
        http_ok = dense["http_median_ms"] < DENSE_TARGET_MS
        feats = ", ".join(f"{k} {v:,}" for k, v in dense["features"].items())
        lines.append(
            f"| Dense z14 tile, {dense['images_in_tile']:,} images, cold render in-process "
            f"(`TileService`, cache off; min / median of {DENSE_RENDERS}) | 1 | | "
            f"{fmt_ms(dense['min_ms'])} / {fmt_ms(dense['median_ms'])} | | "
            f"{fmt_bytes(dense['bytes'])} (gzip {fmt_bytes(dense['gzip_bytes'])}) | | "
            f"< {DENSE_TARGET_MS:g} ms | {'**pass**' if ok else '**FAIL**'} ({feats}) |")
        lines.append(
            f"| Dense z14 tile over HTTP, server without tile cache (min / median of "
            f"{DENSE_RENDERS} requests on one connection) | 1 | | "
            f"{fmt_ms(dense['http_min_ms'])} / {fmt_ms(dense['http_median_ms'])} | | "
            f"{fmt_bytes(dense['bytes'])} | | < {DENSE_TARGET_MS:g} ms | "
            f"{'**pass**' if http_ok else '**FAIL**'} |")
    for e in enc or []:
        ok = e["speedup"] >= ENCODER_SPEEDUP_TARGET
        lines.append(
            f"| Encoder alone: {e['case']} (wayview vs mapbox-vector-tile, CPU ms) | | | "
            f"{fmt_ms(e['ours_ms'])} vs {fmt_ms(e['reference_ms'])} | | {fmt_bytes(e['bytes'])} "
            f"| | ≥ {ENCODER_SPEEDUP_TARGET:g}× | {'**pass**' if ok else '**FAIL**'} "
            f"({e['speedup']:.1f}×) |")
    if ip:
        big = ip["low_zoom"]["largest"]
        ok = big["bytes"] < LOW_ZOOM_TARGET_BYTES
        lines.append(
            f"| Largest z0–5 tile (z{big['z']}/{big['x']}/{big['y']}, `overview`) | "
            f"{len(ip['low_zoom']['max_bytes_per_zoom'])} zooms | | | | "
            f"{fmt_bytes(big['bytes'])} (gzip {fmt_bytes(big['gzip_bytes'])}) | | "
            f"< {LOW_ZOOM_TARGET_BYTES // 1024} KB | {'**pass**' if ok else '**FAIL**'} |")
    cpu = [s.cpu for s in scenarios if s.cpu]
    if cpu:
        lines += ["", "*Server CPU ms/tile* = CPU time of the server processes during the run ÷ "
                  "responses (both workers together). During the runs the server used "
                  f"{min(c['server_cores'] for c in cpu):.2f}–"
                  f"{max(c['server_cores'] for c in cpu):.2f} cores, wrk "
                  f"{min(c['bench_cores'] for c in cpu):.2f}–"
                  f"{max(c['bench_cores'] for c in cpu):.2f}, other processes at most "
                  f"{max(c['other_cores'] for c in cpu):.2f}. *Mean response* = bytes wrk read "
                  "÷ responses (headers included)."]
    if ip:
        lines += ["", "Where a cold tile's time goes: `TileService` in-process with the cache "
                  "off, one tile at a time, every tile of the set (after a warm-up pass); mean CPU "
                  "ms per tile of the process (event loop + SQLite reader thread). *image rows* = "
                  "`store.tile_images`, *sequence lines* = `store.tile_sequence_lines`, *layers + "
                  "encode* = the rest of the render (numpy columns and `encode_tile`); other "
                  f"processes used {ip.get('other_cores', 0):.2f} cores meanwhile.", "",
                  "| zoom | tiles | epoch read | image rows | sequence lines | layers + encode "
                  "| render total | gzip | mean body | mean gzip | largest |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for z in ZOOMS:
            p = ip[f"z{z}"]
            lines.append(
                f"| z{z} | {p['tiles']:,} | {p['epoch_ms']:.2f} | {p['images_ms']:.2f} | "
                f"{p['lines_ms']:.2f} | {p['build_encode_ms']:.2f} | {p['render_ms']:.2f} | "
                f"{p['gzip_ms']:.2f} | {fmt_bytes(p['mean_bytes'])} | "
                f"{fmt_bytes(p['mean_gzip_bytes'])} | {fmt_bytes(p['max_bytes'])} |")
    if dense:
        lines += ["", f"Dense tile ({dense['images_in_tile']:,} images of "
                  f"{DENSE_SEQUENCES} sequences × {DENSE_PER_SEQUENCE}, written through "
                  "`insert_sequence` into a separate store): image rows "
                  f"{dense['images_query_ms']:.1f} ms, sequence lines "
                  f"{dense['lines_query_ms']:.1f} ms, whole render {dense['median_ms']:.1f} ms "
                  f"(median wall; {dense['median_cpu_ms']:.1f} ms CPU), gzip of the body "
                  f"{dense['gzip_ms']:.1f} ms; first render in a fresh process "
                  f"{dense['first_ms']:.1f} ms; other processes used "
                  f"{dense['other_cores']:.2f} cores meanwhile. Over HTTP, the first request "
                  "to a freshly started server (default settings) took "
                  + ", ".join(f"{v:.0f}" for v in dense["http_first_ms"])
                  + " ms (process warm-up included)."]
    if gen:
        lines += ["", "z6–13 tiles, coverage thinning (`wayview.tiles.generalise`, in-process, "
                  "every tile holding a line): *without* = every sequence's line as stored in "
                  "the tile index, *with* = the tile served; *render CPU* = reading the lines, "
                  "thinning and encoding (what prerendering costs per tile), *stored read* = "
                  "`TileService` with the cache off reading the prerendered body; *pixels "
                  "changed* = pixels of the tile drawn with one-pixel lines at 512 pixels per "
                  "tile (8 extent units) drawn without thinning but not with it, and those "
                  "farther than one pixel from any line drawn with it.", "",
                  generalised_table(gen, pre)]
    return "\n".join(lines)


def _section_spans(text: str) -> list[tuple[int, int]]:
    """Where this section is in the file: from its heading to its end marker (a generated
    section; whatever follows the marker stays) or, without marker, to the next `## ` heading."""
    spans = []
    for m in re.finditer(r"^" + re.escape(SECTION) + r"[ \t]*$", text, re.M):
        if spans and m.start() < spans[-1][1]:
            continue
        nxt = re.compile(r"^## ", re.M).search(text, m.end())
        stop = nxt.start() if nxt else len(text)
        marker = text.find(END, m.end(), stop)
        if marker != -1:
            stop = marker + len(END)
            stop += text[stop:stop + 1] == "\n"
        spans.append((m.start(), stop))
    return spans


def write_docs(body: str) -> None:
    """Replace this section of docs/performance.md (every copy of it; the first one's place is
    kept), or append it; the other sections stay as they are."""
    block = f"{SECTION}\n\n{START}\n{body}\n{END}\n"
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    spans = _section_spans(text)
    if not spans:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        for start, stop in reversed(spans[1:]):  # duplicates go
            text = text[:start] + text[stop:]
        start, stop = spans[0]
        rest = text[stop:].lstrip("\n")
        text = text[:start] + block + ("\n" + rest if rest else "")
        text = text.rstrip("\n") + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    log(f"updated {DOC.relative_to(REPO)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="default: bench/.data/graph-<N>, the store of bench/graph.py")
    ap.add_argument("--dense-dir", type=Path, default=BENCH / ".data" / "tiles-dense-30k")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per row")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections")
    ap.add_argument("--server-log-level", default="info",
                    help="WAYVIEW_LOG_LEVEL of the server (info = shipped default)")
    ap.add_argument("--only", default=None,
                    help="comma list of wrk rows (healthz,cold3,warm3,…,once14,cold14gz,"
                         "warm14gz,coldsign,warmsign,healthzq,cold14q,warm3q,warm14q); skips "
                         "the non-wrk parts unless listed: dense,encoder,inprocess,generalised")
    ap.add_argument("--retries", type=int, default=2,
                    help="re-run a measurement this often when other processes were busy")
    ap.add_argument("--encoder-repeat", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--generator", choices=("bulk", "public"), default="bulk")
    ap.add_argument("--write-docs", action="store_true",
                    help="replace the 'Vector tiles (bench/tiles.py)' section of "
                         "docs/performance.md")
    args = ap.parse_args(argv)

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds the `with Server(...)` blocks: servers stop

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    if args.data_dir is None:
        n = args.images
        name = f"{n // 1_000_000}m" if n % 1_000_000 == 0 else (
            f"{n // 1000}k" if n % 1000 == 0 else str(n))
        args.data_dir = BENCH / ".data" / f"graph-{name}"
    args.data_dir = args.data_dir.resolve()
    command = "python bench/tiles.py " + " ".join(argv if argv is not None else sys.argv[1:])
    only = set(args.only.split(",")) if args.only else None

    def wanted(key: str) -> bool:
        return only is None or key in only

    non_wrk = {"dense", "encoder", "inprocess", "generalised"}
    if (only is None or only - non_wrk) and loadgen.wrk_path() is None:
        log("wrk is not installed: apt-get install -y wrk")
        return 2

    meta = world.ensure_world(args.data_dir, args.images, seed=args.seed,
                              method=args.generator, log=log)
    ensure_map_features(args.data_dir, args.seed)
    db = args.data_dir / "wayview.db"
    scenarios, counts = build_scenarios(db, meta["client_token"], args.seed)
    scenarios = [s for s in scenarios if wanted(s.key)]
    log("tile sets: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if not check_cache_off(args.data_dir):
        raise RuntimeError("TileService(cache_max_bytes=0) did not render a repeated tile again")
    speed = [speed_check()]
    log(f"machine speed check: {speed[0]}")
    ip = None
    if wanted("inprocess"):
        log("in-process render breakdown and z0–5 sizes …")
        ip = in_process(args.data_dir)
        for z in ZOOMS:
            p = ip[f"z{z}"]
            log(f"  z{z}: {p['tiles']} tiles, render {p['render_ms']:.2f} ms/tile (epoch "
                f"{p['epoch_ms']:.2f}, images {p['images_ms']:.2f}, lines {p['lines_ms']:.2f}, "
                f"layers+encode {p['build_encode_ms']:.2f}), gzip {p['gzip_ms']:.2f} ms, mean "
                f"{fmt_bytes(p['mean_bytes'])}")
        log(f"  largest z0–5 tile: {ip['low_zoom']['largest']}")
    pre = None
    if only is None or only - non_wrk or "generalised" in only:
        log("prerendering the z6–13 tiles into the store …")
        pre = prerender(args.data_dir)
        log(f"  {pre['tiles']:,} tiles in {pre['wall_s']:.1f} s")
    gen = None
    if wanted("generalised"):
        log("z6–13 coverage thinning: sizes and pixels …")
        gen = generalised(args.data_dir)
        log(generalised_table(gen, pre))
    run_wrk_rows(scenarios, args.data_dir, args)
    dense = None
    if wanted("dense"):
        dense_meta = ensure_dense(args.dense_dir.resolve(), args.seed)
        dense = measure_dense(args.dense_dir.resolve(), dense_meta, args)
        log(f"  dense tile: {dense['images_in_tile']:,} images, render min "
            f"{dense['min_ms']:.1f} / median {dense['median_ms']:.1f} ms, HTTP "
            f"{dense['http_median_ms']:.1f} ms, {fmt_bytes(dense['bytes'])}")
    enc = measure_encoder(args.encoder_repeat) if wanted("encoder") else None
    speed.append(speed_check())
    log(f"machine speed check: {speed[-1]}")
    facts = machine_facts()
    facts["speed"] = " → ".join(
        f"{v['python_loop_ms']:.0f} ms / {v['numpy_sort_ms']:.0f} ms" for v in speed)
    body = render(scenarios, counts, ip, dense, enc, meta, facts, args, command.strip(), gen,
                  pre)
    print(f"{SECTION}\n\n{body}")
    results = {"speed_check": speed, "scenarios": [{"key": s.key, "label": s.label, "paths": len(s.paths),
                              "gzip": s.gzip, "runs": s.runs, "verdict": s.verdict,
                              "notes": s.notes} for s in scenarios],
               "tile_sets": counts, "in_process": ip, "prerender": pre,
               "generalised": {z: {k: v for k, v in r.items() if not isinstance(v, list)}
                               for z, r in (gen or {}).items() if isinstance(r, dict)}, "dense": dense, "encoder": enc,
               "meta": {k: v for k, v in meta.items() if k != "client_token"},
               "command": command.strip(), "when": datetime.now(UTC).isoformat()}
    (args.data_dir / "results-tiles.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.write_docs:
        write_docs(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
