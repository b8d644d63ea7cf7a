"""bench/serverproc.py: a server under test as a child process group on loopback.

Started with its output in a log file, waited for until its health URL answers 200, always
stopped on exit (SIGTERM to the group, then SIGKILL). The common part of the `Server`
classes of bench/graph.py, bench/tiles.py and bench/peers.py; each subclass sets `proc`
through `launch` and may change the class-level timings.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A context manager around one server process group (see the module docstring)."""

    #: Shown in start-up errors.
    name = "server"
    #: Seconds to wait for the first healthy answer.
    start_timeout_s = 90.0
    #: Seconds between health probes, and each probe's own timeout.
    poll_s = 0.2
    probe_timeout_s = 1.0
    #: Seconds to wait after the first healthy answer (every worker finishes its start-up).
    settle_s = 1.0
    #: Seconds to wait for the group to exit after SIGTERM, then after SIGKILL.
    term_wait_s = 15.0
    kill_wait_s = 15.0

    base_url: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def launch(self, cmd: list[str], *, cwd: Path, env: dict[str, str], health: str) -> None:
        """Start `cmd` and wait until `base_url + health` answers 200; stopped on failure."""
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                         env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + self.start_timeout_s
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
                try:
                    answer = httpx.get(self.base_url + health, timeout=self.probe_timeout_s)
                    if answer.status_code == 200:
                        time.sleep(self.settle_s)
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(self.poll_s)
            raise RuntimeError(f"{self.name} not healthy within {self.start_timeout_s:.0f} s:\n"
                               f"{self.tail()}")
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def worker_pids(self) -> list[int]:
        """Child processes of the server (the granian workers)."""
        if self.proc is None:
            return []
        try:
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                 text=True, timeout=10, check=False).stdout
        except OSError:
            return []
        return [int(p) for p in out.split()]

    def all_pids(self) -> list[int]:
        """The server process and its workers."""
        return [self.proc.pid, *self.worker_pids()] if self.proc is not None else []

    def tail(self, lines: int = 30) -> str:
        """The end of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=self.term_wait_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=self.kill_wait_s)
        except ProcessLookupError:
            pass
