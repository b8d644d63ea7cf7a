"""wayview.metrics: Prometheus metrics of the server and the job workers (issue #19).

Nothing is measured until `activate()` runs in a process (`create_app` with `metrics.enabled`,
`wayview worker` with `metrics.worker_port`): before that every recording function below
returns at once and prometheus_client is not even imported, so a server without metrics pays
one global read per call.

Several processes: `wayview serve --workers N` runs N granian worker processes, and any of
them may answer a scrape. `prepare_multiprocess()` (called by `serve` before granian starts)
makes a fresh folder and points `PROMETHEUS_MULTIPROC_DIR` at it; every worker then writes its
counters and histograms into its own memory-mapped files there, and `/metrics` sums the files
of all of them (prometheus_client's multiprocess mode). Counters of a worker that died and was
respawned stay in the sum, as a counter should. Process metrics (memory, CPU, open files) are
read from `/proc` at scrape time for every live process that has written there, labelled by
`pid`. `wayview worker` processes are separate programs (possibly on other hosts): each serves
its own `/metrics` on `metrics.worker_port`.

Gauges of the job queue are not recorded by anyone: `/metrics` reads them from the store at
scrape time (`JobQueueGauges`, cached for `QUEUE_CACHE_S` so a flood of scrapes costs one
query per process every few seconds).

Labels never carry raw paths or ids: a request is labelled by its route's name
(`graph.node`, `tiles.tile`), so the number of series stays bounded by the route table.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hmac
import os
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from wayview import __version__
from wayview.networks import Network, address_allowed, parse_networks

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

    from wayview.model.entities import JobKindStats
    from wayview.settings import MetricsSettings

__all__ = [
    "CONTENT_TYPE",
    "Collects",
    "DURATION_BUCKETS_S",
    "JOB_BUCKETS_S",
    "QUEUE_CACHE_S",
    "JobQueueGauges",
    "active",
    "activate",
    "job_run",
    "prepare_multiprocess",
    "rate_limit_refused",
    "refusal",
    "render",
    "request_done",
    "stage",
    "start_worker_server",
    "tile_lookup",
    "tile_rendered",
    "timed_stage",
    "upload_bytes",
]

#: Request latency buckets in seconds: cached tiles and node reads take about a millisecond,
#: searches and cold tiles tens of milliseconds, uploads seconds.
DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                      10.0, 30.0)
#: Job and pipeline-stage buckets in seconds: a thumbnail takes tens of milliseconds, an
#: upload of a thousand photos or a structure-from-motion job tens of minutes.
JOB_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                 600.0, 1800.0, 3600.0, 7200.0)
#: Seconds a process reuses the job-queue figures it read from the store.
QUEUE_CACHE_S = 5.0
#: Prometheus text exposition format 0.0.4 (every Prometheus version reads it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The environment variable prometheus_client's multiprocess mode reads.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_FILE_PID = re.compile(r"_(\d+)\.db$")
_P = ParamSpec("_P")
_R = TypeVar("_R")


class _Metrics:
    """The metric objects of this process (created once, by `activate`)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        # Our own registry: tests create many apps in one process, and the default registry
        # would refuse the second set of names. Multiprocess mode ignores it (files are read).
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "wayview_http_requests", "HTTP requests answered, by route, method and status.",
            ("route", "method", "status"), registry=r)
        self.latency = Histogram(
            "wayview_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by route.",
            ("route",), buckets=DURATION_BUCKETS_S, registry=r)
        self.tile_cache = Counter(
            "wayview_tile_cache_lookups",
            "Vector tile requests by where the tile came from: hit (this process's memory), "
            "shared_hit (Redis), stored (a z6-13 tile kept rendered in the store), miss "
            "(rendered), empty (nothing ever written there), "
            "uncached (tiles.cache_max_bytes = 0).", ("result",), registry=r)
        self.tile_render = Histogram(
            "wayview_tile_render_duration_seconds", "Time to build a vector tile (cache misses).",
            buckets=DURATION_BUCKETS_S, registry=r)
        self.refusals = Counter(
            "wayview_rate_limit_refusals",
            "Requests refused because a budget was spent (E14 / 429), by budget.", ("budget",),
            registry=r)
        self.upload = Counter(
            "wayview_upload_received_bytes",
            "Bytes of uploads written to staging (upload service and the /upload page).",
            registry=r)
        self.jobs = Counter(
            "wayview_job_runs",
            "Job attempts that ended, by kind and outcome (done, retry, parked, lost, "
            "interrupted).", ("kind", "outcome"), registry=r)
        self.job_duration = Histogram(
            "wayview_job_duration_seconds", "Time one job attempt ran, by kind.", ("kind",),
            buckets=JOB_BUCKETS_S, registry=r)
        self.stages = Histogram(
            "wayview_pipeline_stage_duration_seconds",
            "Time of one processing stage (perceive, blur and derivatives per image; "
            "positions, sfm and map_features per sequence).", ("stage",),
            buckets=JOB_BUCKETS_S, registry=r)
        # Children by label values: `labels()` validates and locks on every call.
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *values: str) -> Any:
        """The child of `metric` for `values` (cached)."""
        key = (id(metric), *values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found


_m: _Metrics | None = None


def active() -> bool:
    """Whether this process records metrics."""
    return _m is not None


def activate() -> None:
    """Start recording in this process (idempotent). In a process started with
    `PROMETHEUS_MULTIPROC_DIR` set, the values go to files in that folder."""
    global _m
    if _m is None:
        _m = _Metrics()


def prepare_multiprocess() -> str:
    """Make a fresh folder for the metric files of the server's worker processes and export
    it as `PROMETHEUS_MULTIPROC_DIR` (inherited by granian's workers); its path. Called by
    `serve` before any worker starts and before prometheus_client is imported, which decides
    the mode once, at import."""
    path = tempfile.mkdtemp(prefix="wayview-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def remove_multiprocess_dir(path: str) -> None:
    """Delete the metric files folder when the server stops."""
    shutil.rmtree(path, ignore_errors=True)
    if os.environ.get(MULTIPROC_ENV) == path:
        del os.environ[MULTIPROC_ENV]


# -- recording (called on hot paths: return at once when inactive) ----------------------------

def request_done(route: str, method: str, status: int, seconds: float) -> None:
    """Count a finished request and its duration."""
    m = _m
    if m is None:
        return
    m.child(m.requests, route, method, str(status)).inc()
    m.child(m.latency, route).observe(seconds)


def tile_lookup(result: str) -> None:
    """Count where a tile came from: hit, shared_hit, stored (a z6–13 body kept in the store),
    miss, empty or uncached."""
    m = _m
    if m is not None:
        m.child(m.tile_cache, result).inc()


def tile_rendered(seconds: float) -> None:
    """Record the time a tile took to build."""
    m = _m
    if m is not None:
        m.tile_render.observe(seconds)


def rate_limit_refused(budget: str) -> None:
    """Count a request refused by the rate limiter."""
    m = _m
    if m is not None:
        m.child(m.refusals, budget).inc()


def upload_bytes(count: int) -> None:
    """Count upload bytes written to staging."""
    m = _m
    if m is not None and count > 0:
        m.upload.inc(count)


def job_run(kind: str, outcome: str, seconds: float) -> None:
    """Count one ended job attempt and its duration."""
    m = _m
    if m is None:
        return
    m.child(m.jobs, kind, outcome).inc()
    m.child(m.job_duration, kind).observe(seconds)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Time a pipeline stage (the time is recorded whether it succeeds or fails)."""
    m = _m
    if m is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        m.child(m.stages, name).observe(time.perf_counter() - started)


def timed_stage(name: str) -> Callable[[Callable[_P, Awaitable[_R]]], Callable[_P, Awaitable[_R]]]:
    """Decorate an async function: each call is timed as pipeline stage `name`."""

    def decorate(fn: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
        @functools.wraps(fn)
        async def timed(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with stage(name):
                return await fn(*args, **kwargs)

        return timed

    return decorate


# -- access control ---------------------------------------------------------------------------

def refusal(settings: MetricsSettings, peer: str | None, authorization: str | None
            ) -> int | None:
    """The status refusing a scrape from `peer` with this `Authorization` header: 403
    outside `allow_from`, 401 without `bearer_token` (compared in constant time); None when
    allowed."""
    if settings.allow_from:
        networks = _networks.get(settings.allow_from)
        if networks is None:
            networks = _networks[settings.allow_from] = parse_networks(settings.allow_from)
        if not address_allowed(peer, networks):
            return 403
    if settings.bearer_token:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), settings.bearer_token.encode()):
            return 401
    return None


_networks: dict[str, tuple[Network, ...]] = {}


def start_worker_server(settings: MetricsSettings) -> ThreadingHTTPServer:
    """Serve this process's `/metrics` on `worker_host:worker_port` from a daemon thread
    (`wayview worker`), under the same allow-list and token as the server's; the server
    (`shutdown()` stops it)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    activate()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?", 1)[0] != "/metrics":
                self._answer(404, b"not found\n", "text/plain")
                return
            refused = refusal(settings, self.client_address[0],
                              self.headers.get("Authorization"))
            if refused is not None:
                self._answer(refused, b"forbidden\n" if refused == 403 else b"unauthorized\n",
                             "text/plain")
                return
            self._answer(200, render(), CONTENT_TYPE)

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="metrics"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """No access log for scrapes."""

    server = ThreadingHTTPServer((settings.worker_host, settings.worker_port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="wayview-metrics", daemon=True).start()
    return server


# -- exposition -------------------------------------------------------------------------------

@dataclass(slots=True, eq=False)  # hashable: a registry keeps it in a dict
class JobQueueGauges:
    """The job queue's figures as gauges, read from the store at most every `ttl_s`."""

    ttl_s: float = QUEUE_CACHE_S
    _stats: tuple[JobKindStats, ...] = ()
    _read_at: float = -1e18
    _now_ms: int = 0

    def stale(self) -> bool:
        """Whether the figures should be read again."""
        return time.monotonic() - self._read_at >= self.ttl_s

    def update(self, stats: Iterable[JobKindStats], now_ms: int) -> None:
        """Keep figures read from the store at `now_ms`."""
        self._stats = tuple(stats)
        self._now_ms = now_ms
        self._read_at = time.monotonic()

    def collect(self) -> Iterator[Any]:
        """Gauge families for prometheus_client."""
        from prometheus_client.core import GaugeMetricFamily

        jobs = GaugeMetricFamily("wayview_jobs", "Jobs in the queue by kind and state "
                                 "(queued includes jobs waiting for a later run time).",
                                 labels=("kind", "state"))
        due = GaugeMetricFamily("wayview_jobs_due", "Queued jobs whose run time has come "
                                "(the backlog workers have not taken yet), by kind.",
                                labels=("kind",))
        age = GaugeMetricFamily("wayview_jobs_oldest_due_age_seconds",
                                "How long the oldest due job has waited, by kind (0: none).",
                                labels=("kind",))
        for s in self._stats:
            jobs.add_metric((s.kind, "queued"), s.queued)
            jobs.add_metric((s.kind, "running"), s.running)
            jobs.add_metric((s.kind, "parked"), s.parked)
            due.add_metric((s.kind,), s.due)
            waited_ms = 0 if s.oldest_due_ms is None else max(0, self._now_ms - s.oldest_due_ms)
            age.add_metric((s.kind,), waited_ms / 1000)
        yield from (jobs, due, age)


class _Info:
    """`wayview_build_info` and, in multiprocess mode, the process metrics of every live
    process that wrote metric files."""

    def __init__(self, multiproc_dir: str | None) -> None:
        self.multiproc_dir = multiproc_dir

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        info = GaugeMetricFamily("wayview_build_info", "Always 1; the version as a label.",
                                 labels=("version",))
        info.add_metric((__version__,), 1)
        yield info
        if self.multiproc_dir is not None:
            yield from _process_metrics(_live_pids(self.multiproc_dir))


def _live_pids(path: str) -> list[int]:
    pids = {os.getpid()}
    for name in glob.glob(os.path.join(path, "*.db")):
        found = _FILE_PID.search(name)
        if found is not None:
            pids.add(int(found.group(1)))
    live = []
    for pid in sorted(pids):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:  # alive, another user's (a recycled pid)
            continue
        live.append(pid)
    return live


def _process_metrics(pids: list[int]) -> Iterator[Any]:
    """prometheus_client's process metrics of each pid, with a `pid` label."""
    from prometheus_client.core import Metric
    from prometheus_client.process_collector import ProcessCollector

    merged: dict[str, Metric] = {}
    for pid in pids:
        collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
        for family in collector.collect():
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation,
                                                    family.type)
            for sample in family.samples:
                into.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
    yield from merged.values()


class Collects(Protocol):
    """What a scrape reads besides the recorded metrics (prometheus_client's Collector)."""

    def collect(self) -> Iterator[Any]:
        """Metric families."""


def render(extra: Iterable[Collects] = ()) -> bytes:
    """The exposition text: this process's metrics (or, in multiprocess mode, every server
    process's), plus `extra` collectors. Runs in a thread: reading the files takes a few ms."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.gc_collector import GCCollector
    from prometheus_client.platform_collector import PlatformCollector
    from prometheus_client.process_collector import ProcessCollector

    activate()
    assert _m is not None
    registry = CollectorRegistry(auto_describe=False)
    multiproc_dir = os.environ.get(MULTIPROC_ENV)
    if multiproc_dir and os.path.isdir(multiproc_dir):
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
        own: list[Collects] = [_Info(multiproc_dir)]
    else:
        own = [_Own(_m.registry), _Info(None)]
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    for collector in (*own, *extra):
        registry.register(collector)
    return generate_latest(registry)


class _Own:
    """This process's metric objects, for a scrape registry."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()
