"""tests.acceptance.live: a real `wayview serve` process on loopback, the CLI, client virtualenvs.

Helpers for the acceptance suite (spec §10): the server runs as a subprocess exactly as a user
starts it (granian, a real socket), its output goes to a log file, every wait is bounded, and
the process group is ended afterwards. Client packages from PyPI get their own virtualenvs so
their dependency pins never touch the project's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 120.0
PIP_TIMEOUT_S = 900.0
NPM_TIMEOUT_S = 300.0
NODE_TIMEOUT_S = 60.0
NODE_DIR = Path(__file__).resolve().parent / "node"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: no WAYVIEW_* of the developer, no proxies for loopback,
    and GPS-track positions (structure from motion only where a test passes
    `WAYVIEW_PIPELINE__POSITIONER=sfm`: it would keep the CPU busy behind every other test)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYVIEW_")}
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY"):
        env.pop(name, None)
    env["NO_PROXY"] = env["no_proxy"] = "*"
    env["WAYVIEW_PIPELINE__POSITIONER"] = "track"
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wayview(*args: str, data_dir: Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run `python -m wayview ARGS --data-dir DATA_DIR` (with `env`: WAYVIEW_* settings); its
    stdout, or fail with its stderr."""
    cmd = [sys.executable, "-m", "wayview", *args, "--data-dir", str(data_dir)]
    done = subprocess.run(cmd, cwd=cwd, env=clean_env(**(env or {})), capture_output=True,
                          text=True,
                          timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def wayview_json(*args: str, data_dir: Path, cwd: Path, env: dict[str, str] | None = None
                 ) -> Any:
    """`wayview ARGS --json`: the one JSON object it prints."""
    out = wayview(*args, "--json", data_dir=data_dir, cwd=cwd, env=env)
    return json.loads(out.strip().splitlines()[-1])


def create_uploader(username: str, *, data_dir: Path, cwd: Path,
                    env: dict[str, str] | None = None) -> tuple[str, str]:
    """A user with a read-only app of their own: (the app's client token, a user token)."""
    wayview_json("users", "create", username, data_dir=data_dir, cwd=cwd, env=env)
    app = wayview_json("apps", "create", f"{username}-reader", "--owner", username,
                       "--scope", "read", data_dir=data_dir, cwd=cwd, env=env)
    token = wayview_json("tokens", "create", "--user", username, data_dir=data_dir,
                         cwd=cwd, env=env)["access_token"]
    return str(app["client_token"]), str(token)


@dataclass
class LiveServer:
    """A running `wayview serve`: its base URL, data folder and log file."""

    base_url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's output (for failure messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def live_server(data_dir: Path, log_path: Path, *, cwd: Path,
                env: dict[str, str] | None = None,
                public_base_url: str | None = None) -> Iterator[LiveServer]:
    """Start `wayview serve` on a free loopback port, wait for /healthz, stop it afterwards.
    `env` adds environment variables (WAYVIEW_* settings) for the server; `public_base_url`
    is the address it names in answers (default: its own, as `base_url`)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "wayview", "serve", "--data-dir", str(data_dir),
           "--host", "127.0.0.1", "--port", str(port), "--public-base-url",
           public_base_url or base]
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=cwd, env=clean_env(**(env or {})), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    server = LiveServer(base, data_dir, log_path, process)
    try:
        _wait_healthy(server)
        yield server
    finally:
        stop_process_group(process)


def _wait_healthy(server: LiveServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last: object = None
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise AssertionError(f"wayview serve exited with {server.process.returncode}:\n"
                                     f"{server.log_tail()}")
            try:
                response = client.get(f"{server.base_url}/healthz")
            except httpx.TransportError as exc:
                last = exc
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            time.sleep(0.1)
    raise AssertionError(f"wayview serve not healthy after {START_TIMEOUT_S:.0f} s "
                         f"(last: {last!r}):\n{server.log_tail()}")


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to a process's own group (a server: granian and its workers), then SIGKILL if
    it does not end within 10 s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def client_venv(venv: Path, requirement: str, module: str, version: str,
                distribution: str | None = None) -> Path:
    """A virtualenv at VENV with REQUIREMENT installed (once); returns its python.

    Reused when `module` is importable there and its distribution (`distribution`, default
    `module`: they differ for packages such as `mapillary-dl`, whose modules are `cli`,
    `downloader` …) is at `version`. A lock file inside the venv keeps parallel test workers
    from installing into it at the same time.
    """
    python = venv / "bin" / "python"
    venv.mkdir(parents=True, exist_ok=True)  # `python -m venv` accepts an existing folder
    with open(venv / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _has_version(python, module, version, distribution):
            return python
        if not python.exists():
            _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
        _run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
              "--no-input", "-q", requirement], timeout=PIP_TIMEOUT_S)
        if not _has_version(python, module, version, distribution):
            raise AssertionError(f"{requirement} installed into {venv} but {module} "
                                 f"{version} is not importable there")
    return python


def _has_version(python: Path, module: str, version: str,
                 distribution: str | None = None) -> bool:
    if not python.exists():
        return False
    probe = (f"import importlib.metadata as m, {module}; "
             f"raise SystemExit(0 if m.version({distribution or module!r}) == {version!r} "
             f"else 1)")
    done = subprocess.run([str(python), "-c", probe], capture_output=True, timeout=120,
                          check=False, env=clean_env())
    return done.returncode == 0


def _run(cmd: list[str], *, timeout: float) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL, env=clean_env())
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n"
                             f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")


def raw_get(base_url: str, target: str, headers: dict[str, str] | None = None,
            timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send TARGET byte for byte (raw `|`, `{`, `//` …) over a socket; status, headers, body.

    HTTP clients normalise request targets; this does not, so it tests what the server's HTTP
    stack accepts (spec §1.2, §1.6).
    """
    host, port = base_url.removeprefix("http://").split(":")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    chunks = []
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if "chunked" in parsed.get("transfer-encoding", ""):
        body = _dechunk(body)
    return int(status_line.split()[1]), parsed, body


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return bytes(out)


@dataclass
class NodePackage:
    """tests/acceptance/node installed in a folder of its own; `run` starts one of its scripts."""

    node: str
    folder: Path

    def run(self, script: str, argument: Any) -> Any:
        """`node SCRIPT JSON(argument)`; the one JSON value it prints."""
        done = subprocess.run([self.node, script, json.dumps(argument)], cwd=self.folder,
                              env=clean_env(), capture_output=True, text=True,
                              timeout=NODE_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
        assert done.returncode == 0, f"node {script} failed:\n{done.stderr[-4000:]}"
        return json.loads(done.stdout)


def node_package(folder: Path) -> NodePackage:
    """`npm ci` of tests/acceptance/node from its committed lock file, inside `folder` (so
    parallel workers and concurrent runs never share, or wipe, one node_modules)."""
    import pytest

    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed for the JavaScript clients (Debian packages "
                    "nodejs, npm); not found on PATH")
    for source in NODE_DIR.iterdir():
        if source.is_file():
            shutil.copy2(source, folder / source.name)
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=folder, env=clean_env(), capture_output=True, text=True,
                          timeout=NPM_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return NodePackage(node, folder)
