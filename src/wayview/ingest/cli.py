"""wayview.ingest.cli: the `wayview import` command (geotagged JPEG folders → sequences)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wayview.errors import WayviewError
from wayview.ingest.importer import ImportReport, find_photo_files, import_paths
from wayview.settings import Settings

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

__all__ = ["import_command", "report_json", "report_text"]


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--user", "username", required=True, help="Username that becomes the creator.")
@click.option(
    "--organization",
    "organization_id",
    type=int,
    default=None,
    help="Organization id the images belong to (the user must be a member).",
)
@click.option(
    "--max-time-gap-s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Start a new sequence after a longer capture-time gap (default: setting, 60).",
)
@click.option(
    "--max-distance-gap-m",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Start a new sequence after a longer jump (default: setting, 100).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data folder (database and blobs). Default: $WAYVIEW_DATA_DIR or ./wayview-data.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, no progress bar.")
def import_command(
    paths: tuple[Path, ...],
    username: str,
    organization_id: int | None,
    max_time_gap_s: float | None,
    max_distance_gap_m: float | None,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Import geotagged JPEGs from PATHS (files, or folders walked recursively).

    Photos are ordered by capture time and cut into sequences at time gaps, position jumps,
    camera changes and the maximum sequence length. Files already imported (same content) and
    files without a usable position or capture time are skipped and listed at the end.
    """
    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    try:
        report = asyncio.run(
            _run(
                settings,
                list(paths),
                username=username,
                organization_id=organization_id,
                max_time_gap_s=max_time_gap_s,
                max_distance_gap_m=max_distance_gap_m,
                show_progress=not as_json,
            )
        )
    except WayviewError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps(report_json(report)))
    else:
        click.echo(report_text(report))


async def _run(
    settings: Settings,
    paths: list[Path],
    *,
    username: str,
    organization_id: int | None,
    max_time_gap_s: float | None,
    max_distance_gap_m: float | None,
    show_progress: bool,
) -> ImportReport:
    from wayview.blobs import open_blobs
    from wayview.store import open_store

    store = open_store(settings)
    await store.open()
    try:
        blobs = open_blobs(settings)

        async def run(progress: Callable[[int], None] | None) -> ImportReport:
            return await import_paths(
                store,
                blobs,
                settings,
                paths,
                username=username,
                organization_id=organization_id,
                max_time_gap_s=max_time_gap_s,
                max_distance_gap_m=max_distance_gap_m,
                progress=progress,
            )

        if not show_progress:
            return await run(None)
        # The bar opens on the first finished file, so a refused run (unknown user) prints
        # only its error.
        total = len(find_photo_files(paths)[0])
        with contextlib.ExitStack() as stack:
            bars: list[ProgressBar[int]] = []

            def progress(count: int) -> None:
                if not bars:
                    bar = click.progressbar(length=total, label="Importing", file=sys.stderr)
                    bars.append(stack.enter_context(bar))
                bars[0].update(count)

            return await run(progress)
    finally:
        await store.close()


def report_json(report: ImportReport) -> dict[str, object]:
    """The `--json` output: imported, sequences [{id, image_count}], skipped [{path, reason}]."""
    return {
        "imported": report.imported,
        "sequences": [{"id": s.id, "image_count": s.image_count} for s in report.sequences],
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in report.skipped],
    }


def report_text(report: ImportReport) -> str:
    """The human summary: what was imported, then every skipped file with its reason."""
    count = len(report.sequences)
    lines = [
        f"Imported {report.imported} image{'s' * (report.imported != 1)} "
        f"in {count} sequence{'s' * (count != 1)}."
    ]
    lines += [f"  sequence {s.id}: {s.image_count} images" for s in report.sequences]
    if report.skipped:
        lines.append(f"Skipped {len(report.skipped)} file{'s' * (len(report.skipped) != 1)}:")
        lines += [f"  {s.path}: {s.reason}" for s in report.skipped]
    return "\n".join(lines)


@click.command("reprocess")
@click.option("--sequence", "sequence_ids", multiple=True,
              help="Only this sequence (repeatable).")
@click.option("--organization", "organization_id", type=int, default=None,
              help="Only the images of this organization.")
@click.option("--all", "everything", is_flag=True, help="Every stored image.")
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Data folder (database and blobs). Default: $WAYVIEW_DATA_DIR or ./wayview-data.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, no progress.")
def reprocess_command(sequence_ids: tuple[str, ...], organization_id: int | None,
                      everything: bool, data_dir: Path | None, as_json: bool) -> None:
    """Run detection, quality_score and map features again on stored images.

    Use it after changing `pipeline.detectors` (or upgrading wayview): each selected image's
    detections are replaced, and the map features around it are placed again. Blurring is
    not redone. Choose the images with --sequence, --organization or --all.
    """
    if bool(sequence_ids) + (organization_id is not None) + everything != 1:
        raise click.UsageError("choose the images: --sequence KEY, --organization ID or --all")
    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    try:
        report = asyncio.run(_reprocess(settings, sequence_ids, organization_id,
                                        show_progress=not as_json))
    except WayviewError as exc:
        raise click.ClickException(exc.message) from None
    out = {"images": report.images, "sequences": report.sequences,
           "detections": report.detections, "features_written": report.features_written,
           "features_deleted": report.features_deleted,
           "skipped": [{"image_id": str(i), "reason": r} for i, r in report.skipped]}
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"Reprocessed {report.images} images in {report.sequences} sequences: "
               f"{report.detections} detections, {report.features_written} map features "
               f"written, {report.features_deleted} deleted.")
    for image_id, reason in report.skipped:
        click.echo(f"  image {image_id}: {reason}")


async def _reprocess(settings: Settings, sequence_ids: tuple[str, ...],
                     organization_id: int | None, *, show_progress: bool) -> Any:
    from wayview.blobs import open_blobs
    from wayview.pipeline.reprocess import reprocess
    from wayview.store import open_store

    store = open_store(settings)
    await store.open()
    try:
        blobs = open_blobs(settings)
        done = [0]

        def progress(count: int) -> None:
            done[0] += count
            click.echo(f"  {done[0]} images", err=True)

        return await reprocess(settings.pipeline, store, blobs, sequence_ids=sequence_ids,
                               organization_id=organization_id,
                               progress=progress if show_progress else None)
    finally:
        await store.close()
