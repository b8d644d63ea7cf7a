"""`wayview import` of the real OpenSfM Lund photos: one 29-image sequence with their MAP* data.

The Lund images (../shared/data/opensfm_lund, see SOURCE.txt there) carry capture time and
heading only in the Mapillary ImageDescription JSON; this test reads those descriptions itself
(piexif + json) and compares them with what the import stored.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import piexif  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner

from wayview.cli import cli
from wayview.model.entities import Image, ImageSearch
from wayview.settings import Settings
from wayview.store import open_store

LUND = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "opensfm_lund").resolve()


def _description(path: Path) -> dict[str, object]:
    raw = piexif.load(str(path))["0th"][piexif.ImageIFD.ImageDescription]
    parsed = json.loads(raw.decode())
    assert isinstance(parsed, dict)
    return parsed


def _capture_ms(text: str) -> int:
    moment = datetime.strptime(text, "%Y_%m_%d_%H_%M_%S_%f").replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _stored(data_dir: Path, sequence_id: str) -> list[Image]:
    async def run() -> list[Image]:
        store = open_store(Settings(_env_file=None, data_dir=data_dir))
        await store.open()
        try:
            return (await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))).items
        finally:
            await store.close()

    return asyncio.run(run())


def test_import_lund_is_one_sequence_with_the_described_times_and_headings(
    tmp_path: Path,
) -> None:
    images_dir = LUND / "images"
    if not images_dir.is_dir():
        pytest.skip(f"shared Lund data not available: {images_dir} (../shared beside the repo)")
    manifest = json.loads((LUND / "manifest.json").read_text())
    files = sorted(images_dir.glob("*.jpg"))
    assert len(files) == len(manifest["images"]) == 29

    data_dir = tmp_path / "data"
    runner = CliRunner()
    created = runner.invoke(cli, ["users", "create", "lund", "--data-dir", str(data_dir)])
    assert created.exit_code == 0, created.output
    result = runner.invoke(
        cli, ["import", str(images_dir), "--user", "lund", "--data-dir", str(data_dir), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["imported"] == 29 and report["skipped"] == []
    assert [s["image_count"] for s in report["sequences"]] == [29]

    stored = _stored(data_dir, report["sequences"][0]["id"])
    by_sha = {im.content_sha256: im for im in stored}
    expected_order = []
    for path, entry in zip(files, manifest["images"], strict=True):
        assert path.name == Path(entry["file"]).name
        desc = _description(path)
        image = by_sha[entry["sha256"]]
        assert image.captured_at_ms == _capture_ms(str(desc["MAPCaptureTime"])), path.name
        heading = desc["MAPCompassHeading"]
        assert isinstance(heading, dict)
        assert image.compass_angle_deg == pytest.approx(heading["TrueHeading"]), path.name
        assert image.captured_at_ms == entry["captured_at_ms"]
        assert (image.make, image.model) == (desc["MAPDeviceMake"], desc["MAPDeviceModel"])
        assert (image.width, image.height) == (1024, 768)
        expected_order.append(image.id)
    # The capture order is the file order 01..29 (one walk, ~3.3 minutes).
    assert [im.id for im in stored] == expected_order
