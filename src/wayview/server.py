"""wayview.server: run the ASGI app under granian (one or several worker processes).

granian binds its listening socket with SO_REUSEPORT, so a second server started on a port
that a first one holds would silently share its traffic. `check_port` binds the address once
without SO_REUSEPORT before granian starts: a port in use (by wayview or any other program) is
a one-line error instead. Worker processes that die (SIGKILL, out of memory) are respawned.

With `metrics.enabled` the workers share a fresh folder of metric files (removed when the
server stops), so any worker answering `/metrics` reports all of them (wayview.metrics).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import socket
import sys
from typing import Any

from wayview import hardening, logs, metrics
from wayview.errors import WayviewError
from wayview.settings import Settings

#: Seconds between granian's checks for dead workers (it respawns them).
RESPAWN_INTERVAL_S = 1.0


class PortUnavailable(WayviewError):
    """The address `serve` should listen on cannot be bound."""


def check_port(host: str, port: int) -> None:
    """Raise PortUnavailable unless `host:port` can be bound exclusively right now.

    >>> import socket
    >>> holder = socket.socket(); holder.bind(("127.0.0.1", 0)); holder.listen()
    >>> check_port("127.0.0.1", holder.getsockname()[1])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wayview.server.PortUnavailable: cannot listen on 127.0.0.1:...: the port is already in use ...
    >>> holder.close()
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortUnavailable(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    probe = socket.socket(family, kind, proto)
    try:
        # SO_REUSEADDR (not SO_REUSEPORT): a socket still in TIME_WAIT does not block a
        # restart, a listening one does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = ("the port is already in use (another wayview or another program "
                      "listens there); stop it or choose another --port")
        elif exc.errno == errno.EACCES:
            reason = "permission denied (ports below 1024 need privileges)"
        else:
            reason = exc.strerror or str(exc)
        raise PortUnavailable(f"cannot listen on {host}:{port}: {reason}") from None
    finally:
        probe.close()


#: The `serve` process's pid, for its worker processes (`die_with_server`).
SERVER_PID_ENV = "WAYVIEW_SERVER_PID"
_PR_SET_PDEATHSIG = 1


def die_with_server() -> None:
    """In a worker process of `serve`: be sent SIGTERM (a graceful stop) when the `serve`
    process dies, even by SIGKILL, instead of serving on as an orphan beside a restarted
    `serve`. Linux only (prctl PR_SET_PDEATHSIG); elsewhere granian's supervision is all."""
    raw = os.environ.get(SERVER_PID_ENV)
    if not raw or not raw.isdigit() or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != int(raw):  # `serve` died before the request above took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run_server(settings: Settings) -> None:
    """Serve until interrupted. Settings reach the worker processes as JSON in the environment.

    Raises PortUnavailable before anything starts when the address cannot be bound.
    """
    check_port(settings.host, settings.port)
    if hardening.is_exposed(settings):  # a public server with a risky setting says so
        for finding in hardening.findings(settings):
            if finding.level == "warning":
                logging.getLogger("wayview").warning("%s (wayview check lists every finding)",
                                                     finding.line())
    os.environ["WAYVIEW_SERVER_SETTINGS"] = settings.model_dump_json()
    os.environ[SERVER_PID_ENV] = str(os.getpid())
    metrics_dir = metrics.prepare_multiprocess() if settings.metrics.enabled else None
    try:
        _granian(settings).serve()
    finally:
        if metrics_dir is not None:
            metrics.remove_multiprocess_dir(metrics_dir)


def _granian(settings: Settings) -> Any:
    from granian import Granian
    from granian.constants import Interfaces

    return Granian(
        "wayview.api.app:app_from_env",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        respawn_failed_workers=True,
        respawn_interval=RESPAWN_INTERVAL_S,
        log_access=False,  # our own access log redacts tokens
        log_level=settings.log_level.lower(),  # type: ignore[arg-type]
        log_dictconfig=logs.granian_log_config(settings.log_format),
    )
