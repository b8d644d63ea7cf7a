"""wayview.logs: logging set-up for the server and worker processes.

Ordinary log records go to stderr one line at a time. The access log (one line per request,
logger `wayview.access`) is written in batches instead: a `BatchingHandler` formats each record
at once (so the line is final when the request ends) but writes the collected lines from a
background thread every `ACCESS_FLUSH_S`, when `ACCESS_BATCH_BYTES` have piled up, and when the
server shuts down. Writing a line per request cost ~0.3 ms of server CPU per cold tile (the
write releases the GIL mid-request and the other threads of the worker take it); in batches the
event loop never waits on the log file. A process killed with SIGKILL loses at most the last
`ACCESS_FLUSH_S` of access lines; every other record is written at once.

`log_format = "json"` writes every record as one JSON object per line (`JsonFormatter`): `time`
(ISO 8601, UTC), `level`, `logger`, `message`, the record's structured `fields` (an access
record has method, route, path, query, status, duration_ms, app_id; a job record has job_id,
kind, outcome, duration_ms, attempt), the `log_context` of the request or job that logged it
(`trace_id`, or `job_id` and `kind`), and an `exception` as one string field. Fields are never
secrets: queries pass through `loggable_query`, headers are not logged.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import unquote_plus

import orjson

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Longest a finished request's access line waits before it is written.
ACCESS_FLUSH_S = 0.2
#: Lines are written at once when this many bytes are waiting.
ACCESS_BATCH_BYTES = 64 * 1024

access_log = logging.getLogger("wayview.access")

#: What every JSON record logged inside a request or a job run carries (`trace_id`; `job_id`
#: and `kind`); set by the app and the job runner, copied into threads by asyncio.to_thread.
log_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "wayview_log_context", default=None)

#: Query keys whose values reach the access log; every other key is logged as `key=[redacted]`
#: (credentials such as access_token, client_secret, code, refresh_token and password are not
#: here, nor is anything a client may invent). Names are compared after percent-decoding.
LOGGED_QUERY_KEYS = frozenset({
    "fields", "bbox", "limit", "after", "ids", "image_ids", "sequence_id", "sequence_ids",
    "organization_id", "creator_username", "start_captured_at", "end_captured_at",
    "start_first_seen_at", "end_first_seen_at", "start_last_seen_at", "end_last_seen_at",
    "is_pano", "make", "model", "camera_type", "object_type", "object_values", "s2", "z",
    "image_key", "style", "grant_type", "response_type", "client_id", "scope", "done",
})
#: Longest value, key and path written to the access log (longer ones end in `…`).
MAX_LOGGED_VALUE = 256
MAX_LOGGED_PATH = 1024
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\\\u2028\u2029]")


def escape(text: str, limit: int = MAX_LOGGED_PATH) -> str:
    """`text` safe for one log line: control characters (and backslashes) as `\\xNN`, cut at
    `limit` characters. A client cannot start a forged line with `%0a` or hide text with NUL.

    >>> escape("/a\\nb\\x00c\\\\d")
    '/a\\\\x0ab\\\\x00c\\\\x5cd'
    >>> escape("x" * 10, 4)
    'xxxx…'
    """
    if len(text) > limit:
        text = text[:limit] + "…"
    return _UNPRINTABLE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def loggable_query(raw: bytes | str) -> str:
    """A query string as the access log shows it: allow-listed keys with their values, every
    other key's value replaced by `[redacted]`, everything escaped.

    >>> loggable_query(b"fields=id&access%5Ftoken=MLY|1|s&client_secret=x&password=p")
    'fields=id&access%5Ftoken=[redacted]&client_secret=[redacted]&password=[redacted]'
    """
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    if not text:
        return ""
    parts = []
    for item in text.split("&")[:64]:
        name, has_value, value = item.partition("=")
        if unquote_plus(name).strip().lower() in LOGGED_QUERY_KEYS:
            parts.append(escape(item, MAX_LOGGED_VALUE))
        else:
            parts.append(escape(name, 64) + ("=[redacted]" if has_value else ""))
    return "&".join(parts)


class BatchingHandler(logging.Handler):
    """Formats records on the caller's thread, writes them from a daemon thread in batches."""

    def __init__(self, stream: TextIO | None = None, *, interval_s: float = ACCESS_FLUSH_S,
                 batch_bytes: int = ACCESS_BATCH_BYTES) -> None:
        super().__init__()
        self.stream = stream
        self.interval_s = interval_s
        self.batch_bytes = batch_bytes
        self._lines: list[str] = []
        self._size = 0
        self._write_lock = threading.Lock()  # one writer at a time, lines stay in order
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # The writer thread does not survive a fork and may have held the write lock.
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the formatted line (called with the handler lock held)."""
        try:
            line = self.format(record) + "\n"
        except Exception:  # noqa: BLE001 - logging must never break a request
            self.handleError(record)
            return
        self._lines.append(line)
        self._size += len(line)
        # A closed handler still attached goes on writing: granian's logging set-up in each
        # worker (logging.config.dictConfig) closes every existing handler, ours included,
        # and left the access lines queued until shutdown.
        self._closed = False
        if self._thread is None or not self._thread.is_alive():  # first use, or after fork
            self._thread = threading.Thread(target=self._run, name="wayview-access-log",
                                            daemon=True)
            self._thread.start()
        if self._size >= self.batch_bytes:
            self._wake.set()

    def _take(self) -> str:
        self.acquire()
        try:
            text, self._lines, self._size = "".join(self._lines), [], 0
        finally:
            self.release()
        return text

    def flush(self) -> None:
        """Write every queued line now."""
        with self._write_lock:
            text = self._take()
            if text:
                stream = self.stream or sys.stderr
                try:
                    stream.write(text)
                    stream.flush()
                except (OSError, ValueError):  # the stream went away (shutdown)
                    pass

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        self._closed = True
        self._wake.set()
        self.flush()
        super().close()


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object."""
        when = datetime.fromtimestamp(record.created, UTC)
        obj: dict[str, Any] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = log_context.get()
        if context:
            obj.update(context)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            obj.update(fields)
        if record.exc_info:
            exc = record.exc_info[1]
            if exc is not None:
                obj["error_type"] = type(exc).__name__
            obj["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            obj["exception"] = record.exc_text
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(obj, default=str).decode()


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of `log_format` ("plain" or "json")."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(LOG_FORMAT)


def configure(level: str, log_format: str = "plain") -> None:
    """Log at `level` to stderr in `log_format`, the access log through a `BatchingHandler`
    (idempotent; a second call switches the format)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    ours = [h for h in root.handlers if getattr(h, "wayview", False)]
    if not ours and not root.handlers:  # as logging.basicConfig: not over someone else's
        ours = [logging.StreamHandler()]
        ours[0].wayview = True  # type: ignore[attr-defined]
        root.addHandler(ours[0])
    for handler in ours:
        handler.setFormatter(formatter(log_format))
    batching = [h for h in access_log.handlers if isinstance(h, BatchingHandler)]
    if not batching:
        batching = [BatchingHandler()]
        access_log.addHandler(batching[0])
        access_log.propagate = False
    for handler in batching:
        handler.setFormatter(formatter(log_format))
    # The pool's per-connection warnings (a broken connection discarded, a reconnection that
    # failed) repeat for every connection during a database outage; the store logs the
    # outage itself, once at each end (`Outage`).
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def granian_log_config(log_format: str) -> dict[str, Any] | None:
    """granian's `log_dictconfig` for `log_format`: its own records (start, workers) as JSON
    too; None = granian's default text."""
    if log_format != "json":
        return None
    return {
        "formatters": {"json": {"()": "wayview.logs.JsonFormatter"}},
        "handlers": {"console": {"formatter": "json", "class": "logging.StreamHandler",
                                 "stream": "ext://sys.stderr"}},
        "loggers": {"_granian": {"handlers": ["console"], "level": "INFO",
                                 "propagate": False}},
    }


def flush_access_log() -> None:
    """Write the queued access lines (at shutdown)."""
    for handler in access_log.handlers:
        if isinstance(handler, BatchingHandler):
            handler.flush()


class Outage:
    """One log line when a dependency (database, blob store, Redis) stops answering and one
    when it answers again, per process and outage (issue #22: not a line per request, no
    traceback for an outage that is expected to happen).

    Call `down(exc)` on every failure and `up()` on every success; both are cheap when the
    state does not change (`up` is one attribute test on the hot path). During an outage
    `attempt()` lets one call through every `probe_every_s` and tells the others to fail at
    once, so requests do not each wait out a timeout while the dependency is known down. A
    probe may take up to `probe_timeout_s`: the next one waits for it (or for its failure)
    rather than piling up behind it.
    """

    def __init__(self, logger: logging.Logger, what: str, *,
                 effect: str = "answering 503 until it is back",
                 probe_every_s: float = 0.2, probe_timeout_s: float = 0.0) -> None:
        self._log = logger
        self.what = what
        self.effect = effect
        self.down_since: float | None = None
        self.failures = 0
        self.probe_every_s = probe_every_s
        self.probe_timeout_s = probe_timeout_s
        self._next_probe = 0.0
        self._lock = threading.Lock()

    def attempt(self) -> bool:
        """Whether to call the dependency now: always while it is up; during an outage only
        one caller per `probe_every_s` (the probe that notices the end of the outage)."""
        if self.down_since is None:
            return True
        now = time.monotonic()
        with self._lock:
            if now < self._next_probe:
                return False
            self._next_probe = now + self.probe_every_s + self.probe_timeout_s
            return True

    @property
    def is_down(self) -> bool:
        """Whether the last call saw the dependency fail."""
        return self.down_since is not None

    def down(self, exc: BaseException | str) -> None:
        """A call failed: log the start of an outage (once), count the failure."""
        with self._lock:
            self.failures += 1
            if self.down_since is not None:  # a probe failed: the next one in probe_every_s
                self._next_probe = min(self._next_probe, time.monotonic() + self.probe_every_s)
                return
            self.down_since = time.monotonic()
            self._next_probe = self.down_since + self.probe_every_s
            self.failures = 1
        reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        self._log.error("%s unavailable (%s): %s", self.what,
                        " ".join(str(reason).split())[:300], self.effect)

    def up(self) -> None:
        """A call succeeded: log the end of an outage (once)."""
        if self.down_since is None:
            return
        with self._lock:
            since, self.down_since = self.down_since, None
            failures = self.failures
        if since is not None:
            self._log.warning("%s available again after %.1f s (%d failed calls)", self.what,
                              time.monotonic() - since, failures)
