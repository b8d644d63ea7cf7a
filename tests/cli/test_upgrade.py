"""Upgrades (issue #19 item 5): a store made by the previous release's code is upgraded by this
one; `wayview migrate --check` reports, `wayview migrate` applies, the API answers as before.

There are no release tags: "the previous release" is the commit before the one that added the
newest migration. Its `src/wayview` is taken from git (`git archive`) and run in a subprocess
to create and fill a store with that code's own migrations and writers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from tests.pg_server import with_database

from wayview.cli import cli
from wayview.settings import Settings
from wayview.store.migrate import load_migrations
from wayview.testing import app_client, make_settings, open_test_store

REPO = Path(__file__).resolve().parents[2]

#: Paths asked of both releases (`{…}` filled from what the old code seeded).
PATHS = (
    "/{image}?fields=id,geometry,captured_at,compass_angle,sequence,creator,make,model,"
    "camera_type,width,height,is_pano",
    "/{pano}?fields=id,camera_type,is_pano,organization",
    "/image_ids?sequence_id={sequence}",
    "/images?bbox=13.404,52.518,13.408,52.523&fields=id,captured_at,sequence&limit=50",
    "/{feature}?fields=id,object_value,geometry,first_seen_at,last_seen_at",
    "/{feature}/detections?fields=id,value,image",
    "/{image}/detections?fields=id,value",
    "/map_features?bbox=13.404,52.518,13.408,52.523&fields=id,object_value",
)

OLD_SCRIPT = r"""
import asyncio, json, sys
from pathlib import Path
import wayview
assert wayview.__file__.startswith(sys.argv[1]), wayview.__file__
from wayview.testing import app_client, make_settings, open_test_store, seed

async def main():
    overrides = {"database_url": sys.argv[3]} if sys.argv[3] else {}
    settings = make_settings(Path(sys.argv[2]), **overrides)
    async with open_test_store(settings) as store:
        world = await seed(store)
        first = next(iter(world.sequences.values()))
        pano = [im for im in world.images if im.is_pano][0]
        fill = {"image": first[2].id, "pano": pano.id, "sequence": first[0].sequence_id,
                "feature": world.features[0].id}
        paths = [p.format(**fill) for p in json.loads(sys.argv[4])]
        auth = {"Authorization": f"OAuth {world.client_token}"}
        out = {}
        async with app_client(settings, store) as client:
            for path in paths:
                r = await client.get(path, headers=auth)
                assert r.status_code == 200, (path, r.text)
                out[path] = r.json()
            me = await client.get("/me?fields=id,username",
                                  headers={"Authorization": f"OAuth {world.user_token}"})
            out["/me?fields=id,username"] = me.json()
        print(json.dumps({"answers": out, "client_token": world.client_token,
                          "user_token": world.user_token}))

asyncio.run(main())
"""


def previous_release(tmp_path: Path, package: str) -> tuple[Path, str]:
    """`src/` of the commit before the newest migration of `package`, and that migration."""
    newest = load_migrations(package)[-1]
    folder = package.replace(".", "/")
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git history of the repository (a clone, not an export)")
    added = subprocess.run(
        ["git", "log", "-1", "--format=%H", "--diff-filter=A", "--",
         f"src/{folder}/migrations/{newest.name}"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    commit = f"{added}^" if added else "HEAD"  # not committed yet: HEAD is the previous
    root = tmp_path / "old"
    root.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", commit, "src/wayview"],
                             cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    old_names = {p.name for p in (root / "src" / folder / "migrations").glob("*.sql")}
    assert newest.name not in old_names
    return root / "src", newest.name


def build_with_old_code(src: Path, data_dir: Path, database_url: str = "") -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, "-c", OLD_SCRIPT, str(src), str(data_dir), database_url,
         json.dumps(PATHS)], env=env, capture_output=True, text=True, timeout=300, cwd=src)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


async def new_answers(settings: Settings, old: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with open_test_store(settings) as store, app_client(settings, store) as client:
        for path in old["answers"]:
            token = old["user_token"] if path.startswith("/me") else old["client_token"]
            response = await client.get(path, headers={"Authorization": f"OAuth {token}"})
            assert response.status_code == 200, (path, response.text)
            out[path] = response.json()
        # The newest migration's figures (sequence_figures) were computed for the old rows.
        alice = int(out["/me?fields=id,username"]["id"])
        coverage = await store.coverage_of(creator_id=alice)
        out["coverage"] = (coverage.image_count, coverage.sequence_count,
                           round(coverage.length_m) > 0)
    return out


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def check_upgrade(settings: Settings, old: dict[str, Any], newest: str, backend: str,
                  caplog: pytest.LogCaptureFixture, extra_env: dict[str, str]) -> None:
    data = ["--data-dir", str(settings.data_dir)]
    latest = load_migrations("wayview.store.postgres" if backend == "postgresql"
                             else "wayview.store.sqlite")[-1].version
    check = CliRunner().invoke(cli, ["migrate", "--check", *data], env=extra_env)
    assert check.exit_code == 1, check.output
    assert check.stdout.strip() == (f"store schema: {backend} version {latest - 1}, "
                                    f"1 migration pending: {newest}")
    done = CliRunner().invoke(cli, ["migrate", *data], env=extra_env)
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == (f"store schema: {backend} version {latest - 1} → {latest} "
                                   "(1 migration applied)")
    again = CliRunner().invoke(cli, ["migrate", "--check", "--json", *data], env=extra_env)
    assert again.exit_code == 0 and json.loads(again.stdout)["pending"] == []
    with caplog.at_level(logging.INFO, logger="wayview.store"):
        answers = asyncio.run(new_answers(settings, old))
    assert f"store schema up to date ({backend} version {latest})" in caplog.messages
    assert answers.pop("coverage") == (15, 2, True)  # seed: alice's 10 + 5 images
    assert answers == old["answers"]


def test_sqlite_store_of_the_previous_release_upgrades(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    src, newest = previous_release(tmp_path, "wayview.store.sqlite")
    settings = make_settings(tmp_path / "store")
    old = build_with_old_code(src, tmp_path / "store")
    check_upgrade(settings, old, newest, "sqlite", caplog, {})


def test_postgres_store_of_the_previous_release_upgrades(
        tmp_path: Path, pg_server_url: str, caplog: pytest.LogCaptureFixture) -> None:
    src, newest = previous_release(tmp_path, "wayview.store.postgres")
    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(pg_server_url, name)
    settings = make_settings(tmp_path / "store", database_url=url)
    old = build_with_old_code(src, tmp_path / "store", url)
    check_upgrade(settings, old, newest, "postgresql", caplog,
                  {"WAYVIEW_DATABASE_URL": url})


def test_migrate_on_start_logs_one_line(tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path)
    latest = load_migrations("wayview.store.sqlite")[-1].version
    with caplog.at_level(logging.INFO, logger="wayview.store"):
        asyncio.run(_open(settings))
    assert (f"store schema: sqlite version 0 → {latest} ({latest} migrations applied)"
            in caplog.messages)
    result = run_cli("migrate", "--check", "--data-dir", str(settings.data_dir))
    assert result.exit_code == 0
    assert result.stdout == f"store schema up to date (sqlite version {latest})\n"
    fresh = run_cli("migrate", "--check", "--data-dir", str(tmp_path / "none"))
    assert fresh.exit_code == 1 and "(no store yet)" in fresh.stdout
    assert not (tmp_path / "none").exists()  # --check writes nothing


async def _open(settings: Settings) -> None:
    async with open_test_store(settings):
        pass
