"""The access log never holds credentials and cannot be forged (issue #14, items 5 and 8)."""

from __future__ import annotations

import logging

import pytest

from wayview import logs


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_lines():
    handler = Lines()
    logger = logs.access_log
    old_level, old_propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


async def test_credentials_in_queries_never_reach_the_access_log(client, seeded, access_lines):
    await client.post("/token?grant_type=authorization_code&client_id=1&client_secret=sEcReT1"
                      "&code=c0De2&refresh_token=rEfResH3")
    await client.post("/login?password=hUnTeR4&email=alice@example.org")
    await client.get(f"/{seeded.images[0].id}?access%5Ftoken={seeded.client_token}&fields=id")
    await client.get(f"/{seeded.images[0].id}?Access_Token={seeded.client_token}")
    await client.post("/login", data={"password": "bOdY5", "email": "alice@example.org"})
    text = "\n".join(access_lines)
    assert len(access_lines) == 5, access_lines
    for secret in ("sEcReT1", "c0De2", "rEfResH3", "hUnTeR4", "bOdY5",
                   seeded.client_token, seeded.client_token.split("|")[-1]):
        assert secret not in text, text
    assert "grant_type=authorization_code&client_id=1&client_secret=[redacted]" in text
    assert "access%5Ftoken=[redacted]&fields=id" in text


async def test_control_characters_in_paths_cannot_forge_lines(client, access_lines):
    r = await client.get("/x%0a2026-01-01 INFO wayview.access: GET /forged 200%00%1b[2J")
    assert r.status_code in (401, 404)
    assert len(access_lines) == 1
    line = access_lines[0]
    assert "\n" not in line and "\x00" not in line and "\x1b" not in line
    assert "\\x0a2026-01-01 INFO" in line and "\\x00\\x1b[2J" in line
