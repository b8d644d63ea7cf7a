"""`wayview backup` / `wayview restore` (issue #19 item 4): online round trips under write load
on SQLite + local files and on PostgreSQL + S3, compared through the Graph API and the media
bytes; damaged backups; the race between the snapshot and a deletion."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from tests.helpers_jpeg import write_jpeg
from tests.pg_server import with_database
from tests.s3_server import S3Server, s3_server

from wayview.auth.secret import server_secret
from wayview.auth.tokens import create_app, issue_user_token
from wayview.backup import create as create_module
from wayview.backup import create_backup
from wayview.blobs import IMAGE_VARIANTS, image_blob_key, open_blobs
from wayview.cli import cli
from wayview.ingest.importer import import_paths
from wayview.model.entities import Detection, ImageSearch, MapFeature
from wayview.pipeline.delete import request_deletion, run_deletion
from wayview.settings import Settings
from wayview.testing import BASE_URL, app_client, make_settings, open_test_store

MEDIA = ("thumb_256", "thumb_1024", "thumb_2048", "thumb_original")
T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
#: Where the stable data lies (the write load works farther north).
BBOX = "13.399,52.519,13.402,52.523"
FIELDS = ("id,geometry,captured_at,compass_angle,sequence,creator,make,model,width,height,"
          "thumb_256_url,thumb_1024_url,is_pano")


def photos(folder: Path, prefix: str, count: int, *, lat: float, start: datetime) -> list[Path]:
    return [write_jpeg(folder / f"{prefix}{i:02d}.jpg", width=160, height=120,
                       lat=lat + i * 0.0001, lon=13.4, captured_at=start + timedelta(seconds=2 * i),
                       heading_deg=float(i), color=(40 + 7 * i, 90, 160)) for i in range(count)]


async def imported_ids(store: Any, report: Any) -> list[int]:
    """The ids of the images an import stored."""
    return [im.id for seq in report.sequences for im in (await store.search_images(
        ImageSearch(sequence_ids=(seq.id,)))).items]


@dataclass
class World:
    """The stable part of the source deployment (the write load never touches it)."""

    client_token: str
    user_token: str
    image_ids: list[int]
    sequence_ids: list[str]
    feature_ids: list[int]


async def build_world(settings: Settings, tmp: Path) -> World:
    blobs = open_blobs(settings)
    async with open_test_store(settings) as store:
        alice = await store.create_user("alice", email="alice@example.org")
        app = await create_app(store, "backup test", owner=alice,
                               server_secret=server_secret(settings))
        token = (await issue_user_token(store, alice, app=app.app)).access_token
        folder = tmp / "base"
        photos(folder / "a", "a", 6, lat=52.520, start=T0)
        photos(folder / "b", "b", 4, lat=52.5215, start=T0 + timedelta(hours=2))
        report = await import_paths(store, blobs, settings, [folder], username="alice")
        ids = await imported_ids(store, report)
        fids = await store.reserve_ids("map_feature", 1)
        dids = await store.reserve_ids("detection", 1)
        await store.insert_map_features([MapFeature(
            id=fids[0], object_value="regulatory--stop--g1", object_type="trafficsign",
            lon=13.4001, lat=52.5201, first_seen_at_ms=1, last_seen_at_ms=2)])
        box = ((0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6))
        await store.insert_detections([Detection(
            id=dids[0], image_id=ids[1], value="regulatory--stop--g1", geometry=(box,),
            created_at_ms=1_621_531_741_000, map_feature_id=fids[0])])
        return World(app.client_token, token, ids,
                     [seq.id for seq in report.sequences], fids)


@dataclass
class Load:
    """Imports new sequences and deletes earlier ones (rows, then blobs) until stopped."""

    settings: Settings
    folder: Path
    stop: threading.Event = field(default_factory=threading.Event)
    rounds: int = 0
    deleted: int = 0
    error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by the test
            self.error = exc

    async def _main(self) -> None:
        blobs = open_blobs(self.settings)
        async with open_test_store(self.settings) as store:
            previous: list[int] = []
            while not self.stop.is_set():
                k = self.rounds
                batch = self.folder / f"r{k}"
                photos(batch, f"r{k}-", 3, lat=52.60 + 0.01 * (k % 20),
                       start=T0 + timedelta(days=k + 1))
                report = await import_paths(store, blobs, self.settings, [batch],
                                            username="alice")
                fresh = await imported_ids(store, report)
                if previous:
                    done = await request_deletion(store, previous)
                    self.deleted += done.images
                    images = await store.get_images(previous)
                    await run_deletion(self.settings.pipeline, store, blobs, previous,
                                       sorted({im.sequence_id for im in images.values()}))
                previous = fresh
                self.rounds += 1


@pytest.fixture
def load_runner() -> Iterator[list[Load]]:
    started: list[Load] = []
    yield started
    for load in started:
        load.stop.set()


def start_load(settings: Settings, folder: Path, started: list[Load]) -> tuple[Load,
                                                                              threading.Thread]:
    load = Load(settings, folder)
    thread = threading.Thread(target=load.run, daemon=True)
    started.append(load)
    thread.start()
    return load, thread


async def answers(settings: Settings, world: World) -> dict[str, Any]:
    """The Graph API's answers about the stable data, and the bytes of every media variant."""
    out: dict[str, Any] = {}
    auth = {"Authorization": f"OAuth {world.client_token}"}
    async with open_test_store(settings) as store, app_client(
            settings, store, blobs=open_blobs(settings)) as client:
        paths = [f"/{i}?fields={FIELDS}" for i in world.image_ids]
        paths += [f"/image_ids?sequence_id={s}" for s in world.sequence_ids]
        paths += [f"/images?bbox={BBOX}&fields=id,captured_at,sequence&limit=100"]
        paths += [f"/{f}?fields=id,object_value,geometry,images" for f in world.feature_ids]
        paths += [f"/{f}/detections?fields=id,value,image" for f in world.feature_ids]
        for path in paths:
            response = await client.get(path, headers=auth)
            assert response.status_code == 200, (path, response.text)
            out[path] = response.json()
        me = await client.get("/me?fields=id,username",
                              headers={"Authorization": f"OAuth {world.user_token}"})
        out["/me"] = (me.status_code, me.json())
        urls = ",".join(f"{v}_url" for v in MEDIA)
        for image_id in world.image_ids:
            found = (await client.get(f"/{image_id}?fields={urls}", headers=auth)).json()
            for variant in MEDIA:
                response = await client.get(found[f"{variant}_url"].removeprefix(BASE_URL))
                assert response.status_code == 200, (image_id, variant, response.text)
                out[f"{image_id}/{variant}"] = hashlib.sha256(response.content).hexdigest()
    return out


async def restored_media_complete(settings: Settings) -> int:
    """Every image of the restored store has its four media variants; how many images."""
    blobs = open_blobs(settings)
    async with open_test_store(settings) as store:
        ids = [im.id for im in (await store.search_images(ImageSearch())).items]
        images = await store.get_images(ids)
    for image in images.values():
        for variant in IMAGE_VARIANTS:
            key = image_blob_key(image.id, variant, image.media_version)
            assert blobs.exists(key), key
    return len(images)


def run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env)


def round_trip(source: Settings, target: Settings, tmp_path: Path, load_runner: list[Load],
               extra: tuple[str, ...] = (), env: dict[str, str] | None = None
               ) -> tuple[dict[str, Any], Load]:
    world = asyncio.run(build_world(source, tmp_path))
    before = asyncio.run(answers(source, world))
    load, thread = start_load(source, tmp_path / "load", load_runner)
    while load.rounds < 2 and thread.is_alive():  # the load is under way
        thread.join(0.05)
    dest = tmp_path / "backup"

    def progress(step: str) -> None:
        if step.startswith("database snapshot"):  # writes and deletes between the passes
            wanted = load.rounds + 1
            while load.rounds < wanted and thread.is_alive():
                thread.join(0.02)

    started_at = load.rounds
    report = create_backup(source, dest, progress)
    rounds_during = load.rounds - started_at
    load.stop.set()
    thread.join(60)
    assert load.error is None, repr(load.error)
    assert rounds_during >= 1 and load.deleted > 0
    assert dest.stat().st_mode & 0o777 == 0o700
    assert (dest / "secret_key").stat().st_mode & 0o777 == 0o600 or source.secret_key
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest == report.manifest and manifest["counts"]["images"] >= len(world.image_ids)
    result = run_cli("restore", str(dest), "--data-dir", str(target.data_dir), "--json", *extra,
                     env=env)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["mismatched"] == {} and out["counts"] == manifest["counts"]
    assert asyncio.run(answers(target, world)) == before
    assert asyncio.run(restored_media_complete(target)) == manifest["counts"]["images"]
    return manifest, load


def test_round_trip_under_write_load_sqlite(tmp_path: Path, load_runner: list[Load]) -> None:
    source = make_settings(tmp_path / "src")
    target = make_settings(tmp_path / "dst")
    manifest, load = round_trip(source, target, tmp_path, load_runner)
    assert manifest["backend"] == "sqlite" and manifest["secret_key"] == "backup"
    assert (target.data_dir / "secret_key").read_bytes() == (
        source.data_dir / "secret_key").read_bytes()
    assert load.rounds > 2


async def _image_ids(settings: Settings) -> list[int]:
    async with open_test_store(settings) as store:
        return [im.id for im in (await store.search_images(ImageSearch())).items]


def test_corrupt_backup_is_refused_and_nothing_written(tmp_path: Path) -> None:
    source = make_settings(tmp_path / "src")
    asyncio.run(build_world(source, tmp_path))
    dest = tmp_path / "backup"
    assert run_cli("backup", str(dest), "--data-dir", str(source.data_dir)).exit_code == 0
    victim = next(p for p in sorted((dest / "blobs").rglob("*.jpg")))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    target = tmp_path / "dst"
    result = run_cli("restore", str(dest), "--data-dir", str(target))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: restore failed: blobs/") and "SHA-256" in lines[-1]
    assert not target.exists()
    # an unfinished backup (no manifest) and a database that does not match are refused too
    (dest / "manifest.json").rename(dest / "manifest.bak")
    result = run_cli("restore", str(dest), "--data-dir", str(target))
    assert result.exit_code == 1 and "no manifest.json" in result.stderr and not target.exists()


def test_backup_and_restore_refuse_non_empty_targets(tmp_path: Path) -> None:
    source = make_settings(tmp_path / "src")
    asyncio.run(build_world(source, tmp_path))
    dest = tmp_path / "backup"
    dest.mkdir()
    (dest / "x").write_text("x")
    result = run_cli("backup", str(dest), "--data-dir", str(source.data_dir))
    assert result.exit_code == 1 and "not an empty folder" in result.stderr
    (dest / "x").unlink()
    assert run_cli("backup", str(dest), "--data-dir", str(source.data_dir)).exit_code == 0
    result = run_cli("restore", str(dest), "--data-dir", str(source.data_dir))
    assert result.exit_code == 1 and "is not empty" in result.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "wayview.db").write_text("junk")
    result = run_cli("restore", str(dest), "--data-dir", str(other), "--force", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["images"] == 10


def test_a_deletion_racing_the_snapshot_makes_the_backup_take_it_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image whose blobs are written after the first copy pass and deleted right after the
    snapshot, before its media is fetched: the backup sees its media missing, takes the
    snapshot again, and the restored store has neither the image nor its blobs."""
    source = make_settings(tmp_path / "src")
    world = asyncio.run(build_world(source, tmp_path))
    victim: list[int] = []
    real_snapshot = create_module.snapshot

    def racing_snapshot(settings: Settings, target: Path, on_media: Any) -> Any:
        async def import_one() -> None:
            async with open_test_store(settings) as store:
                report = await import_paths(store, open_blobs(settings), settings, photos(
                    tmp_path / "late", "late", 2, lat=52.7, start=T0 + timedelta(days=9)),
                    username="alice")
                victim.extend(await imported_ids(store, report))

        async def delete_it() -> None:
            async with open_test_store(settings) as store:
                blobs = open_blobs(settings)
                images = await store.get_images(victim)
                await request_deletion(store, victim)
                await run_deletion(settings.pipeline, store, blobs, victim,
                                   sorted({im.sequence_id for im in images.values()}))

        first = not victim
        if first:
            asyncio.run(import_one())

        def delete_then_fetch(media: list[tuple[int, int]]) -> None:
            if first:  # deleted after the snapshot, before its media is fetched
                asyncio.run(delete_it())
            on_media(media)

        return real_snapshot(settings, target, delete_then_fetch)

    monkeypatch.setattr(create_module, "snapshot", racing_snapshot)
    report = create_backup(source, tmp_path / "backup")
    assert report.manifest["snapshots_taken"] == 2
    assert report.manifest["counts"]["images"] == len(world.image_ids)
    assert not any((tmp_path / "backup" / "blobs").rglob(f"{victim[0]}"))
    target = make_settings(tmp_path / "dst")
    result = run_cli("restore", str(tmp_path / "backup"), "--data-dir", str(target.data_dir))
    assert result.exit_code == 0, result.output
    assert sorted(asyncio.run(_image_ids(target))) == sorted(world.image_ids)


# -- PostgreSQL + S3 ---------------------------------------------------------------------------

@pytest.fixture
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


def _empty_database(server_url: str) -> str:
    name = f"restore_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


@pytest.mark.xdist_group("s3")
def test_round_trip_under_write_load_postgres_s3(tmp_path: Path, pg_database_url: str,
                                                   pg_server_url: str, s3: S3Server,
                                                   load_runner: list[Load]) -> None:
    def s3_settings(data_dir: Path, prefix: str, database_url: str) -> Settings:
        return make_settings(data_dir, database_url=database_url,
                             blobs_url=f"s3://{s3.bucket}/{prefix}",
                             s3={"endpoint_url": s3.endpoint_url,
                                 "access_key_id": s3.access_key_id,
                                 "secret_access_key": s3.secret_access_key})

    run = uuid.uuid4().hex[:8]
    source = s3_settings(tmp_path / "src", f"src-{run}", pg_database_url)
    target_url = _empty_database(pg_server_url)
    target = s3_settings(tmp_path / "dst", f"dst-{run}", target_url)
    env = {"WAYVIEW_S3__ENDPOINT_URL": s3.endpoint_url,
           "WAYVIEW_S3__ACCESS_KEY_ID": s3.access_key_id,
           "WAYVIEW_S3__SECRET_ACCESS_KEY": s3.secret_access_key}
    manifest, _ = round_trip(source, target, tmp_path, load_runner, extra=(
        "--database-url", target_url, "--blobs-url", target.blobs_url), env=env)
    assert manifest["backend"] == "postgresql"
    assert (tmp_path / "backup" / "database" / "wayview.pgdump").exists()
    # the target database is no longer empty: a second restore is refused
    result = run_cli("restore", str(tmp_path / "backup"), "--data-dir",
                     str(tmp_path / "dst2"), "--database-url", target_url, env=env)
    assert result.exit_code == 1 and "not empty" in result.stderr
