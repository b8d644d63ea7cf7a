"""The data folder is the server user's alone (issue #14, item 8): dir 0700, files 0600."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from wayview.store import open_store
from wayview.testing import make_settings

REPO = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_cli_creates_a_private_data_folder(tmp_path):
    data = tmp_path / "data"
    done = subprocess.run([sys.executable, "-m", "wayview", "users", "create", "ann",
                           "--email", "ann@example.org", "--data-dir", str(data)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert mode(data) == 0o700
    files = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.name == "wayview.db" for p in files)
    for path in files:
        assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}"
    invite = subprocess.run([sys.executable, "-m", "wayview", "users", "invite",
                             "bo@example.org", "--data-dir", str(data)],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert invite.returncode == 0, invite.stderr
    assert mode(data / "secret_key") == 0o600


async def test_an_existing_open_folder_and_database_are_closed_on_open(tmp_path):
    settings = make_settings(tmp_path)
    store = open_store(settings)
    await store.open()
    await store.close()
    settings.data_dir.chmod(0o755)
    settings.database_path.chmod(0o644)
    store = open_store(settings)
    await store.open()
    await store.close()
    assert mode(settings.data_dir) == 0o700
    assert mode(settings.database_path) == 0o600
