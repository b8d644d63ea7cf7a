"""bench/peers.py: wayview side by side with its peers on one synthetic dataset.

    python bench/peers.py [--images 1000000] [--duration 10] [--repeat 3] [--write-docs]
    python bench/peers.py --images 100000 --repeat 1        # a quick end-to-end run

One dataset (the bench/graph.py city: N images in ~N/200 sequences, generated once into
bench/.data/graph-<N>/ by bench/world.py) served by four servers, the three PostgreSQL ones on
the same PostgreSQL 15 + PostGIS 3 cluster (bench/.data/peers-pg, kept between runs):

- **wayview on SQLite**: `wayview serve --workers 2` on the generated store;
- **wayview on PostgreSQL**: the same store copied with `wayview migrate-store` into the
  database `wayview_<N>`, served with `WAYVIEW_DATABASE_URL`;
- **Panoramax (GeoVisio 2.15.1)**: its own virtualenv (bench/.data/venv-geovisio), its schema
  from its migrations, the same images and sequences as rows (bench/peers/geovisio_load.py),
  served by gunicorn as its docs show for production (`--workers 2 --threads 4`);
- **tipg 1.6.1**: its own virtualenv (bench/.data/venv-tipg), serving a view of wayview's
  `images` and a table of sequence lines (bench/peers/tipg_sql.py) in `wayview_<N>`, with
  `uvicorn --workers 2`.

Every database load is recorded with a fingerprint (database comment) and skipped when it
matches. For each endpoint kind every server gets the same ids / bboxes / tiles (in its own URL
form); every path is requested once and must answer 200 with a non-empty body (and the expected
id / row count) before any timing. Then, per server and endpoint: a wrk warm-up, `--repeat`
saturated runs of `wrk -t2 -c64` (median reported) with the CPU of the server processes and of
PostgreSQL read from /proc. Optionally (`--mvt`, on by default) a second table compares
wayview's MVT encoder with PostGIS `ST_AsMVT` in-process on the same tiles.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = BENCH / ".data"
sys.path.insert(0, str(BENCH))

import graph  # noqa: E402
import loadgen  # noqa: E402
import targets as tg  # noqa: E402
import tiles as tilebench  # noqa: E402
import world  # noqa: E402
from cpumeter import OTHER_LOAD_LIMIT_CORES, CpuMeter  # noqa: E402
from peers import geovisio_load, tipg_sql  # noqa: E402
from peers.cluster import Cluster, descendants  # noqa: E402
from serverproc import ServerProcess, free_port  # noqa: E402

DOC = REPO / "docs" / "performance.md"
SECTION = "## Side by side with peers (bench/peers.py)"
START, END = "<!-- bench/peers.py:start -->", "<!-- bench/peers.py:end -->"
GEOVISIO_SPEC = "geovisio==2.15.1"
TIPG_SPEC = "tipg==1.6.1"
TIPG_EXTRA = ["uvicorn"]  # tipg's docs run it with uvicorn, which it does not depend on
LOAD_VERSION = 1
TARGET_RATIO = 3.0
NODE_PATHS = 2000
BBOX_PATHS = 200
BBOX_ROWS = 10
BBOX_MARGIN_DEG = 2e-5  # ~2 m: float32 boxes, rounded outward, are off by up to ~8e-6° here
#: wayview fields asked for in the id and bbox rows (the peers always return whole features)
NODE_FIELDS = tg.NODE_FIELDS
BBOX_FIELDS = "id,geometry,captured_at,compass_angle,sequence,creator,camera_type"
WAYVIEW = ("wv-sqlite", "wv-pg", "wv-sqlite-cold", "wv-pg-cold")
PEERS = ("geovisio", "tipg")
TILE_ROWS = ("z14", "lines", "overview")


def log(msg: str) -> None:
    """Progress to stderr (the table goes to stdout)."""
    print(msg, file=sys.stderr, flush=True)


# -- data: the store, the PostgreSQL copies, the peers' virtualenvs ----------------------------


def label_of(images: int) -> str:
    """1m, 100k, 5m … (as bench/graph.py names its data folders)."""
    if images % 1_000_000 == 0:
        return f"{images // 1_000_000}m"
    return f"{images // 1000}k" if images % 1000 == 0 else str(images)


def ensure_venv(path: Path, specs: list[str], module: str, version: str) -> None:
    """A virtualenv with `specs` installed (pip), unless `module` is already at `version`."""
    py = path / "bin" / "python"
    if py.exists():
        got = subprocess.run([str(py), "-c", f"import importlib.metadata as m; "
                              f"print(m.version({module!r}))"], capture_output=True, text=True,
                             check=False).stdout.strip()
        if got == version:
            return
    log(f"creating {path.relative_to(REPO)} with {' '.join(specs)} …")
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *specs], check=True)


def wayview_fingerprint(meta: dict[str, Any]) -> str:
    """What the PostgreSQL copy depends on: the store (count, schema, seed, generation) and
    this loader (including the tipg objects)."""
    tipg = hashlib.sha256(tipg_sql.SCHEMA_SQL.encode()).hexdigest()[:8]
    return (f"wayview images={meta['images']} schema={meta['schema']} seed={meta['seed']} "
            f"generated={meta['generated_s']} load={LOAD_VERSION} tipg={tipg}")


def load_once(cluster: Cluster, db: str, fp: str, what: str, load: Callable[[], str]) -> None:
    """Recreate `db` and fill it with `load()` (which says how long it took) unless the
    database already carries fingerprint `fp`; the fingerprint is set only after a full load."""
    if cluster.fingerprint(db) == fp:
        log(f"reusing PostgreSQL database {db}")
        return
    log(f"loading {db}: {what} …")
    cluster.recreate(db)
    done = load()
    cluster.mark_loaded(db, fp)
    log(f"  {db} loaded: {done}")


def ensure_loaded(cluster: Cluster, data_dir: Path, meta: dict[str, Any], label: str,
                  work: Path) -> dict[str, Any]:
    """wayview_<label> (migrate-store + tipg objects) and geovisio_<label>, unless loaded."""
    info: dict[str, Any] = {}
    wv_db, gv_db = f"wayview_{label}", f"geovisio_{label}"
    fp = wayview_fingerprint(meta)

    def load_wayview() -> str:
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "wayview", "migrate-store", "--from",
                        f"sqlite://{data_dir / 'wayview.db'}", "--to", cluster.url(wv_db)],
                       check=True, stdout=subprocess.DEVNULL)
        info["migrate_store_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        with psycopg.connect(cluster.url(wv_db), autocommit=True) as conn:
            conn.execute(tipg_sql.SCHEMA_SQL)
            conn.execute("VACUUM ANALYZE")
        info["tipg_objects_s"] = round(time.monotonic() - started, 1)
        return (f"migrate-store {info['migrate_store_s']} s, tipg objects + VACUUM ANALYZE "
                f"{info['tipg_objects_s']} s")

    def load_geovisio() -> str:
        started = time.monotonic()
        phases = geovisio_load.load(cluster.url(wv_db), cluster.url(gv_db),
                                    DATA / "venv-geovisio", work / "geovisio", log=log)
        info["geovisio_load_s"] = round(time.monotonic() - started, 1)
        info["geovisio_phases_s"] = {k: round(v, 1) for k, v in phases.items()}
        return f"{info['geovisio_load_s']} s: {info['geovisio_phases_s']}"

    load_once(cluster, wv_db, fp, "wayview migrate-store", load_wayview)
    load_once(cluster, gv_db, f"{fp} {GEOVISIO_SPEC} geovisio_load={geovisio_load.LOADER_VERSION}",
              "GeoVisio schema and rows", load_geovisio)
    return info


# -- servers -----------------------------------------------------------------------------------


@dataclass
class Spec:
    """How to start one server under test."""

    key: str
    name: str
    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    health: str
    uses_pg: bool
    note: str = ""


class Server(ServerProcess):
    """A server in its own process group on a free loopback port; always stopped on exit."""

    start_timeout_s = 120.0
    poll_s = 0.3
    probe_timeout_s = 2.0
    settle_s = 2.0
    term_wait_s = 20.0
    kill_wait_s = 10.0

    def __init__(self, spec: Spec, port: int, cluster: Cluster) -> None:
        self.spec = spec
        self.name = spec.name
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.cluster = cluster
        self.log_path = spec.cwd / f"peers-{spec.key}.log"

    def __enter__(self) -> Server:
        self.spec.cwd.mkdir(parents=True, exist_ok=True)
        self.launch(self.spec.cmd, cwd=self.spec.cwd, env=self.spec.env, health=self.spec.health)
        return self

    def app_pids(self) -> list[int]:
        """The server process and everything below it (workers)."""
        return [self.proc.pid, *descendants(self.proc.pid)] if self.proc else []

    def db_pids(self) -> list[int]:
        """PostgreSQL's processes, when this server uses it (nothing else does meanwhile)."""
        return self.cluster.pids() if self.spec.uses_pg else []


def server_specs(cluster: Cluster, data_dir: Path, label: str, work: Path,
                 workers: int) -> dict[str, Spec]:
    """The four servers (plus wayview with its tile cache off, for the tile rows)."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("WAYVIEW_", "DB_", "FS_", "TIPG_", "DATABASE_URL"))}
    wv_env = {**base, "WAYVIEW_LOG_LEVEL": "info",
              # one client token drives every run: budgets that never refuse (still counted)
              "WAYVIEW_RATE_LIMIT__GRAPH_PER_MINUTE": str(10**12),
              "WAYVIEW_RATE_LIMIT__TILES_PER_DAY": str(10**12)}
    pg_env = {**wv_env, "WAYVIEW_DATABASE_URL": cluster.url(f"wayview_{label}")}
    cold = {"WAYVIEW_TILES__CACHE_MAX_BYTES": "0"}

    def wayview(key: str, name: str, d: Path, env: dict[str, str], pg: bool, note: str) -> Spec:
        port_ph = "{port}"
        return Spec(key, name, [sys.executable, "-m", "wayview", "serve", "--data-dir", str(d),
                                "--host", "127.0.0.1", "--port", port_ph, "--workers",
                                str(workers)], env, d, "/healthz", pg, note)

    pg_dir = work / "wayview-pg"
    gv_dir = work / "geovisio"
    gv = DATA / "venv-geovisio" / "bin"
    tp = DATA / "venv-tipg" / "bin"
    # tipg validates DATABASE_URL as a URL with a host: the socket folder, percent-encoded
    socket_host = str(cluster.root).replace("/", "%2F")
    return {
        "wv-sqlite": wayview("wv-sqlite", "wayview, SQLite", data_dir, wv_env, False,
                             "shipped defaults (tile cache on)"),
        "wv-pg": wayview("wv-pg", "wayview, PostgreSQL", pg_dir, pg_env, True,
                         "shipped defaults (tile cache on)"),
        "wv-sqlite-cold": wayview("wv-sqlite-cold", "wayview, SQLite, tile cache off", data_dir,
                                  {**wv_env, **cold}, False,
                                  "`WAYVIEW_TILES__CACHE_MAX_BYTES=0`: every tile rendered"),
        "wv-pg-cold": wayview("wv-pg-cold", "wayview, PostgreSQL, tile cache off", pg_dir,
                              {**pg_env, **cold}, True,
                              "`WAYVIEW_TILES__CACHE_MAX_BYTES=0`: every tile rendered"),
        "geovisio": Spec(
            "geovisio", "Panoramax API (GeoVisio 2.15.1)",
            [str(gv / "gunicorn"), "--workers", str(workers), "--threads", "4", "-b",
             "127.0.0.1:{port}", "geovisio:create_app()"],
            {**base, "DB_URL": cluster.url(f"geovisio_{label}"), "FS_URL": str(gv_dir / "fs"),
             "DB_CHECK_SCHEMA": "false"}, gv_dir, "/api/configuration", True,
            f"gunicorn --workers {workers} --threads 4 (its documented production command), "
            "default settings"),
        "tipg": Spec(
            "tipg", "tipg 1.6.1",
            [str(tp / "uvicorn"), "tipg.main:app", "--host", "127.0.0.1", "--port", "{port}",
             "--workers", str(workers)],
            {**base, "DATABASE_URL": f"postgresql://postgres@{socket_host}/wayview_{label}",
             "TIPG_DB_SCHEMAS": '["tipg"]'}, work / "tipg", "/conformance", True,
            f"uvicorn --workers {workers}, default settings (max 10,000 features per tile)"),
    }


def start(spec: Spec, cluster: Cluster) -> Server:
    """Fill in the port and start."""
    port = free_port()
    spec = Spec(spec.key, spec.name, [c.replace("{port}", str(port)) for c in spec.cmd],
                spec.env, spec.cwd, spec.health, spec.uses_pg, spec.note)
    return Server(spec, port, cluster).__enter__()


# -- rows: equivalent requests per server ------------------------------------------------------


@dataclass
class Row:
    """One kind of request, in every server's URL form (None + reason: no equivalent)."""

    key: str
    label: str
    paths: dict[str, list[str]]
    what: dict[str, str]
    na: dict[str, str] = field(default_factory=dict)
    expect: dict[str, list[Any]] = field(default_factory=dict)  # per family: per path


def family(server: str) -> str:
    return "wayview" if server in WAYVIEW else server


def tile_children_with_data(db: Path, parents: list[tuple[int, int]], z: int
                            ) -> list[tuple[int, int]]:
    """For each zoom-(z-1) tile, one of its zoom-z children holding images."""
    have = set(tilebench.tiles_with(db, z))
    out = []
    for x, y in parents:
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            if (2 * x + dx, 2 * y + dy) in have:
                out.append((2 * x + dx, 2 * y + dy))
                break
    return out


#: Rounds of 10 × BBOX_PATHS candidate boxes `robust_bboxes` draws at most.
BBOX_ROUNDS = 10


def robust_bboxes(pts: tg.Points, rng: np.random.Generator) -> list[str]:
    """`BBOX_PATHS` bboxes (bench/targets.py) holding exactly `BBOX_ROWS` images, kept only when
    the count stays the same with the box grown or shrunk by BBOX_MARGIN_DEG: GeoVisio filters
    with `geom && envelope`, PostGIS's float32 bounding boxes, which admit points a few
    centimetres outside the box."""
    order = np.argsort(pts.lon)
    lon, lat = pts.lon[order], pts.lat[order]
    out: list[str] = []
    # At 5 M images a box of 10 images is a few metres wide and most candidates change count
    # within the margin: draw more rounds of candidates before giving up.
    for _ in range(BBOX_ROUNDS):
        for t in tg.bbox_targets(pts, rng, 10 * BBOX_PATHS, BBOX_ROWS):
            text = re.search(r"bbox=([^&]+)", t.path).group(1)  # type: ignore[union-attr]
            w, s, e, n = map(float, text.split(","))
            counts = set()
            for d in (-BBOX_MARGIN_DEG, BBOX_MARGIN_DEG):
                a = int(np.searchsorted(lon, w - d, side="left"))
                b = int(np.searchsorted(lon, e + d, side="right"))
                la = lat[a:b]
                counts.add(int(np.count_nonzero((la >= s - d) & (la <= n + d))))
            if counts == {BBOX_ROWS} and text not in out:
                out.append(text)
                if len(out) == BBOX_PATHS:
                    return out
    raise RuntimeError(f"only {len(out)} bboxes of {BBOX_ROWS} images with a "
                       f"{BBOX_MARGIN_DEG}° margin in {BBOX_ROUNDS} rounds of candidates")


def build_rows(db: Path, token: str, seed: int) -> tuple[list[Row], dict[str, int]]:
    """Every row's paths for every server family, from the SQLite store (seeded)."""
    rng = np.random.default_rng(seed)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        all_ids = np.array([r[0] for r in conn.execute("SELECT id FROM images ORDER BY id")],
                           dtype=np.int64)
        picks = [int(i) for i in rng.choice(all_ids, size=min(NODE_PATHS, len(all_ids)),
                                            replace=False)]
        seq_of = dict(conn.execute(
            f"SELECT id, sequence_id FROM images WHERE id IN ({','.join(map(str, picks))})"
        ).fetchall())
    finally:
        conn.close()
    q = f"access_token={token}"
    gu = geovisio_load.geovisio_uuid
    rows = [Row("node", "one image by id",
                {"wayview": [f"/{i}?fields={NODE_FIELDS}&{q}" for i in picks],
                 "geovisio": [f"/api/collections/{gu('seq', seq_of[i])}/items/{gu('img', i)}"
                              for i in picks],
                 "tipg": [f"/collections/tipg.images/items/{i}" for i in picks]},
                {"wayview": "`GET /{id}?fields=` (10 fields)",
                 "geovisio": "`GET /api/collections/{seq}/items/{pic}` (STAC item)",
                 "tipg": "`GET /collections/tipg.images/items/{id}` (GeoJSON feature)"},
                expect={"wayview": [str(i) for i in picks], "geovisio": [gu("img", i)
                                                                         for i in picks],
                        "tipg": picks})]
    bb = robust_bboxes(tg.load_points(db), rng)
    rows.append(Row("bbox", f"bbox search, {BBOX_ROWS} results",
                    {"wayview": [f"/images?bbox={b}&fields={BBOX_FIELDS}&{q}" for b in bb],
                     "geovisio": [f"/api/search?bbox={b}&limit=100" for b in bb],
                     "tipg": [f"/collections/tipg.images/items?bbox={b}&limit=100" for b in bb]},
                    {"wayview": "`GET /images?bbox=&fields=` (7 fields)",
                     "geovisio": "`GET /api/search?bbox=&limit=100` (STAC items)",
                     "tipg": "`GET /collections/tipg.images/items?bbox=&limit=100`"},
                    expect={f: [BBOX_ROWS] * len(bb) for f in ("wayview", "geovisio", "tipg")}))
    counts: dict[str, int] = {}
    z14 = tilebench.tiles_with(db, 14)
    rng.shuffle(z14)
    z15 = tile_children_with_data(db, z14, 15)
    counts["z14"] = len(z14)
    wvt = "/maps/vtp/mly1_public/2/{z}/{x}/{y}?" + q
    rows.append(Row("z14", "z14 point tiles",
                    {"wayview": [wvt.format(z=14, x=x, y=y) for x, y in z14],
                     "geovisio": [f"/api/map/15/{x}/{y}.mvt" for x, y in z15],
                     "tipg": [f"/collections/tipg.images/tiles/WebMercatorQuad/14/{x}/{y}"
                              for x, y in z14]},
                    {"wayview": "`mly1_public` z14 (`image` + `sequence` layers)",
                     "geovisio": "`/api/map/15/…` (`pictures` + `sequences`; its pictures "
                                 "start at z15, so one z15 child with images per z14 tile: "
                                 "a quarter of the area)",
                     "tipg": "`tipg.images` z14 (points only)"}))
    lines = [(z, x, y) for z in (8, 9, 10) for x, y in tilebench.tiles_with(db, z)]
    counts["z8–10"] = len(lines)
    rows.append(Row("lines", "z8–10 line tiles",
                    {"wayview": [wvt.format(z=z, x=x, y=y) for z, x, y in lines],
                     "geovisio": [f"/api/map/{z}/{x}/{y}.mvt" for z, x, y in lines],
                     "tipg": [f"/collections/tipg.sequence_lines/tiles/WebMercatorQuad/{z}/{x}/"
                              f"{y}" for z, x, y in lines]},
                    {"wayview": "`mly1_public` z8–10 (`sequence` layer)",
                     "geovisio": "`/api/map/{z}/…` (`sequences` layer)",
                     "tipg": "`tipg.sequence_lines` (one LineString per sequence)"}))
    low = [(z, x, y) for z in range(6) for x, y in tilebench.tiles_with(db, z)]
    counts["z0–5"] = len(low)
    rows.append(Row("overview", "z0–5 overview tiles",
                    {"wayview": [wvt.format(z=z, x=x, y=y) for z, x, y in low],
                     "geovisio": [f"/api/map/{z}/{x}/{y}.mvt" for z, x, y in low],
                     "tipg": [f"/collections/tipg.images/tiles/WebMercatorQuad/{z}/{x}/{y}"
                              for z, x, y in low]},
                    {"wayview": "`mly1_public` z0–5 (`overview` layer)",
                     "geovisio": "`/api/map/{z}/…` (`grid` layer, its z0–5 overview)",
                     "tipg": "`tipg.images` z0–5 (no overview of its own: the image "
                             "points, at most 10,000 per tile, its default; the line table's "
                             "z0–2 tiles are empty)"}))
    counts["ids"] = len(picks)
    counts["bboxes"] = len(bb)
    return rows, counts


def check_all(base_url: str, row: Row, fam: str) -> float:
    """Every path answers 200 with a non-empty body (and the expected id / rows); returns the
    mean body size."""
    sizes = []
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for k, path in enumerate(row.paths[fam]):
            r = client.get(path)
            if r.status_code != 200 or not r.content:
                raise RuntimeError(f"{fam} {path[:120]} → {r.status_code}, "
                                   f"{len(r.content)} bytes: {r.text[:300]}")
            sizes.append(len(r.content))
            if row.key == "node":
                got = r.json().get("id")
                if got != row.expect[fam][k]:
                    raise RuntimeError(f"{fam} {path[:100]}: id {got!r}")
            elif row.key == "bbox":
                body = r.json()
                n = len(body.get("data", body.get("features", [])))
                if n != row.expect[fam][k]:
                    raise RuntimeError(f"{fam} {path[:120]}: {n} rows, "
                                       f"expected {row.expect[fam][k]}")
    return statistics.mean(sizes)


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Result:
    """One (server, row) measurement: the median saturated run."""

    server: str
    row: str
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_ms: float = 0.0
    db_ms: float = 0.0
    runs: list[float] = field(default_factory=list)
    errors: int = 0
    other_cores: float = 0.0
    server_cores: float = 0.0
    mean_bytes: float = 0.0
    na: str = ""


def _cpu_s(pids: list[int], tck: int, reaped_of: int | None = None) -> float:
    """utime + stime of `pids` (+ the children already reaped by `reaped_of`, e.g. ended
    PostgreSQL backends), seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                v = f.read().rsplit(")", 1)[1].split()
            total += int(v[11]) + int(v[12])
            if pid == reaped_of:
                total += int(v[13]) + int(v[14])
        except (OSError, IndexError, ValueError):
            pass
    return total / tck


def measure_row(server: Server, row: Row, args: argparse.Namespace) -> Result:
    """Warm-up, then `--repeat` saturated runs; the median by req/s."""
    fam = family(server.spec.key)
    res = Result(server.spec.key, row.key)
    paths = row.paths[fam]
    res.mean_bytes = check_all(server.base_url, row, fam)
    common = {"threads": args.threads, "connections": args.connections,
              "timeout_s": args.timeout}
    tilebench.run_wrk(server.base_url, paths, duration_s=args.warmup, **common)
    tck = os.sysconf("SC_CLK_TCK")
    postmaster = server.cluster.proc.pid if server.cluster.proc else None

    def server_pids() -> list[int]:
        return server.app_pids() + server.db_pids()

    meter = CpuMeter(server_pids)
    runs = []
    for _ in range(args.repeat):
        box: dict[str, float] = {}

        def run(box: dict[str, float] = box) -> loadgen.WrkResult:
            db0 = _cpu_s(server.db_pids(), tck, postmaster)
            r = tilebench.run_wrk(server.base_url, paths, duration_s=args.duration, **common)
            box["db_s"] = _cpu_s(server.db_pids(), tck, postmaster) - db0
            return r

        wrk, cpu = meter.measure(run, retries=args.retries, log=log)
        runs.append((wrk, cpu, dict(box)))
    runs.sort(key=lambda r: r[0].rps)
    wrk, cpu, box = runs[len(runs) // 2]
    n = max(1, wrk.requests)
    res.rps, res.p50_ms, res.p99_ms = wrk.rps, wrk.p50_ms, wrk.p99_ms
    res.cpu_ms = cpu["server_cpu_s"] / n * 1000
    res.db_ms = box.get("db_s", 0.0) / n * 1000
    res.runs = [r[0].rps for r in runs]
    res.errors = wrk.non_2xx + wrk.socket_errors
    res.other_cores = max(r[1]["other_cores"] for r in runs)
    res.server_cores = cpu["server_cores"]
    log(f"  {server.spec.key:15s} {row.key:9s} {res.rps:9,.1f} req/s (runs "
        f"{', '.join(f'{x:,.1f}' for x in res.runs)})  p50 {res.p50_ms:8.2f} ms  p99 "
        f"{res.p99_ms:8.2f} ms  CPU {res.cpu_ms:7.2f} ms/req (PostgreSQL {res.db_ms:.2f})  "
        f"errors {res.errors}  other {res.other_cores:.2f} cores")
    return res


# -- ST_AsMVT against wayview's encoder ----------------------------------------------------------


ASMVT_IMAGES = """
SELECT ST_AsMVT(q, 'image', 4096, 'geom') FROM (
  SELECT ST_AsMVTGeom(ST_Transform(geom, 3857), ST_TileEnvelope(%(z)s, %(x)s, %(y)s),
                      4096, 0, false) AS geom,
         id, captured_at_ms AS captured_at, tile_compass_deg AS compass_angle, sequence_id,
         is_pano, organization_id, creator_id
  FROM images
  WHERE geom && ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s), 4326)
) q
"""
ASMVT_LINES = """
SELECT ST_AsMVT(q, 'sequence', 4096, 'geom') FROM (
  SELECT ST_AsMVTGeom(ST_Transform(l.geom, 3857), ST_TileEnvelope(%(z)s, %(x)s, %(y)s),
                      4096, 64, true) AS geom,
         l.id, s.first_image_id AS image_id, s.first_captured_at_ms AS captured_at, s.is_pano,
         s.organization_id, s.creator_id
  FROM tipg.sequence_lines l JOIN sequences s ON s.id = l.id
  WHERE l.geom && ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => 64.0 / 4096), 4326)
) q
"""


def mvt_compare(cluster: Cluster, db: Path, label: str, seed: int,
                per_zoom: int) -> list[dict[str, Any]]:
    """ms per tile (wall, one tile at a time, after a warm pass) on wayview's PostgreSQL
    database: wayview's store query + encoder vs one ST_AsMVT query, same tiles."""
    from wayview.settings import Settings
    from wayview.store import open_store
    from wayview.tiles.mvt import encode_tile
    from wayview.tiles.service import _image_points, _sequence_lines

    url = cluster.url(f"wayview_{label}")
    rng = np.random.default_rng(seed)
    sets = {}
    for z in (8, 10, 12, 14):
        t = tilebench.tiles_with(db, z)
        rng.shuffle(t)
        sets[z] = t[:per_zoom]
    out: list[dict[str, Any]] = []

    async def ours(store: Any, z: int, x: int, y: int) -> tuple[bytes, float]:
        if z == 14:
            cols = await store.tile_images(z, x, y)
            t0 = time.perf_counter()
            body = encode_tile([_image_points("image", cols, z, x, y, detailed=True)])
        else:
            lines = await store.tile_sequence_lines(z, x, y)
            t0 = time.perf_counter()
            body = encode_tile([_sequence_lines(lines)]) if lines else b""
        return body, time.perf_counter() - t0

    async def run() -> None:
        settings = Settings(_env_file=None, data_dir=DATA / f"peers-{label}" / "wayview-pg",
                            database_url=url)  # type: ignore[call-arg]
        store = open_store(settings)
        await store.open()
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                for z, tiles in sets.items():
                    sql = ASMVT_IMAGES if z == 14 else ASMVT_LINES
                    for _ in range(2):  # the first pass warms caches; the second is timed
                        w_ours, w_enc, w_sql, b_ours, b_sql = 0.0, 0.0, 0.0, 0, 0
                        for x, y in tiles:
                            t0 = time.perf_counter()
                            body, enc = await ours(store, z, x, y)
                            w_ours += time.perf_counter() - t0
                            w_enc += enc
                            t0 = time.perf_counter()
                            mvt = conn.execute(sql, {"z": z, "x": x, "y": y}).fetchone()[0]
                            w_sql += time.perf_counter() - t0
                            b_ours += len(body)
                            b_sql += len(mvt or b"")
                    n = max(1, len(tiles))
                    out.append({"layer": "image (points)" if z == 14 else "sequence (lines)",
                                "z": z, "tiles": len(tiles), "ours_ms": 1000 * w_ours / n,
                                "encode_ms": 1000 * w_enc / n, "asmvt_ms": 1000 * w_sql / n,
                                "ours_bytes": b_ours / n, "asmvt_bytes": b_sql / n})
                    log(f"  MVT z{z}: wayview {out[-1]['ours_ms']:.2f} ms (encode "
                        f"{out[-1]['encode_ms']:.2f}), ST_AsMVT {out[-1]['asmvt_ms']:.2f} ms")
        finally:
            await store.close()

    asyncio.run(run())
    return out


# -- report ------------------------------------------------------------------------------------


def fmt(v: float) -> str:
    """A number with sensible precision."""
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_bytes(v: float) -> str:
    return f"{v / 1024:.1f} KB" if v >= 1024 else f"{v:.0f} B"


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def render(rows: list[Row], specs: dict[str, Spec], results: dict[tuple[str, str], Result],
           order: list[str], counts: dict[str, int], mvt: list[dict[str, Any]] | None,
           facts: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    """The markdown section."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    m = facts["meta"]
    lines = [
        f"Measured {when} with `{command}`.",
        "",
        f"- Dataset: {m['images']:,} images (metadata only) in {m['sequences']:,} sequences "
        "over 30 × 30 km (bench/world.py, the bench/graph.py city), the same rows in every "
        "server: the SQLite store, its `wayview migrate-store` copy in PostgreSQL, GeoVisio's "
        "tables filled from that copy (bench/peers/geovisio_load.py: their schema from their "
        "migrations, pictures `ready`/`prepared`, their own `finalize()` per sequence and "
        "their grid refresh), and for tipg a view of `images` plus a table of one LineString "
        "per sequence (bench/peers/tipg_sql.py).",
        f"- Machine: {facts['nproc']} cores ({facts['cpu']}), {facts['memory_gib']} GiB RAM; "
        f"{facts['pg']} (one cluster for all three PostgreSQL-backed servers: shared_buffers "
        "2 GB, fsync off; bench/peers/cluster.py); Python "
        f"{facts['python']}, {facts['wrk']}. wrk, the servers and PostgreSQL share the same "
        f"cores. Load average {facts['load_start']} at the start, {facts['load_end']} at the "
        f"end; other processes used at most {facts['other_max']:.2f} cores during a measured "
        f"run (each run waits for < {OTHER_LOAD_LIMIT_CORES} cores of others, retried up to "
        f"{args.retries} times).",
        "- Servers: " + "; ".join(f"**{specs[k].name}**: {specs[k].note}" for k in order) + ".",
        f"- Method: per server and endpoint, every path is requested once first and must "
        "answer 200 with a non-empty body (ids and row counts checked), then wrk "
        f"`-t{args.threads} -c{args.connections} -d{args.duration:g}s --latency` rotating "
        f"through the paths, {args.warmup:g} s warm-up, {args.repeat} saturated run(s), the "
        "median shown. Paths: "
        f"{counts['ids']:,} random images, {counts['bboxes']} bboxes of exactly {BBOX_ROWS} "
        f"images, {counts['z14']:,} z14 tiles, {counts['z8–10']:,} z8–10 tiles, "
        f"{counts['z0–5']:,} z0–5 tiles (every tile holding an image). Latencies are "
        "saturated (mostly queueing: ≈ connections ÷ req/s). *CPU ms/req* = CPU of the server "
        "processes plus PostgreSQL's (in brackets) ÷ responses. *× best peer* = this "
        f"wayview row's req/s ÷ the best peer's; target ≥ {TARGET_RATIO:g}×.",
        "",
        "| Endpoint | Server | request | req/s | p50 ms | p99 ms | CPU ms/req (PostgreSQL) | "
        "mean body | × best peer | result |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        peer_rps = [results[(p, row.key)].rps for p in PEERS
                    if (p, row.key) in results and not results[(p, row.key)].na]
        best = max(peer_rps) if peer_rps else None
        for key in order:
            r = results.get((key, row.key))
            if r is None:
                continue
            what = row.what[family(key)]
            if r.na:
                lines.append(f"| {row.label} | {specs[key].name} | {what} | n/a | | | | | | "
                             f"n/a: {r.na} |")
                continue
            ratio, verdict = "", ""
            if key in WAYVIEW and best:
                x = r.rps / best
                ratio = f"{x:.1f}×"
                ok = x >= TARGET_RATIO and not r.errors
                verdict = "**pass**" if ok else "**FAIL**"
            notes = []
            if r.errors:
                notes.append(f"{r.errors} errors")
            if r.other_cores >= OTHER_LOAD_LIMIT_CORES:
                notes.append(f"machine busy: others {r.other_cores:.2f} cores")
            if notes:
                verdict = f"{verdict} ({'; '.join(notes)})".strip()
            db = f" ({fmt(r.db_ms)})" if specs[key].uses_pg else ""
            lines.append(f"| {row.label} | {specs[key].name} | {what} | {fmt(r.rps)} | "
                         f"{fmt(r.p50_ms)} | {fmt(r.p99_ms)} | {fmt(r.cpu_ms)}{db} | "
                         f"{fmt_bytes(r.mean_bytes)} | {ratio} | {verdict} |")
    lines += ["", "Notes: the peers return whole features (a STAC item with assets and "
              "links, a GeoJSON feature with every column) where wayview returns the fields "
              "asked for; GeoVisio serves picture points only from z15, so its z14 row uses "
              "z15 tiles (a quarter of the area each). wayview's tile rows are shown with the "
              "shipped per-process tile cache (the sets are small enough to stay cached) and "
              "with it off; the peers have no tile cache of their own (they rely on an HTTP "
              "cache in front)."]
    if mvt:
        lines += ["", "Encoder against PostGIS `ST_AsMVT`, in-process on wayview's PostgreSQL "
                  "database, the same tiles, one at a time after a warm-up pass (ms of wall "
                  "time per tile). *wayview* = the store's tile query (`tile_images`: packed "
                  "rows from the covering index; `tile_sequence_lines`: the pre-clipped, "
                  "simplified lines of the tile index) + building the layer + `encode_tile`; "
                  "*ST_AsMVT* = one query: `ST_AsMVTGeom` + `ST_AsMVT` over `images` (GiST on "
                  "`geom`) for points, over one LineString per sequence (GiST) for lines, with "
                  "the same properties.", "",
                  "| layer | zoom | tiles | wayview ms/tile (of which encode) | ST_AsMVT "
                  "ms/tile | wayview ÷ ST_AsMVT time | mean tile (wayview / ST_AsMVT) |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for m_ in mvt:
            lines.append(f"| {m_['layer']} | z{m_['z']} | {m_['tiles']} | "
                         f"{fmt(m_['ours_ms'])} ({fmt(m_['encode_ms'])}) | "
                         f"{fmt(m_['asmvt_ms'])} | {m_['ours_ms'] / max(1e-9, m_['asmvt_ms']):.2f}"
                         f" | {fmt_bytes(m_['ours_bytes'])} / {fmt_bytes(m_['asmvt_bytes'])} |")
    return "\n".join(lines)


def write_docs(body: str) -> None:
    """Replace the marked section of docs/performance.md, or append it with its heading."""
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    block = f"{START}\n{body}\n{END}"
    a, b = text.find(START), text.find(END)
    if a != -1 and b > a:
        text = text[:a] + block + text[b + len(END):]
    else:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{block}\n"
    DOC.write_text(text)
    log(f"updated {DOC.relative_to(REPO)}")


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1_000_000,
                    help="dataset size: 1000000 (default, ~5,000 sequences), 100000 for a "
                         "quick run, 5000000 for the large option")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="the wayview SQLite store (default bench/.data/graph-<N>, shared with "
                         "bench/graph.py)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes per server")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=30.0, help="wrk request timeout, s")
    ap.add_argument("--repeat", type=int, default=3, help="saturated runs per cell (median)")
    ap.add_argument("--retries", type=int, default=2,
                    help="re-run a measurement this often when other processes were busy")
    ap.add_argument("--servers", default=",".join((*WAYVIEW, *PEERS)),
                    help="comma list of: " + ",".join((*WAYVIEW, *PEERS)))
    ap.add_argument("--only", default=None, help="comma list of rows: node,bbox,z14,lines,"
                                                 "overview")
    ap.add_argument("--no-mvt", action="store_true", help="skip the ST_AsMVT comparison")
    ap.add_argument("--mvt-tiles", type=int, default=40, help="tiles per zoom for --mvt")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--write-docs", action="store_true",
                    help="replace the marked bench/peers.py section of docs/performance.md")
    args = ap.parse_args(argv)
    if loadgen.wrk_path() is None:
        log("wrk is not installed: apt-get install -y wrk")
        return 2
    label = label_of(args.images)
    data_dir = (args.data_dir or DATA / f"graph-{label}").resolve()
    work = DATA / f"peers-{label}"
    work.mkdir(parents=True, exist_ok=True)
    command = "python bench/peers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load_start = loadavg()

    meta = world.ensure_world(data_dir, args.images, seed=args.seed, method="bulk", log=log)
    wanted = args.servers.split(",")
    if "geovisio" in wanted:
        ensure_venv(DATA / "venv-geovisio", [GEOVISIO_SPEC], "geovisio",
                    GEOVISIO_SPEC.split("==")[1])
    if "tipg" in wanted:
        ensure_venv(DATA / "venv-tipg", [TIPG_SPEC, *TIPG_EXTRA], "tipg",
                    TIPG_SPEC.split("==")[1])

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    with Cluster(DATA / "peers-pg", log=log) as cluster:
        load_info = ensure_loaded(cluster, data_dir, meta, label, work)
        rows, counts = build_rows(data_dir / "wayview.db", meta["client_token"], args.seed)
        if args.only:
            rows = [r for r in rows if r.key in args.only.split(",")]
        specs = server_specs(cluster, data_dir, label, work, args.workers)
        order = [k for k in (*WAYVIEW, *PEERS) if k in wanted]
        results: dict[tuple[str, str], Result] = {}
        for key in order:
            todo = [r for r in rows if not (key.endswith("-cold") and r.key not in TILE_ROWS)]
            if not todo:
                continue
            log(f"starting {specs[key].name} …")
            server = start(specs[key], cluster)
            try:
                log(f"  up at {server.base_url} (pids {server.app_pids()})")
                for row in todo:
                    fam = family(key)
                    if fam in row.na:
                        results[(key, row.key)] = Result(key, row.key, na=row.na[fam])
                        continue
                    results[(key, row.key)] = measure_row(server, row, args)
            finally:
                server.__exit__(None, None, None)
        mvt = None
        if not args.no_mvt:
            log("ST_AsMVT against wayview's encoder …")
            mvt = mvt_compare(cluster, data_dir / "wayview.db", label, args.seed,
                              args.mvt_tiles)
        facts = {**graph.machine_facts(), "pg": cluster.version(), "meta": meta,
                 "load_start": load_start, "load_end": loadavg(),
                 "other_max": max((r.other_cores for r in results.values()), default=0.0)}
    body = render(rows, specs, results, order, counts, mvt, facts, args, command.strip())
    print(f"{SECTION}\n\n{body}")
    raw = {"command": command, "load": load_info, "facts": {k: v for k, v in facts.items()
                                                            if k != "meta"},
           "results": [vars(r) for r in results.values()], "mvt": mvt, "counts": counts}
    (work / "results-peers.json").write_text(json.dumps(raw, indent=2, default=str) + "\n")
    if args.write_docs:
        write_docs(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
