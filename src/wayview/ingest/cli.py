"""wayview.ingest.cli: the `wayview import` command (geotagged JPEG folders → sequences)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
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
    gone = [p for p in paths if not p.exists() and not p.is_symlink()]
    if len(gone) == len(paths):
        # Nothing to import at all: a typo in the folder name, not "skipped 1 file".
        raise click.ClickException(
            f"no such file or folder: {', '.join(str(p) for p in gone)}")
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
@click.option("--stage", type=click.Choice(["perception", "sfm"]), default="perception",
              show_default=True, help="perception: detections, quality_score and map "
              "features; sfm: structure from motion (computed positions, meshes, clusters).")
@click.option("--queue", is_flag=True,
              help="With --stage sfm: queue one job per sequence for the workers instead of "
              "running them here.")
def reprocess_command(sequence_ids: tuple[str, ...], organization_id: int | None,
                      everything: bool, data_dir: Path | None, as_json: bool, stage: str,
                      queue: bool) -> None:
    """Run a pipeline stage again on stored images.

    --stage perception (the default), after changing `pipeline.detectors` (or upgrading
    wayview): each selected image's detections are replaced, and the map features around it
    are placed again. Blurring is not redone.

    --stage sfm, after installing `wayview[sfm]` or changing `pipeline.sfm_*`: structure from
    motion runs again on each selected sequence (needs pycolmap here, unless --queue).

    Choose the images with --sequence, --organization or --all.
    """
    if bool(sequence_ids) + (organization_id is not None) + everything != 1:
        raise click.UsageError("choose the images: --sequence KEY, --organization ID or --all")
    if queue and stage != "sfm":
        raise click.UsageError("--queue goes with --stage sfm")
    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    if stage == "sfm":
        _reprocess_sfm_command(settings, sequence_ids, organization_id, as_json, queue)
        return
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


def _reprocess_sfm_command(settings: Settings, sequence_ids: tuple[str, ...],
                           organization_id: int | None, as_json: bool, queue: bool) -> None:
    from wayview.pipeline.reprocess import reprocess_sfm

    def progress(sequence_id: str, registered: int, images: int) -> None:
        if not as_json:
            click.echo(f"  sequence {sequence_id}: {registered} of {images} images "
                       "registered", err=True)

    async def run(store: Any, blobs: Any) -> Any:
        from wayview.pipeline.sfm_job import sfm_work_root

        return await reprocess_sfm(settings.pipeline, store, blobs, sequence_ids=sequence_ids,
                                   organization_id=organization_id, queue=queue,
                                   work_root=sfm_work_root(settings.data_dir),
                                   progress=progress)

    try:
        report = asyncio.run(_with_store(settings, run))
    except WayviewError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps({
            "sequences": report.sequences, "queued": report.queued, "images": report.images,
            "registered": report.registered,
            "fallbacks": [{"sequence_id": s, "image_id": i, "reason": r}
                          for s, i, r in report.fallbacks]}))
        return
    if queue:
        click.echo(f"Queued structure from motion for {report.queued} sequences.")
        return
    click.echo(f"Structure from motion on {report.sequences} sequences: {report.registered} "
               f"of {report.images} images registered.")
    for sequence_id, image_id, reason in report.fallbacks:
        click.echo(f"  sequence {sequence_id}, image {image_id}: {reason}")


@click.command("sfm-report")
@click.argument("sequence_id")
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Data folder (database and blobs). Default: $WAYVIEW_DATA_DIR or ./wayview-data.",
)
def sfm_report_command(sequence_id: str, data_dir: Path | None) -> None:
    """Print a sequence's last structure-from-motion report (JSON).

    It says how many images were registered, what each window did, and every image that kept
    its GPS-track position, with the reason."""
    from wayview.blobs import open_blobs
    from wayview.pipeline.sfm_job import read_report

    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    try:
        report = read_report(open_blobs(settings), sequence_id)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if report is None:
        raise click.ClickException(f"structure from motion never ran on sequence {sequence_id}")
    click.echo(json.dumps(report, indent=2))


@click.command("delete")
@click.option("--image", "image_ids", type=int, multiple=True, help="This image (repeatable).")
@click.option("--sequence", "sequence_ids", multiple=True, help="Every image of this sequence "
              "(repeatable).")
@click.option("--user", "username", default=None, help="Every image this user uploaded.")
@click.option("--yes", is_flag=True, help="Do it (without it, only say what would go).")
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Data folder (database and blobs). Default: $WAYVIEW_DATA_DIR or ./wayview-data.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def delete_command(image_ids: tuple[int, ...], sequence_ids: tuple[str, ...],
                   username: str | None, yes: bool, data_dir: Path | None,
                   as_json: bool) -> None:
    """Delete images for good: rows, detections, every blob, cached tiles.

    The images disappear from the API and the tiles at once; their blobs (originals,
    private unblurred copies, thumbnails, tiles, meshes) and the map features they were
    evidence of are handled by a durable `delete` job, run here before the command returns
    (a worker finishes it if this command is killed). Without --yes it only counts.
    """
    if not (image_ids or sequence_ids or username):
        raise click.UsageError("choose what to delete: --image ID, --sequence KEY or --user NAME")
    settings = Settings(data_dir=data_dir) if data_dir else Settings()

    async def run(store: Any, blobs: Any) -> dict[str, Any]:
        from wayview.auth.audit import audit
        from wayview.pipeline.delete import DELETE_JOB, images_of, request_deletion
        from wayview.pipeline.worker import JobRunner

        if username is not None and await store.get_user_by_username(username) is None:
            raise click.ClickException(f"no user {username!r}")
        found = await store.get_images(list(image_ids))
        ids = sorted({*found, *await images_of(store, sequence_ids=sequence_ids,
                                                username=username)})
        if not yes:
            return {"images": len(ids), "deleted": False}
        report = await request_deletion(store, ids)
        target = (("user", username) if username else ("sequence", ",".join(sequence_ids))
                  if sequence_ids and not image_ids else ("images", ",".join(map(str, ids[:20]))))
        await audit(store, "operator.delete", actor_id=None, target_kind=target[0],
                    target_id=target[1], images=report.images, image_ids=ids[:200])
        if username:  # their data exports held those images too
            from wayview.pipeline.export import discard_exports

            owner = await store.get_user_by_username(username)
            await discard_exports(store, blobs, owner.id)
        await JobRunner(settings, store, blobs, kinds=(DELETE_JOB,)).drain()
        return {"images": report.images, "deleted": True,
                "sequences_emptied": report.sequences_emptied, "jobs": report.jobs}

    try:
        out = asyncio.run(_with_store(settings, run))
    except WayviewError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps(out))
    elif out["deleted"]:
        click.echo(f"Deleted {out['images']} images ({len(out['sequences_emptied'])} "
                   "sequences emptied).")
    else:
        click.echo(f"Would delete {out['images']} images; run again with --yes to do it.")


async def _with_store(settings: Settings, run: Callable[[Any, Any], Awaitable[Any]]) -> Any:
    from wayview.blobs import open_blobs
    from wayview.store import open_store

    store = open_store(settings)
    await store.open()
    try:
        return await run(store, open_blobs(settings))
    finally:
        await store.close()


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
