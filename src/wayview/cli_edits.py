"""wayview.cli_edits: command-line commands (issue #17), registered by wayview.cli.

Operators correct data as instance admins (`actor_id` None in the audit log): `wayview
correct`, `wayview split`, `wayview merge`, `wayview reorder`. Each runs the edit's
`reposition` jobs before it returns (a worker finishes them if the command is killed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from wayview.errors import WayviewError
from wayview.settings import Settings

_DATA_DIR = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Data folder (database and blobs). Default: $WAYVIEW_DATA_DIR or ./wayview-data.")


def _run(data_dir: Path | None, fn: Callable[[Settings, Any], Awaitable[dict[str, Any]]]
         ) -> dict[str, Any]:
    """Open the store and blobs, run `fn`, then the `reposition` jobs it queued."""
    settings = Settings(data_dir=data_dir) if data_dir else Settings()

    async def main() -> dict[str, Any]:
        from wayview.blobs import open_blobs
        from wayview.pipeline.edits import REPOSITION_JOB
        from wayview.pipeline.worker import JobRunner
        from wayview.store import open_store

        store = open_store(settings)
        await store.open()
        try:
            out = await fn(settings, store)
            await JobRunner(settings, store, open_blobs(settings),
                            kinds=(REPOSITION_JOB,)).drain()
            return out
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except WayviewError as exc:
        raise click.ClickException(exc.message) from None


@click.command("correct")
@click.option("--image", "image_id", type=int, required=True, help="The image to correct.")
@click.option("--compass-angle", type=float, default=None, help="Degrees from north.")
@click.option("--lon", type=float, default=None, help="Longitude (with --lat).")
@click.option("--lat", type=float, default=None, help="Latitude (with --lon).")
@click.option("--captured-at", default=None, help="ISO-8601 (UTC unless a zone is given) or "
              "milliseconds since 1970.")
@_DATA_DIR
def correct_command(image_id: int, compass_angle: float | None, lon: float | None,
                    lat: float | None, captured_at: str | None, data_dir: Path | None) -> None:
    """Correct an image's compass angle, position or capture time (the values as uploaded
    are kept; computed positions and map features follow)."""
    from wayview.pipeline import edits

    given: dict[str, object | None] = {"compass_angle": compass_angle, "lon": lon, "lat": lat,
                                       "captured_at": captured_at}
    params: dict[str, object] = {k: v for k, v in given.items() if v is not None}

    async def run(settings: Settings, store: Any) -> dict[str, Any]:
        image = (await store.get_images([image_id])).get(image_id)
        if image is None:
            raise click.ClickException(f"no image {image_id}")
        correction = edits.parse_correction(image_id, params)
        done = await edits.correct_image(settings.pipeline, store, image, correction,
                                         actor_id=None)
        return {"image": image_id, "changed": bool(done.image_ids)}

    out = _run(data_dir, run)
    click.echo(json.dumps(out))


@click.command("split")
@click.option("--sequence", "sequence_id", required=True, help="The sequence to split.")
@click.option("--at", "at_image_id", type=int, required=True,
              help="The first image of the new sequence (it and every later one move).")
@_DATA_DIR
def split_command(sequence_id: str, at_image_id: int, data_dir: Path | None) -> None:
    """Split a sequence at an image; prints the new sequence's key."""
    from wayview.pipeline import edits

    async def run(settings: Settings, store: Any) -> dict[str, Any]:
        new_id = await edits.split_sequence(settings.pipeline, store, sequence_id, at_image_id,
                                            actor_id=None)
        return {"sequence": sequence_id, "new_sequence": new_id}

    click.echo(json.dumps(_run(data_dir, run)))


@click.command("merge")
@click.argument("sequence_id")
@click.argument("other_id")
@_DATA_DIR
def merge_command(sequence_id: str, other_id: str, data_dir: Path | None) -> None:
    """Merge sequence OTHER_ID into SEQUENCE_ID (same creator and organization)."""
    from wayview.pipeline import edits

    async def run(settings: Settings, store: Any) -> dict[str, Any]:
        done = await edits.merge_sequences(settings.pipeline, store, sequence_id, other_id,
                                           actor_id=None)
        return {"sequence": sequence_id, "images_moved": len(done.image_ids)}

    click.echo(json.dumps(_run(data_dir, run)))


@click.command("reorder")
@click.option("--sequence", "sequence_id", required=True, help="The sequence to reorder.")
@click.argument("image_ids", nargs=-1, type=int, required=True)
@_DATA_DIR
def reorder_command(sequence_id: str, image_ids: tuple[int, ...], data_dir: Path | None
                    ) -> None:
    """Put a sequence's images in the order IMAGE_IDS (every image once) by correcting
    their capture times: the earliest time goes to the first image given, and so on."""
    from wayview.pipeline import edits

    async def run(settings: Settings, store: Any) -> dict[str, Any]:
        done = await edits.reorder_sequence(settings.pipeline, store, sequence_id,
                                            list(image_ids), actor_id=None)
        return {"sequence": sequence_id, "images_changed": len(done.image_ids)}

    click.echo(json.dumps(_run(data_dir, run)))


#: name → command, added to the `wayview` group.
COMMANDS: dict[str, click.Command] = {
    "correct": correct_command, "split": split_command, "merge": merge_command,
    "reorder": reorder_command,
}
