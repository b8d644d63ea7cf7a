"""The batched access log: every line written, in order, soon, once."""

from __future__ import annotations

import io
import logging
import threading
import time

from wayview import logs


def _handler(stream: io.StringIO, **kw: float) -> logging.Logger:
    logger = logging.getLogger(f"wayview.test.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logs.BatchingHandler(stream, **kw)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return logger


def test_lines_from_many_threads_are_all_written_in_each_threads_order() -> None:
    out = io.StringIO()
    logger = _handler(out, interval_s=0.01)

    def work(t: int) -> None:
        for i in range(500):
            logger.info("t%d %d", t, i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for h in logger.handlers:
        h.flush()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2000
    for t in range(4):
        assert [int(x.split()[1]) for x in lines if x.startswith(f"t{t} ")] == list(range(500))


def test_a_line_is_written_without_an_explicit_flush() -> None:
    out = io.StringIO()
    logger = _handler(out, interval_s=0.05)
    logger.info("GET /healthz 200")
    deadline = time.monotonic() + 5
    while "GET /healthz 200" not in out.getvalue():
        assert time.monotonic() < deadline, "the access line was never written"
        time.sleep(0.01)
    assert out.getvalue() == "GET /healthz 200\n"


def test_close_writes_what_is_queued() -> None:
    out = io.StringIO()
    logger = _handler(out, interval_s=60)
    logger.info("last words")
    assert out.getvalue() == ""  # still queued: the interval is long
    for h in logger.handlers:
        h.close()
    assert out.getvalue() == "last words\n"


def test_lines_keep_coming_after_a_logging_set_up_closed_the_handler() -> None:
    """granian configures logging in each worker (dictConfig), which closes every existing
    handler; the access lines then waited for the shutdown."""
    import logging.config

    out = io.StringIO()
    logger = _handler(out, interval_s=0.05)
    logger.info("before")
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    logger.info("after")
    deadline = time.monotonic() + 5
    while "after" not in out.getvalue():
        assert time.monotonic() < deadline, "a line after the set-up was never written"
        time.sleep(0.01)
    assert out.getvalue() == "before\nafter\n"


def test_configure_twice_adds_one_handler_and_access_lines_do_not_reach_root() -> None:
    logs.configure("info")
    logs.configure("info")
    batching = [h for h in logs.access_log.handlers if isinstance(h, logs.BatchingHandler)]
    assert len(batching) == 1
    assert logs.access_log.propagate is False


def test_query_keys_outside_the_allow_list_are_redacted_after_percent_decoding() -> None:
    query = (b"fields=id,geometry&bbox=1,2,3,4&access_token=MLY%7C1%7Cs1s1s1"
             b"&access%5Ftoken=MLY|2|hidden&ACCESS_TOKEN=x&client_secret=s3cret&code=c0de"
             b"&refresh_token=r3fresh&password=hunter2&my_own=v&flag")
    line = logs.loggable_query(query)
    for secret in ("s1s1s1", "hidden", "s3cret", "c0de", "r3fresh", "hunter2", "=v", "=x"):
        assert secret not in line, line
    assert line.startswith("fields=id,geometry&bbox=1,2,3,4&access_token=[redacted]&")
    assert "access%5Ftoken=[redacted]" in line and line.endswith("&flag")


def test_escape_keeps_one_request_on_one_line() -> None:
    assert logs.escape("/a\nINFO forged\r\x00\x1b[31m\\") == \
        "/a\\x0aINFO forged\\x0d\\x00\\x1b[31m\\x5c"
    assert logs.escape("\u2028") == "\\u2028"
    assert logs.escape("é/ü") == "é/ü"
    assert len(logs.escape("/" * 5000)) == logs.MAX_LOGGED_PATH + 1
    assert len(logs.loggable_query("fields=" + "a" * 5000)) == logs.MAX_LOGGED_VALUE + 1
