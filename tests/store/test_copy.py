"""`wayview migrate-store`: a seeded SQLite store copied into PostgreSQL serves the same API
answers with the same tokens; the copy refuses a non-empty target; blobs can go along."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from wayview.cli import cli
from wayview.model.entities import ImageSearch
from wayview.settings import Settings
from wayview.testing import add_sequence, app_client, make_settings, open_test_store, seed

pytestmark = pytest.mark.usefixtures("pg_server_url")


async def _answers(settings: Settings, token: str, image_id: int) -> list[object]:
    async with open_test_store(settings) as store:
        async with app_client(settings, store) as client:
            auth = {"Authorization": f"OAuth {token}"}
            paths = ["/me?fields=id,username", f"/{image_id}?fields=id,geometry,sequence,"
                     "creator,captured_at,compass_angle,camera_parameters,is_pano",
                     "/images?bbox=13.40,52.51,13.41,52.53&fields=id,sequence,captured_at",
                     "/map_features?bbox=13.40,52.51,13.41,52.53&fields=id,object_value",
                     f"/{image_id}/detections?fields=id,value"]
            out: list[object] = []
            for path in paths:
                r = await client.get(path, headers=auth)
                out.append((r.status_code, r.json()))
            for tileset in ("mly1_public", "mly1_computed_public"):
                tile = await client.get(f"/maps/vtp/{tileset}/2/14/8802/5373", headers=auth)
                out.append((tile.status_code, tile.content))
            return out


async def test_a_sqlite_store_copied_to_postgres_answers_the_same(
        tmp_path: Path, pg_database_url: str) -> None:
    source = make_settings(tmp_path / "source")
    async with open_test_store(source) as store:
        world = await seed(store)
        await add_sequence(store, world.alice, [(13.4055, 52.5205), (13.4056, 52.5205)],
                           start_ms=1_650_000_000_000, computed_rotation=(0.1, -0.2, 1.5),
                           computed_lon=13.40551, computed_lat=52.52051, merge_cc=42,
                           atomic_scale=1.0, assets=7)
        job = await store.enqueue_job("ingest.upload", {"cluster_id": 1})
        stored = (await store.search_images(ImageSearch(limit=None))).items
        await store.journal_blobs("upload:1", ["images/001/1001/"])
    (source.blobs_path / "images" / "001").mkdir(parents=True)
    (source.blobs_path / "images" / "001" / "x.jpg").write_bytes(b"\xff\xd8")
    image = world.images[0]
    before = await _answers(source, world.user_token, image.id)
    assert before[0][0] == 200 and before[-1][0] == 200

    result = await asyncio.to_thread(CliRunner().invoke, cli, [
        "migrate-store", "--from", f"sqlite:///{source.database_path}", "--to", pg_database_url,
        "--blobs-to", str(tmp_path / "copied-blobs")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "MISMATCH" not in result.output and "copied 1 blobs" in result.output
    assert (tmp_path / "copied-blobs" / "images" / "001" / "x.jpg").read_bytes() == b"\xff\xd8"

    target = make_settings(tmp_path / "target", database_url=pg_database_url)
    assert await _answers(target, world.user_token, image.id) == before
    async with open_test_store(target) as store:
        page = await store.search_images(ImageSearch(limit=None))
        assert sorted(page.items, key=lambda im: im.id) == sorted(stored, key=lambda im: im.id)
        assert [j.id for j in await store.list_jobs()] == [job.id]
        assert (await store.enqueue_job("x", {})).id > job.id  # identity moved past the copy
        assert await store.journaled_blobs("upload:1") == ["images/001/1001/"]
        # New writes work on the copy (ids, sequences, tile index).
        bob = await store.get_user_by_username("bob")
        assert bob is not None

    again = await asyncio.to_thread(CliRunner().invoke, cli, [
        "migrate-store", "--from", f"sqlite://{source.database_path}", "--to", pg_database_url])
    assert again.exit_code == 1 and "not empty" in again.output


def test_bad_arguments_are_clean_errors(tmp_path: Path, pg_database_url: str) -> None:
    runner = CliRunner()
    r = runner.invoke(cli, ["migrate-store", "--from", "/x.db", "--to", pg_database_url])
    assert r.exit_code == 2 and "sqlite:///" in r.output
    r = runner.invoke(cli, ["migrate-store", "--from", f"sqlite://{tmp_path}/none.db",
                            "--to", pg_database_url])
    assert r.exit_code == 1 and "no SQLite database" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("form", ["sqlite:///{abs}", "sqlite:////{abs}", "sqlite://localhost/{abs}",
                                  "sqlite:////{abs}?mode=ro", "sqlite:///{rel}"])
def test_migrate_store_reads_the_usual_sqlite_url_forms(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    from wayview.store.sqlite.export import sqlite_path_of

    db = tmp_path / "data dir#1" / "wayview.db"
    db.parent.mkdir()
    db.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    url = form.format(abs=str(db).lstrip("/"), rel="data dir#1/wayview.db")
    assert sqlite_path_of(url).resolve() == db.resolve()


@pytest.mark.parametrize("url", ["sqlite://db.example/x.db", "sqlite:/x.db", "sqlite://",
                                 "sqlite:///", "mysql:///x.db"])
def test_migrate_store_rejects_bad_sqlite_urls_in_one_line(url: str, pg_database_url: str) -> None:
    r = CliRunner().invoke(cli, ["migrate-store", "--from", url, "--to", pg_database_url])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "--from" in r.output and "sqlite:////abs/path" in r.output


def test_migrate_store_four_slashes_reaches_the_copy(tmp_path: Path, pg_database_url: str) -> None:
    r = CliRunner().invoke(cli, ["migrate-store", "--from", f"sqlite:///{tmp_path}/none.db",
                                 "--to", pg_database_url])
    assert r.exit_code == 1 and "no SQLite database" in r.output and "Traceback" not in r.output
