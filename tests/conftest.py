"""Shared fixtures: settings on tmp_path, an opened store, a seeded world, an in-process client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from wayview.settings import Settings
from wayview.store import Store
from wayview.testing import Seeded, app_client, make_settings, open_test_store, seed

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with a clear reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not available: {path} (needs ../shared beside the repo)")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Store]:
    async with open_test_store(settings) as s:
        yield s


@pytest.fixture
async def seeded(store: Store) -> Seeded:
    return await seed(store)


@pytest.fixture
async def client(settings: Settings, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings, store) as c:
        yield c
