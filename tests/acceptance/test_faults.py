"""Acceptance: the scale-out deployment under faults (issue #22). A live `wayview serve` on a
real PostgreSQL + PostGIS, Redis and S3 server (SeaweedFS) answers a steady load of Graph
reads, searches, vector tiles and media while each service in turn stops answering
(SIGSTOP of all its processes, a `pg_ctl stop -m fast` / start of PostgreSQL, and SIGKILL of
each service, started again on the same port and data) and comes back. For each outage:

- every request that fails is a 503 in the Graph envelope (`is_transient`, `Retry-After`),
  never a 500;
- p99 of the failed requests' durations ≤ 2 s and no request takes more than 5 s;
- requests succeed again within 2 s of the service's return, without restarting wayview;
- the server logs the outage in one line when it starts and one when it ends, no traceback.

A second `serve` on the same services (`rate_limit_fail_open`, no disk floor) takes the same
load during the SIGKILLs: both log each outage once and recover. A `wayview worker` processes
mapillary_tools-style zip uploads sent (and retried, as mapillary_tools does) throughout the
PostgreSQL and S3 SIGKILLs: afterwards every image is stored exactly once, no job is parked and
no blob is orphaned. `data_dir` is a small tmpfs (when the tests may mount one): filled up, it
answers uploads with the retriable 507, keeps what was uploaded, and the same uploads resume
and complete once space is freed.

The numbers of each run are printed (`-s`) and are the ones docs/deployment.md quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
import redis
from tests.acceptance.live import (
    LiveServer,
    clean_env,
    free_port,
    live_server,
    stop_process_group,
)
from tests.api.test_upload_ingest import photo, zip_of
from tests.pg_server import _SERVER_USER, _bindir, pg_server
from tests.redis_server import redis_server
from tests.s3_server import S3Server, s3_server

from wayview.blobs.base import image_blob_key
from wayview.blobs.s3 import S3Blobs
from wayview.ingest.upload_job import journal_owner
from wayview.settings import Settings
from wayview.store import Store
from wayview.testing import make_settings, open_test_store, seed

pytestmark = [pytest.mark.slow]

#: How long each service is down, the load before and after it, the load's threads.
OUTAGE_S = 4.0
BEFORE_S = 1.0
AFTER_S = 3.0
THREADS = 6
#: Each thread's pause between two requests (about 50-100 requests/s in total).
PAUSE_S = 0.06
#: The targets of issue #22.
P99_FAILED_S = 2.0
MAX_S = 5.0
RECOVERY_S = 2.0
#: The tmpfs `data_dir` (when mounting is allowed), and the main server's upload disk floor.
DATA_TMPFS_BYTES = 128 * 1024 * 1024
DISK_FLOOR = 1024 * 1024
#: Longest wait for the worker to process what was uploaded.
PROCESSED_WAIT_S = 60.0
#: The worker's `jobs.retired_blob_sweep_s`: longer than a PUT to a restarting S3 can hang.
RETIRED_SWEEP_S = 30.0


@dataclass
class Deployment:
    server: LiveServer
    pg_url: str
    redis_url: str
    s3: S3Server
    token: str
    paths: dict[str, str]
    pg_restart: Callable[[], None] = field(default=lambda: None)
    #: A second `serve` on the same services with the default `rate_limit_fail_open`.
    fail_open: LiveServer | None = None
    #: The WAYVIEW_* settings of the servers.
    env: dict[str, str] = field(default_factory=dict)
    #: An uploader's token, the blob store's URL, the worker's log, whether data_dir is a
    #: tmpfs of DATA_TMPFS_BYTES.
    user_token: str = ""
    blobs_url: str = ""
    worker_log: Path | None = None
    data_on_tmpfs: bool = False
    #: Ids of the images the deployment was seeded with.
    seeded_ids: set[int] = field(default_factory=set)
    #: Services started again after a SIGKILL (stopped with the deployment).
    respawned: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: The S3 server's current process (group) id: a SIGKILLed one is replaced.
    s3_pid: int = 0
    #: SHA-256 of every image uploaded by the tests so far (each must be stored once).
    uploaded: list[str] = field(default_factory=list)

    def settings(self) -> Settings:
        """Settings for a store (and S3 blobs) of the deployment, from the test process."""
        return make_settings(self.server.data_dir.parent, database_url=self.pg_url,
                             blobs_url=self.blobs_url,
                             s3={"endpoint_url": self.s3.endpoint_url,
                                 "access_key_id": self.s3.access_key_id,
                                 "secret_access_key": self.s3.secret_access_key})


@dataclass(frozen=True)
class Sample:
    kind: str
    started: float
    duration: float
    status: int  # 0: no answer (transport error or client timeout)
    transient: bool
    retry_after: str | None


def _pg_data(url: str) -> Path:
    return Path(parse_qs(urlsplit(url).query)["host"][0]) / "data"


def _pg_ctl(url: str, *args: str) -> None:
    """Run pg_ctl on the test cluster (as its owner when the tests run as root)."""
    bindir = _bindir()
    assert bindir is not None
    prefix: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam(_SERVER_USER)
        prefix = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}",
                  "--init-groups", "--"]
    data = _pg_data(url)
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), *args], check=True,
                   cwd=data.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)


def _pg_start(url: str) -> None:
    root = _pg_data(url).parent
    _pg_ctl(url, "start", "-w", "-l", str(root / "restarted.log"), "-o",
            f"-k {root} -c listen_addresses= -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200 -c shared_buffers=64MB")


def _pg_pids(url: str) -> list[int]:
    """The postmaster and its children (each backend is a session of its own: a signal to
    the postmaster's process group would not reach them)."""
    postmaster = int((_pg_data(url) / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
    return pids


def _signal_all(pids: Callable[[], list[int]], sig: signal.Signals) -> Callable[[], None]:
    def send() -> None:
        for pid in pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    return send


def _mount_tmpfs(folder: Path, size: int) -> bool:
    """Mount a tmpfs of `size` bytes on `folder`; False when not allowed (not root)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                               str(folder)], capture_output=True, check=False, timeout=30)
    except OSError:
        return False
    return done.returncode == 0


def _start_worker(data: Path, log: Path, cwd: Path, env: dict[str, str]
                  ) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "wayview", "worker", "--data-dir", str(data),
             "--concurrency", "2"], cwd=cwd, env=clean_env(**env), stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("faults")
    data = root / "data"
    with contextlib.ExitStack() as stack:
        data_on_tmpfs = _mount_tmpfs(data, DATA_TMPFS_BYTES)
        if data_on_tmpfs:  # unmounted last, once every process using it has stopped
            stack.callback(lambda: subprocess.run(["umount", "-l", str(data)], check=False,
                                                  capture_output=True, timeout=30))
        pg_url = stack.enter_context(pg_server())
        restarted: list[bool] = []
        # A cluster restarted by pg_ctl is not the process pg_server stops: stop it first.
        stack.callback(lambda: restarted and _pg_ctl(pg_url, "stop", "-m", "fast"))
        redis_url = stack.enter_context(redis_server(root))
        (root / "s3").mkdir()
        s3 = stack.enter_context(s3_server(root / "s3"))
        blobs_url = f"s3://{s3.bucket}/faults"
        settings = make_settings(root, database_url=pg_url)
        paths: dict[str, str] = {}
        seeded: dict[str, Any] = {}

        async def seed_store() -> str:
            async with open_test_store(settings) as store:
                world = await seed(store)
            seeded["user_token"] = world.user_token
            seeded["ids"] = {im.id for im in world.images}
            image = world.images[0]
            blobs = S3Blobs(blobs_url, endpoint_url=s3.endpoint_url,
                            access_key_id=s3.access_key_id,
                            secret_access_key=s3.secret_access_key)
            await asyncio.to_thread(blobs.put_bytes, image_blob_key(image.id, "thumb_256"),
                                    b"\xff\xd8 a thumbnail \xff\xd9")
            paths["graph"] = f"/{image.id}?fields=id,geometry,captured_at"
            paths["search"] = "/images?bbox=13.40,52.51,13.41,52.53&fields=id&limit=5"
            paths["tile"] = "/maps/vtp/mly1_public/2/14/8802/5373"
            paths["media"] = f"/media/images/{image.id}/thumb_256.jpg"
            return world.client_token

        token = asyncio.run(seed_store())
        # The test servers run with synchronous_commit=off (speed); a SIGKILLed server would
        # lose the last commits, such as an upload already answered 200. Production's default
        # (on) keeps them: so do the connections of this deployment.
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ALTER DATABASE wayview SET synchronous_commit = on")
        env = {"WAYVIEW_DATABASE_URL": pg_url, "WAYVIEW_REDIS_URL": redis_url,
               "WAYVIEW_BLOBS_URL": blobs_url, "WAYVIEW_S3__ENDPOINT_URL": s3.endpoint_url,
               "WAYVIEW_S3__ACCESS_KEY_ID": s3.access_key_id,
               "WAYVIEW_S3__SECRET_ACCESS_KEY": s3.secret_access_key,
               "WAYVIEW_RATE_LIMIT_FAIL_OPEN": "false",  # the limiter's outage is visible
               "WAYVIEW_JOBS__SERVE_WORKERS": "0", "WAYVIEW_AUTH__TOKEN_CACHE_S": "0",
               "WAYVIEW_UPLOAD__MIN_FREE_DISK_BYTES": str(DISK_FLOOR),
               "WAYVIEW_PIPELINE__BLURRER": "none"}
        server = stack.enter_context(live_server(data, root / "serve.log", cwd=root, env=env))
        # The second serve has no disk floor: a full disk reaches it as ENOSPC mid-body.
        open_env = {**env, "WAYVIEW_RATE_LIMIT_FAIL_OPEN": "true",
                    "WAYVIEW_UPLOAD__MIN_FREE_DISK_BYTES": "0"}
        fail_open = stack.enter_context(live_server(data, root / "serve-open.log", cwd=root,
                                                    env=open_env))
        # A job failing during an outage comes back within 1 s of the service's return. The
        # lease stays well above s3.timeout_s (10 s: a PUT to an S3 server that is starting
        # up may wait that long), or a slow attempt would lose its job to another lane.
        worker_env = {**env, "WAYVIEW_JOBS__POLL_S": "0.2", "WAYVIEW_JOBS__BACKOFF_S": "0.2",
                      "WAYVIEW_JOBS__TRANSIENT_BACKOFF_MAX_S": "1", "WAYVIEW_JOBS__LEASE_S": "30",
                      "WAYVIEW_JOBS__RETIRED_BLOB_SWEEP_S": str(RETIRED_SWEEP_S),
                      # the lease rule: at least 3 × the longest blocking call (S3's 10 s)
                      "WAYVIEW_DATABASE_STATEMENT_TIMEOUT_S": "10"}
        worker = _start_worker(data, root / "worker.log", root, worker_env)
        stack.callback(stop_process_group, worker)
        _wait_for(lambda: worker.poll() is not None
                  or "wayview worker" in (root / "worker.log").read_text(), "the worker", 60)
        assert worker.poll() is None, (root / "worker.log").read_text()[-3000:]

        def restart() -> None:
            restarted.append(True)
            _pg_start(pg_url)

        d = Deployment(server, pg_url, redis_url, s3, token, paths, restart, fail_open, env,
                       user_token=seeded["user_token"], blobs_url=blobs_url,
                       worker_log=root / "worker.log", data_on_tmpfs=data_on_tmpfs,
                       seeded_ids=seeded["ids"], s3_pid=s3.pid)
        stack.callback(lambda: [stop_process_group(p) for p in d.respawned])
        yield d


class Load:
    """THREADS threads requesting the deployment's paths in turn until stopped."""

    def __init__(self, deployment: Deployment, server: LiveServer) -> None:
        self.deployment = deployment
        self.server = server
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(THREADS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, n: int) -> None:
        d = self.deployment
        kinds = list(d.paths)
        headers = {"Authorization": f"OAuth {d.token}"}
        with httpx.Client(base_url=self.server.base_url, timeout=MAX_S * 2,
                          trust_env=False) as client:
            i = n
            while not self._stop.is_set():
                kind = kinds[i % len(kinds)]
                i += 1
                started = time.monotonic()
                status, transient, retry_after = 0, False, None
                try:
                    r = client.get(d.paths[kind], headers=headers)
                    status = r.status_code
                    retry_after = r.headers.get("retry-after")
                    if status >= 400:
                        transient = bool(r.json()["error"].get("is_transient"))
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                sample = Sample(kind, started, time.monotonic() - started, status, transient,
                                retry_after)
                with self._lock:
                    self.samples.append(sample)
                self._stop.wait(PAUSE_S)


@dataclass
class Outcome:
    failed: list[Sample]
    slowest_s: float
    recovery_s: float
    requests: int

    def quantile(self, q: float) -> float:
        durations = sorted(s.duration for s in self.failed)
        if not durations:
            return 0.0
        return durations[min(len(durations) - 1, int(q * len(durations)))]

    def report(self, name: str) -> str:
        kinds = ",".join(sorted({s.kind for s in self.failed})) or "none"
        return (f"{name}: {self.requests} requests, {len(self.failed)} failed ({kinds}), "
                f"failed p50 "
                f"{self.quantile(0.5):.2f} s p99 {self.quantile(0.99):.2f} s max "
                f"{max((s.duration for s in self.failed), default=0):.2f} s, slowest "
                f"{self.slowest_s:.2f} s, recovery {self.recovery_s:.2f} s")


def _outage(deployment: Deployment, stop: Callable[[], None], resume: Callable[[], None],
            server: LiveServer | None = None) -> Outcome:
    """Run the load through an outage; the samples from the fault to the end."""
    return _outages(deployment, stop, resume, [server or deployment.server])[0]


def _outages(deployment: Deployment, stop: Callable[[], None], resume: Callable[[], None],
             servers: list[LiveServer], *background: Any) -> list[Outcome]:
    """Run the load on each of `servers` (and the `background` context managers, such as an
    `Uploader`) through an outage; each server's outcome. `resume` returns once the service
    answers again: the recovery is counted from then."""
    with contextlib.ExitStack() as stack:
        loads = [stack.enter_context(Load(deployment, server)) for server in servers]
        for extra in background:
            stack.enter_context(extra)
        time.sleep(BEFORE_S)
        began = time.monotonic()
        stop()
        time.sleep(OUTAGE_S)
        resume()
        back = time.monotonic()
        time.sleep(AFTER_S)
    return [_outcome(deployment, load.samples, began, back) for load in loads]


def _outcome(deployment: Deployment, samples: list[Sample], began: float, back: float
             ) -> Outcome:
    load_samples = samples
    before = [s for s in load_samples if s.started + s.duration < began]
    assert before and all(s.status == 200 for s in before), \
        [(s.kind, s.status) for s in before if s.status != 200]
    during = [s for s in load_samples if s.started + s.duration >= began]
    failed = [s for s in during if s.status != 200]
    # Recovery: from the service's return to the answer of the first request of each kind
    # that succeeded with no failure after it.
    last_failure = max((s.started for s in failed), default=began)
    recovery = 0.0
    for kind in deployment.paths:
        ok = [s for s in during if s.kind == kind and s.status == 200
              and s.started >= max(back, last_failure)]
        assert ok, (f"no {kind} request succeeded after the outage; failures after the "
                    "service was back (kind, status, s after): "
                    f"{[(s.kind, s.status, round(s.started - back, 2)) for s in failed if s.started >= back][-8:]}")
        recovery = max(recovery, min(s.started + s.duration for s in ok) - back)
    return Outcome(failed, max(s.duration for s in during), recovery, len(during))


def _check(name: str, outcome: Outcome, log: str, component: str) -> None:
    print(outcome.report(name))  # noqa: T201 - the numbers docs/deployment.md quotes
    assert outcome.failed, f"{name}: no request failed: the fault was not injected"
    statuses = sorted({s.status for s in outcome.failed})
    assert statuses == [503], f"{name}: failed with {statuses}"
    assert all(s.transient and s.retry_after for s in outcome.failed)
    assert outcome.quantile(0.99) <= P99_FAILED_S, outcome.report(name)
    assert outcome.slowest_s <= MAX_S, outcome.report(name)
    assert outcome.recovery_s <= RECOVERY_S, outcome.report(name)
    assert log.count(f"{component} unavailable") == 1, log[-3000:]
    assert log.count(f"{component} available again") == 1, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


class LogMark:
    """The part of a live server's log written after this point."""

    def __init__(self, server: LiveServer) -> None:
        self.path = server.log_path
        self.offset = self.path.stat().st_size

    def new(self) -> str:
        time.sleep(0.3)  # the access log is written in batches
        with self.path.open("rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")


def _redis_pid(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        return int(client.info("server")["process_id"])


def _killpg(pid: int, sig: signal.Signals) -> Callable[[], None]:
    return lambda: os.killpg(pid, sig)


def test_postgres_stopped_sigstop(deployment: Deployment) -> None:
    mark = LogMark(deployment.server)
    stopped: list[int] = []

    def stop() -> None:
        stopped.extend(_pg_pids(deployment.pg_url))
        _signal_all(lambda: stopped, signal.SIGSTOP)()

    outcome = _outage(deployment, stop, _signal_all(lambda: stopped, signal.SIGCONT))
    _check("PostgreSQL SIGSTOP", outcome, mark.new(), "database (PostgreSQL)")


def test_postgres_shut_down_and_restarted(deployment: Deployment) -> None:
    mark = LogMark(deployment.server)
    outcome = _outage(deployment, lambda: _pg_ctl(deployment.pg_url, "stop", "-m", "fast"),
                      deployment.pg_restart)
    _check("PostgreSQL pg_ctl stop -m fast", outcome, mark.new(), "database (PostgreSQL)")


def test_redis_stopped_sigstop(deployment: Deployment) -> None:
    mark = LogMark(deployment.server)
    pid = _redis_pid(deployment.redis_url)
    outcome = _outage(deployment, _killpg(os.getpgid(pid), signal.SIGSTOP),
                      _killpg(os.getpgid(pid), signal.SIGCONT))
    _check("Redis SIGSTOP (rate_limit_fail_open=false)", outcome, mark.new(),
           "rate limiter (Redis)")
    assert {s.kind for s in outcome.failed} <= {"graph", "search", "tile"}


def test_s3_stopped_sigstop(deployment: Deployment) -> None:
    mark = LogMark(deployment.server)
    outcome = _outage(deployment, _killpg(deployment.s3.pid, signal.SIGSTOP),
                      _killpg(deployment.s3.pid, signal.SIGCONT))
    _check("S3 SIGSTOP", outcome, mark.new(), "blob store (S3)")
    assert {s.kind for s in outcome.failed} == {"media"}


def test_redis_stopped_with_the_limiter_failing_open(deployment: Deployment) -> None:
    assert deployment.fail_open is not None
    mark = LogMark(deployment.fail_open)
    pid = _redis_pid(deployment.redis_url)
    outcome = _outage(deployment, _killpg(os.getpgid(pid), signal.SIGSTOP),
                      _killpg(os.getpgid(pid), signal.SIGCONT), deployment.fail_open)
    print(outcome.report("Redis SIGSTOP (rate_limit_fail_open=true)"))  # noqa: T201
    assert not outcome.failed  # allowed uncounted, tiles rendered locally
    assert outcome.slowest_s <= 1.0 and outcome.recovery_s <= RECOVERY_S
    log = mark.new()
    assert log.count("rate limiter (Redis) unavailable") == 1, log[-3000:]
    assert log.count("rate limiter (Redis) available again") == 1, log[-3000:]
    assert "Traceback" not in log


def test_a_serve_on_a_data_dir_the_deployment_does_not_share_refuses_to_start(
        deployment: Deployment, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wayview", "serve", "--data-dir", str(tmp_path / "elsewhere"),
         "--host", "127.0.0.1", "--port", str(free_port())],
        env=clean_env(**deployment.env), capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 1, done.stderr
    assert "is not the folder the other processes of this deployment use" in done.stderr
    assert "Traceback" not in done.stderr


# --- Services killed outright, uploads and the worker through the outage ---------------------

#: Photo numbers of the uploads (distinct content, so every image is stored once).
_PHOTO_NUMBERS = itertools.count(10_000)
#: Images per zip of the `Uploader`, and their size.
ZIP_PHOTOS = 3
PHOTO_SIZE = (640, 480)
#: What mapillary_tools waits before retrying a retriable error (shortened: its own backoff is
#: seconds), and the longest one upload (with its retries) may take.
UPLOAD_RETRY_S = 0.25
#: The uploader's pause between two zips (a few a second: the worker keeps up).
UPLOAD_PAUSE_S = 0.3
UPLOAD_DEADLINE_S = 60.0


def _photos(count: int) -> list[bytes]:
    return [photo(next(_PHOTO_NUMBERS), width=PHOTO_SIZE[0], height=PHOTO_SIZE[1])
            for _ in range(count)]


@dataclass(frozen=True)
class Call:
    """One HTTP call of an upload client."""

    what: str
    status: int  # 0: no answer
    duration: float
    retriable: bool
    retry_after: str | None


def _retriable(response: httpx.Response) -> bool:
    """Whether an error answer says to try again (upload envelope or Graph envelope)."""
    try:
        body = response.json()
    except ValueError:
        return False
    if "debug_info" in body:
        return bool(body["debug_info"].get("retriable"))
    return bool(body.get("error", {}).get("is_transient"))


class UploadClient:
    """The upload-service protocol as mapillary_tools drives it: read the session's offset,
    send the rest from there, retry what the server says is retriable, then finish."""

    def __init__(self, server: LiveServer, token: str) -> None:
        self.http = httpx.Client(base_url=server.base_url, timeout=MAX_S * 2, trust_env=False)
        self.auth = {"Authorization": f"OAuth {token}"}
        self.calls: list[Call] = []

    def close(self) -> None:
        self.http.close()

    def call(self, what: str, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        started = time.monotonic()
        response: httpx.Response | None = None
        try:
            response = self.http.request(method, url, headers={
                **self.auth, **kwargs.pop("headers", {})}, **kwargs)
        except httpx.HTTPError:
            pass
        status = response.status_code if response is not None else 0
        retriable = response is not None and status != 200 and _retriable(response)
        self.calls.append(Call(what, status, time.monotonic() - started, retriable,
                               response.headers.get("retry-after") if response else None))
        return response

    def offset(self, key: str) -> int | None:
        r = self.call("offset", "GET", f"/upload/{key}")
        return int(r.json()["offset"]) if r is not None and r.status_code == 200 else None

    def send(self, key: str, body: bytes, offset: int) -> httpx.Response | None:
        return self.call("upload", "POST", f"/upload/{key}", content=body[offset:],
                         headers={"Offset": str(offset)})

    def upload(self, key: str, body: bytes) -> int:
        """Upload `body` as `key` and finish it, retrying until done; its cluster id."""
        deadline = time.monotonic() + UPLOAD_DEADLINE_S
        handle: str | None = None
        while handle is None:
            assert time.monotonic() < deadline, f"upload {key} not done: {self.calls[-5:]}"
            offset = self.offset(key)
            if offset is not None:
                r = self.send(key, body, offset)
                if r is not None and r.status_code == 200:
                    handle = str(r.json()["h"])
                    break
            time.sleep(UPLOAD_RETRY_S)
        while True:
            assert time.monotonic() < deadline, f"finish {key} not done: {self.calls[-5:]}"
            r = self.call("finish", "POST", "/finish_upload",
                          json={"file_handle": handle, "file_type": "zip"})
            if r is not None and r.status_code == 200:
                return int(r.json()["cluster_id"])
            time.sleep(UPLOAD_RETRY_S)

    def failures(self) -> list[Call]:
        return [c for c in self.calls if c.status != 200]


class Uploader:
    """One upload client sending zips of ZIP_PHOTOS new photos, one after the other, until
    stopped (the upload under way is completed)."""

    def __init__(self, deployment: Deployment, server: LiveServer) -> None:
        self.deployment = deployment
        self.client = UploadClient(server, deployment.user_token)
        self.clusters: list[int] = []
        self.photos: list[bytes] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Uploader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=UPLOAD_DEADLINE_S + 10)
        self.client.close()
        assert not self._thread.is_alive(), "the uploader did not finish"
        assert not self.errors, self.errors

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                photos = _photos(ZIP_PHOTOS)
                body = zip_of([(f"{k}.jpg", p) for k, p in enumerate(photos)])
                key = f"mly_tools_{os.urandom(8).hex()}.zip"
                self.clusters.append(self.client.upload(key, body))
                self.photos.extend(photos)
                _uploaded(self.deployment, photos)
                self._stop.wait(UPLOAD_PAUSE_S)
        except BaseException as exc:  # reported by __exit__
            self.errors.append(exc)

    def report(self, name: str) -> str:
        failed = self.client.failures()
        kinds = ",".join(sorted({f"{c.what} {c.status}" for c in failed})) or "none"
        return (f"{name} uploads: {len(self.clusters)} zips ({len(self.photos)} images), "
                f"{len(self.client.calls)} calls, {len(failed)} failed ({kinds}), slowest "
                f"{max((c.duration for c in self.client.calls), default=0):.2f} s")


def _check_upload_calls(name: str, client: UploadClient, *, allowed: tuple[int, ...] = (503,)
                        ) -> None:
    """Every failed upload call is a retriable error with Retry-After, none took over MAX_S."""
    failed = client.failures()
    assert {c.status for c in failed} <= set(allowed), f"{name}: {failed[:5]}"
    assert all(c.retriable and c.retry_after for c in failed), f"{name}: {failed[:5]}"
    assert max(c.duration for c in client.calls) <= MAX_S, name


def _run_store(deployment: Deployment, fn: Callable[[Store], Any]) -> Any:
    async def run() -> Any:
        async with open_test_store(deployment.settings()) as store:
            return await fn(store)

    return asyncio.run(run())


def _uploaded(deployment: Deployment, photos: list[bytes]) -> None:
    """Count `photos` as uploaded (the worker must store each once), as soon as they are."""
    import hashlib

    deployment.uploaded.extend(hashlib.sha256(p).hexdigest() for p in photos)


def _processed(deployment: Deployment, clusters: list[int], photos: list[bytes]) -> str:
    """Wait until the worker has processed `clusters`; check that each of `photos` is stored
    exactly once, no job is parked, no blob journal is left and no image blob is orphaned."""
    async def check(store: Store) -> tuple[list[dict[str, Any]], int, dict[str, int], Any]:
        deadline = time.monotonic() + PROCESSED_WAIT_S
        while True:
            finishes = [await store.get_upload_finish(c) for c in clusters]
            results = [f.result if f is not None else None for f in finishes]
            if all(r is not None and r.get("state") == "done" for r in results):
                break
            if time.monotonic() > deadline:
                jobs = await store.list_jobs(limit=20)
                raise AssertionError(f"uploads not processed in {PROCESSED_WAIT_S:.0f} s: "
                                     f"{results}\n{jobs}")
            await asyncio.sleep(0.2)
        parked = await store.list_jobs(states=("parked",))
        assert not parked, parked
        journals = [await store.journaled_blobs(journal_owner(c)) for c in clusters]
        assert not any(journals), journals
        found = await store.find_images_by_sha256(deployment.uploaded)
        return [r for r in results if r is not None], await store.count_images(), found, None

    results, count, found, _ = _run_store(deployment, check)
    assert sum(int(r["imported"]) for r in results) == len(photos), results
    assert all(r["dropped"] == [] for r in results), results
    assert set(found) == set(deployment.uploaded), "uploaded images missing"
    if count != len(deployment.seeded_ids) + len(deployment.uploaded):
        with psycopg.connect(deployment.pg_url) as conn:
            dupes = conn.execute(
                "SELECT content_sha256, count(*), array_agg(DISTINCT sequence_id) FROM images "
                "GROUP BY content_sha256 HAVING count(*) > 1 LIMIT 5").fetchall()
            by_creator = conn.execute(
                "SELECT creator_id, count(*) FROM images GROUP BY creator_id").fetchall()
        raise AssertionError(f"{count} images, {len(deployment.uploaded)} uploaded: "
                             f"duplicates {dupes}, by creator {by_creator}")
    blobs = S3Blobs(deployment.blobs_url, endpoint_url=deployment.s3.endpoint_url,
                    access_key_id=deployment.s3.access_key_id,
                    secret_access_key=deployment.s3.secret_access_key)
    stored = set(found.values())
    # A PUT that S3 accepted without answering (killed, restarting) can land after the next
    # attempt deleted its folder: such folders were retired, and the worker's sweep deletes
    # them again RETIRED_SWEEP_S later. Any other orphan is a bug.
    deadline, swept = time.monotonic() + 3 * RETIRED_SWEEP_S + 10, ""
    while orphans := _orphans(blobs, stored | deployment.seeded_ids):
        retired = _run_store(deployment, _retired_image_ids)
        assert orphans <= retired, (
            f"blobs of images that are not stored: {sorted(orphans - retired)[:5]}")
        assert time.monotonic() < deadline, f"not swept: {sorted(orphans)[:5]}"
        swept = f", {len(orphans)} late write(s) swept"
        time.sleep(1.0)
    # Keys are images/<shard>/<id>/… and private/<shard>/<id>/….
    assert stored <= {int(info.key.split("/")[2]) for info in blobs.list_keys("images/")}, (
        "stored images without blobs")
    return (f"{len(clusters)} uploads processed, {len(photos)} images stored once, "
            f"no orphan{swept}")


def _orphans(blobs: S3Blobs, stored: set[int]) -> set[int]:
    """Images with blobs that are not stored (keys images/<shard>/<id>/…, private/…)."""
    return {int(info.key.split("/")[2])
            for top in ("images/", "private/") for info in blobs.list_keys(top)} - stored


async def _retired_image_ids(store: Store) -> set[int]:
    """Images whose blob folders wait for the worker's second delete."""
    owners = await store.retired_blob_owners(int(time.time() * 1000) + 3_600_000)
    keys = [k for owner in owners for k in await store.journaled_blobs(owner)]
    return {int(k.split("/")[2]) for k in keys if k.startswith(("images/", "private/"))}


def _process_spec(pid: int) -> tuple[list[str], str, dict[str, str]]:
    """How a process was started (command line, folder, environment), to start it again."""
    proc = Path(f"/proc/{pid}")
    cmd = [a.decode() for a in (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
    env = dict(item.split("=", 1) for item in
               (proc / "environ").read_bytes().decode(errors="replace").split("\0")
               if "=" in item)
    return cmd, os.readlink(proc / "cwd"), env


def _gone(pids: list[int], timeout: float = 5.0) -> bool:
    """Wait until `pids` have ended (our own children reaped); False if one is left (a
    zombie nobody reaps)."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        left = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        if not left or time.monotonic() > deadline:
            return not left
        time.sleep(0.02)


def _respawn(deployment: Deployment, spec: tuple[list[str], str, dict[str, str]],
             log: Path) -> subprocess.Popen[bytes]:
    cmd, cwd, env = spec
    with log.open("ab") as out:
        process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    deployment.respawned.append(process)
    return process


def _wait_for(ready: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"{what} not back within {timeout:.0f} s"
        time.sleep(0.02)


def _killed(name: str, outcomes: list[Outcome], marks: list[LogMark], component: str
            ) -> None:
    """Both servers: the `_check` targets, each logging the outage once."""
    for n, (outcome, mark) in enumerate(zip(outcomes, marks, strict=True)):
        _check(f"{name} (serve {n + 1})", outcome, mark.new(), component)


def _worker_log_clean(deployment: Deployment, offset: int) -> None:
    assert deployment.worker_log is not None
    with deployment.worker_log.open("rb") as f:
        f.seek(offset)
        log = f.read().decode(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def _worker_log_size(deployment: Deployment) -> int:
    assert deployment.worker_log is not None
    return deployment.worker_log.stat().st_size


def test_postgres_killed_and_restarted_with_uploads_and_the_worker(
        deployment: Deployment) -> None:
    d = deployment
    servers = [d.server, d.fail_open]
    assert d.fail_open is not None
    marks = [LogMark(s) for s in servers if s is not None]
    worker_log = _worker_log_size(d)
    uploader = Uploader(d, d.server)

    def kill() -> None:
        pids = _pg_pids(d.pg_url)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not _gone(pids):  # a zombie nobody reaps still "holds" the lock file
            (_pg_data(d.pg_url) / "postmaster.pid").unlink(missing_ok=True)

    outcomes = _outages(d, kill, d.pg_restart, [d.server, d.fail_open], uploader)
    _killed("PostgreSQL SIGKILL", outcomes, marks, "database (PostgreSQL)")
    print(uploader.report("PostgreSQL SIGKILL"))  # noqa: T201
    _check_upload_calls("PostgreSQL SIGKILL", uploader.client)
    assert uploader.client.failures(), "no upload call met the outage"
    print(_processed(d, uploader.clusters, uploader.photos))  # noqa: T201
    _worker_log_clean(d, worker_log)


def test_redis_killed_and_restarted(deployment: Deployment) -> None:
    d = deployment
    assert d.fail_open is not None
    marks = [LogMark(d.server), LogMark(d.fail_open)]
    pid = _redis_pid(d.redis_url)
    socket_path = Path(urlsplit(d.redis_url).path)
    # Redis rewrites its command line (process title): start it as tests/redis_server.py does.
    binary = shutil.which("redis-server")
    assert binary is not None
    spec = ([binary, "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(socket_path.parent)],
            str(socket_path.parent), dict(os.environ))

    def kill() -> None:
        os.kill(pid, signal.SIGKILL)
        assert _gone([pid])

    def restart() -> None:
        socket_path.unlink(missing_ok=True)
        _respawn(d, spec, socket_path.parent / "redis-respawned.log")

        def answers() -> bool:
            try:
                with redis.Redis.from_url(d.redis_url, socket_timeout=0.5) as client:
                    return bool(client.ping())
            except redis.RedisError:
                return False

        _wait_for(answers, "Redis")

    closed, open_ = _outages(d, kill, restart, [d.server, d.fail_open])
    _check("Redis SIGKILL (rate_limit_fail_open=false)", closed, marks[0].new(),
           "rate limiter (Redis)")
    assert {s.kind for s in closed.failed} <= {"graph", "search", "tile"}
    print(open_.report("Redis SIGKILL (rate_limit_fail_open=true)"))  # noqa: T201
    assert not open_.failed and open_.slowest_s <= 1.0 and open_.recovery_s <= RECOVERY_S
    log = marks[1].new()
    assert log.count("rate limiter (Redis) unavailable") == 1, log[-3000:]
    assert log.count("rate limiter (Redis) available again") == 1, log[-3000:]
    assert "Traceback" not in log


def test_s3_killed_and_restarted_with_uploads_and_the_worker(deployment: Deployment) -> None:
    d = deployment
    assert d.fail_open is not None
    marks = [LogMark(d.server), LogMark(d.fail_open)]
    worker_log = _worker_log_size(d)
    pid = d.s3_pid
    spec = _process_spec(pid)
    uploader = Uploader(d, d.server)

    def kill() -> None:
        os.killpg(pid, signal.SIGKILL)
        assert _gone([pid])

    def restart() -> None:
        process = _respawn(d, spec, Path(spec[1]) / "weed-respawned.log")
        d.s3_pid = process.pid

        # Back = the seeded thumbnail reads again: SeaweedFS's S3 gateway answers before its
        # volume server serves objects (under CI load, seconds before).
        image_id = int(d.paths["media"].split("/")[3])
        blobs = S3Blobs(d.blobs_url, endpoint_url=d.s3.endpoint_url,
                        access_key_id=d.s3.access_key_id,
                        secret_access_key=d.s3.secret_access_key, timeout_s=0.5,
                        max_retries=0, retry_timeout_s=0.5)

        def answers() -> bool:
            try:
                return bool(blobs.get_bytes(image_blob_key(image_id, "thumb_256")))
            except Exception:  # noqa: BLE001 - any failure: not back yet
                return False

        _wait_for(answers, "S3")

    outcomes = _outages(d, kill, restart, [d.server, d.fail_open], uploader)
    _killed("S3 SIGKILL", outcomes, marks, "blob store (S3)")
    assert all({s.kind for s in o.failed} == {"media"} for o in outcomes)
    print(uploader.report("S3 SIGKILL"))  # noqa: T201
    _check_upload_calls("S3 SIGKILL", uploader.client)
    print(_processed(d, uploader.clusters, uploader.photos))  # noqa: T201
    _worker_log_clean(d, worker_log)


def _fill(path: Path, leave: int) -> None:
    """Grow `path` until its filesystem has about `leave` bytes free."""
    with path.open("ab") as f:
        more = shutil.disk_usage(path.parent).free - leave
        if more > 0:
            os.posix_fallocate(f.fileno(), f.seek(0, 2), more)


def test_a_full_data_dir_refuses_uploads_retriably_and_they_resume(
        deployment: Deployment) -> None:
    d = deployment
    if not d.data_on_tmpfs:
        pytest.skip("data_dir is not a small tmpfs here (mount -t tmpfs needs root)")
    assert d.fail_open is not None
    marks = [LogMark(d.server), LogMark(d.fail_open)]
    worker_log = _worker_log_size(d)
    data = d.server.data_dir
    main, other = UploadClient(d.server, d.user_token), UploadClient(d.fail_open, d.user_token)
    try:
        # Already stored: a processed upload, and a complete upload not yet finished.
        kept_photos = _photos(ZIP_PHOTOS)
        kept = main.upload("mly_tools_kept.zip",
                           zip_of([(f"{k}.jpg", p) for k, p in enumerate(kept_photos)]))
        _uploaded(d, kept_photos)
        _processed(d, [kept], kept_photos)
        waiting_photos = _photos(ZIP_PHOTOS)
        waiting = zip_of([(f"{k}.jpg", p) for k, p in enumerate(waiting_photos)])
        assert main.send("mly_tools_waiting.zip", waiting, 0) is not None
        photos_a, photos_b = _photos(6), _photos(6)
        body_a = zip_of([(f"{k}.jpg", p) for k, p in enumerate(photos_a)])
        body_b = zip_of([(f"{k}.jpg", p) for k, p in enumerate(photos_b)])
        half = len(body_a) // 2
        r = main.send("mly_tools_a.zip", body_a[:half], 0)
        assert r is not None and r.status_code == 200, r
        images_before = _run_store(d, lambda s: s.count_images())

        filler = data / "filler"
        _fill(filler, DISK_FLOOR // 2)  # below the main server's floor: refused up front
        r = main.send("mly_tools_a.zip", body_a, half)
        assert r is not None and r.status_code == 507, r
        _fill(filler, 64 * 1024)  # the second has no floor: the disk fills mid-body
        r = other.send("mly_tools_b.zip", body_b, 0)
        assert r is not None and r.status_code == 507, r
        print(f"full disk: {shutil.disk_usage(data).free} bytes free, uploads answered "  # noqa: T201
              f"{sorted({c.status for c in main.failures() + other.failures()})}")
        _check_upload_calls("full disk", main, allowed=(507,))
        _check_upload_calls("full disk", other, allowed=(507,))
        # Nothing already stored is lost.
        assert main.offset("mly_tools_a.zip") == half
        kept_b = other.offset("mly_tools_b.zip")
        assert kept_b is not None and kept_b < len(body_b)
        assert main.offset("mly_tools_waiting.zip") == len(waiting)
        assert _run_store(d, lambda s: s.count_images()) == images_before

        filler.unlink()
        _uploaded(d, photos_a + photos_b + waiting_photos)
        clusters = [main.upload("mly_tools_a.zip", body_a),
                    other.upload("mly_tools_b.zip", body_b),
                    main.upload("mly_tools_waiting.zip", waiting)]
        print(f"after freeing space: {_processed(d, clusters, photos_a + photos_b + waiting_photos)}")  # noqa: T201,E501
    finally:
        (data / "filler").unlink(missing_ok=True)
        main.close()
        other.close()
    for mark in marks:
        log = mark.new()
        assert "Traceback" not in log and " 500 " not in log, log[-3000:]
    _worker_log_clean(d, worker_log)
