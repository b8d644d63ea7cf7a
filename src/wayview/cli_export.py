"""wayview.cli_export: `wayview export`, an operator's copy of all of a user's data (issue #17),
registered by wayview.cli. Users make their own from `/account/export` or `POST /me/exports`
(docs/export.md)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import click

from wayview.errors import WayviewError


@click.command("export")
@click.option("--user", "username", required=True, help="Whose data (username).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The zip to write (refused when it exists, unless --force).")
@click.option("--force", is_flag=True, help="Replace OUTPUT when it exists.")
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Data folder (database and blobs). Default: $WAYVIEW_DATA_DIR or ./wayview-data.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def export_command(username: str, output: Path, force: bool, data_dir: Path | None,
                   as_json: bool) -> None:
    """Write all of a user's data to a zip: their original uploads (unblurred), every image's
    metadata as JSON and GeoJSON, their sequences and detections (layout: docs/export.md).

    Runs here, with progress on standard error; the copy is the operator's (no expiry) and
    the audit log records it."""
    from wayview.blobs import open_blobs
    from wayview.pipeline.export import export_to_file
    from wayview.settings import Settings
    from wayview.store import open_store

    if output.exists() and not force:
        raise click.ClickException(f"{output} exists (use --force to replace it)")
    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    last = 0.0

    async def progress(done: int, total: int) -> None:
        nonlocal last
        if done == total or time.monotonic() - last > 5:
            last = time.monotonic()
            click.echo(f"{done}/{total} images", err=True)

    async def run() -> dict[str, object]:
        store = open_store(settings)
        await store.open()
        try:
            user = await store.get_user_by_username(username)
            if user is None:
                raise click.ClickException(f"no user {username!r}")
            started = time.monotonic()
            report = await export_to_file(settings, store, open_blobs(settings), user, output,
                                          progress=progress)
            return {"output": str(output), "user": user.username, **report.counts(),
                    "size_bytes": report.size_bytes,
                    "seconds": round(time.monotonic() - started, 2)}
        finally:
            await store.close()

    try:
        out = asyncio.run(run())
    except WayviewError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps(out))
    else:
        click.echo(f"Wrote {out['images']} images, {out['sequences']} sequences and "
                   f"{out['detections']} detections to {output} ({out['size_bytes']} bytes).",
                   file=sys.stdout)


#: name → command, added to the `wayview` group.
COMMANDS: dict[str, click.Command] = {"export": export_command}
