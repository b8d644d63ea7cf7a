"""`wayview serve` as a process: a dead worker is replaced, a busy port is a one-line error
(issue #14, items 6 and 7)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.acceptance.live import REPO, clean_env, free_port, live_server

pytestmark = [pytest.mark.slow]


def children(pid: int) -> list[int]:
    """The direct child processes of `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …: comm may hold spaces, so split after the last ')'.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry))
    return found


def serve(port: int, data_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wayview", "serve", "--data-dir", str(data_dir),
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, check=False)


def assert_one_line_error(done: subprocess.CompletedProcess[str], port: int) -> None:
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0]
    assert "already in use" in lines[0]


def test_a_port_held_by_another_program_is_a_one_line_error(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert_one_line_error(serve(port, tmp_path / "data"), port)


def test_a_second_server_on_the_same_port_refuses_to_start(tmp_path):
    with live_server(tmp_path / "one", tmp_path / "one.log", cwd=REPO) as first:
        port = int(first.base_url.rsplit(":", 1)[1])
        assert_one_line_error(serve(port, tmp_path / "two"), port)
        # The first one still answers every request alone.
        with httpx.Client(trust_env=False, timeout=5) as client:
            for _ in range(20):
                assert client.get(f"{first.base_url}/healthz").status_code == 200


def test_a_killed_worker_is_respawned_and_the_server_keeps_answering(tmp_path):
    with live_server(tmp_path / "data", tmp_path / "serve.log", cwd=REPO) as server:
        workers = children(server.process.pid)
        assert workers, "granian started no worker process"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        with httpx.Client(trust_env=False, timeout=2) as client:
            while True:
                assert server.process.poll() is None, \
                    f"the server exited after its worker died:\n{server.log_tail()}"
                try:
                    if client.get(f"{server.base_url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, \
                    f"no answer 30 s after the worker died:\n{server.log_tail()}"
                time.sleep(0.1)
        replacement = children(server.process.pid)
        assert replacement and not set(replacement) & set(workers)


def test_workers_end_with_a_killed_server_and_the_port_is_free_again(tmp_path):
    """SIGKILL of `serve` (no chance to stop its workers) once left them serving as orphans
    beside a restarted `serve` (issue #22 item 3)."""
    with live_server(tmp_path / "data", tmp_path / "serve.log", cwd=REPO) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        workers = children(server.process.pid)
        assert workers, "granian started no worker process"
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(Path(f"/proc/{pid}").exists() and "Z" not in
                  Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[:1]
                  for pid in workers):
            assert time.monotonic() < deadline, f"workers {workers} outlived their server"
            time.sleep(0.1)
        with socket.socket() as probe:  # nothing listens there any more
            assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_port_zero_is_not_probed():
    from wayview.server import check_port

    check_port("127.0.0.1", 0)
    port = free_port()
    check_port("127.0.0.1", port)  # free: no error
