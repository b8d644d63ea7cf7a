"""`wayview correct`, `split`, `merge` and `reorder` (issue #17): operators correct data as
instance admins; the audit log names no actor."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from wayview.cli import cli
from wayview.model.entities import Image, ImageSearch
from wayview.settings import Settings
from wayview.store import open_store
from wayview.testing import add_sequence


def run(*args: str) -> dict:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


async def _seed(data_dir: Path) -> list[Image]:
    store = open_store(Settings(data_dir=data_dir))
    await store.open()
    try:
        user = await store.create_user("carol")
        return await add_sequence(store, user, [(13.40 + k * 1e-4, 52.5) for k in range(4)],
                                  start_ms=1_600_000_000_000)
    finally:
        await store.close()


async def _state(data_dir: Path, sequence_id: str) -> tuple[list[int], dict[int, Image], list]:
    store = open_store(Settings(data_dir=data_dir))
    await store.open()
    try:
        page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))
        entries = await store.audit_entries()
        return [im.id for im in page.items], {im.id: im for im in page.items}, entries
    finally:
        await store.close()


def test_cli_correct_split_merge_reorder(tmp_path: Path, monkeypatch) -> None:
    # Computed positions from the GPS track (at once), not an sfm job for a worker.
    monkeypatch.setenv("WAYVIEW_PIPELINE__POSITIONER", "track")
    images = asyncio.run(_seed(tmp_path))
    seq = images[0].sequence_id
    d = ["--data-dir", str(tmp_path)]
    out = run("correct", "--image", str(images[1].id), "--compass-angle", "45",
              "--lon", "13.41", "--lat", "52.51", "--captured-at", "2020-09-13T12:26:50Z", *d)
    assert out == {"image": images[1].id, "changed": True}
    order, by_id, entries = asyncio.run(_state(tmp_path, seq))
    im = by_id[images[1].id]
    assert (im.lon, im.lat, im.compass_angle_deg, im.captured_at_ms) == (
        13.41, 52.51, 45.0, 1_600_000_010_000)
    assert order == [images[0].id, images[2].id, images[3].id, images[1].id]
    assert entries[0].action == "image.correct" and entries[0].actor_id is None
    # The reposition job ran: computed positions again from the corrected track.
    assert im.computed_lon is not None

    out = run("split", "--sequence", seq, "--at", str(images[3].id), *d)
    new = out["new_sequence"]
    assert asyncio.run(_state(tmp_path, new))[0] == [images[3].id, images[1].id]
    assert run("merge", seq, new, *d) == {"sequence": seq, "images_moved": 2}
    wanted = [images[3].id, images[2].id, images[1].id, images[0].id]
    run("reorder", "--sequence", seq, *map(str, wanted), *d)
    assert asyncio.run(_state(tmp_path, seq))[0] == wanted

    result = CliRunner().invoke(cli, ["split", "--sequence", seq, "--at", str(wanted[0]), *d])
    assert result.exit_code != 0 and "first image" in result.output
