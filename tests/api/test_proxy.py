"""Behind a reverse proxy (issue #19 item 6): with `trusted_proxies`, requests from the proxy take
the client address from X-Forwarded-For and the scheme from X-Forwarded-Proto; without it, or
from any other peer, the headers are ignored (a client cannot choose its address). Seen through
the metrics allow-list, which keys on the client address (the in-process client's peer is
127.0.0.1, as nginx on the same host would be)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from wayview.settings import Settings
from wayview.testing import app_client, make_settings, open_test_store

ALLOWED = "198.51.100.0/24"


async def _status(tmp_path: Path, trusted: str, headers: dict[str, str]) -> int:
    settings = make_settings(tmp_path, trusted_proxies=trusted,
                             metrics={"enabled": True, "allow_from": ALLOWED})
    async with open_test_store(settings) as store, app_client(settings, store) as client:
        return (await client.get("/metrics", headers=headers)).status_code


@pytest.mark.parametrize(("trusted", "forwarded", "status"), [
    ("127.0.0.1/32", "198.51.100.7", 200),            # the proxy says: an allowed client
    ("127.0.0.1/32", "203.0.113.1", 403),             # the proxy says: another client
    ("127.0.0.1/32", "198.51.100.7, 203.0.113.1", 403),  # forged left part: the right-most counts
    ("127.0.0.1/32, 203.0.113.0/24", "198.51.100.7, 203.0.113.1", 200),  # two proxies in a row
    ("", "198.51.100.7", 403),                        # no trusted proxy: headers ignored
    ("10.0.0.0/8", "198.51.100.7", 403),              # the peer is not a trusted proxy
    ("127.0.0.1/32", "not-an-address", 403),
])
async def test_the_client_behind_a_trusted_proxy(tmp_path: Path, trusted: str, forwarded: str,
                                                 status: int) -> None:
    headers = {"X-Forwarded-For": forwarded, "X-Forwarded-Proto": "https"}
    assert await _status(tmp_path, trusted, headers) == status


def test_a_bad_trusted_proxy_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="not-a-network"):
        Settings(_env_file=None, trusted_proxies="127.0.0.1, not-a-network")  # type: ignore[call-arg]
