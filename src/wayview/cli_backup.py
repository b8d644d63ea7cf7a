"""wayview.cli_backup: `wayview backup`, `wayview restore` and `wayview migrate`, the operator's
commands for keeping a deployment safe across failures and upgrades (docs/backup.md);
registered by wayview.cli."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from wayview.errors import WayviewError

_data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Data folder (database and blobs). Default: $WAYVIEW_DATA_DIR or ./wayview-data.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def _say(message: str) -> None:
    click.echo(f"{message}…", err=True)


def _size(n: int) -> str:
    """Bytes for people.

    >>> _size(1_234_567)
    '1.2 MB'
    """
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


@click.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@_data_dir_option
@_json_option
def backup_command(dest: Path, data_dir: Path | None, as_json: bool) -> None:
    """Back up the deployment into the new folder DEST while it keeps running: the database
    (SQLite online backup, or pg_dump), every blob, staged uploads and the server secret,
    consistent with each other, with a SHA-256 per file. DEST holds password hashes and the
    server secret: it is created 0700 for this user only."""
    from wayview.backup import create_backup
    from wayview.cli import make_settings

    settings = make_settings(data_dir)
    try:
        report = create_backup(settings, dest, progress=None if as_json else _say)
    except WayviewError as exc:
        raise click.ClickException(exc.message) from None
    m = report.manifest
    if as_json:
        click.echo(json.dumps({"path": str(dest), **m}))
        return
    click.echo(f"backed up {m['counts'].get('images', 0):,} images ({m['backend']} schema "
               f"version {m['schema_version']}), {m['blobs']['count']:,} blobs "
               f"({_size(m['blobs']['bytes'])}) into {dest} in {report.seconds:.1f} s")
    if m["secret_key"] == "setting":
        click.echo("the server secret comes from the secret_key setting and is not in the "
                   "backup: keep that setting with it", err=True)
    if m["images_missing_media_in_source"]:
        click.echo(f"warning: {m['images_missing_media_in_source']} images had no media in "
                   "the source store either", err=True)


@click.command("restore")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_data_dir_option
@click.option("--database-url", default=None, metavar="postgresql://…",
              help="Restore a PostgreSQL backup into this empty database (default: the "
                   "database_url setting).")
@click.option("--blobs-url", default=None, metavar="s3://BUCKET/PREFIX",
              help="Put the blobs there (default: the blobs_url setting, else the data "
                   "folder).")
@click.option("--force", is_flag=True,
              help="Restore into a data folder that is not empty, replacing its database, "
                   "blobs, staged uploads and secret (and over objects in --blobs-url).")
@_json_option
def restore_command(source: Path, data_dir: Path | None, database_url: str | None,
                    blobs_url: str | None, force: bool, as_json: bool) -> None:
    """Restore the backup SOURCE into a new deployment: a new data folder (SQLite), or an
    empty PostgreSQL database. Every checksum is verified before anything is written; the
    store is then opened, which applies the migrations of a backup made by an older
    release."""
    from wayview.backup import restore_backup
    from wayview.cli import make_settings, run_with_store
    from wayview.store.maintenance import schema_status

    settings = make_settings(data_dir, database_url=database_url, blobs_url=blobs_url)
    try:
        report = restore_backup(settings, source, force=force,
                                progress=None if as_json else _say)
        before = schema_status(settings)
    except WayviewError as exc:
        raise click.ClickException(f"restore failed: {exc.message}") from None
    run_with_store(settings, lambda store: asyncio.sleep(0))  # migrate
    after = schema_status(settings)
    mismatched = report.mismatched
    out: dict[str, Any] = {
        "restored": str(source), "backend": report.manifest["backend"],
        "schema_version": {"backup": report.manifest["schema_version"],
                           "now": after.current},
        "files": report.files, "counts": report.counts, "seconds": report.seconds,
        "mismatched": {t: list(v) for t, v in mismatched.items()}}
    if as_json:
        click.echo(json.dumps(out))
    else:
        upgraded = ("" if before.current == after.current
                    else f", schema upgraded {before.current} → {after.current}")
        click.echo(f"restored {report.counts.get('images', 0):,} images and {report.files:,} "
                   f"files from {source} (made {report.manifest['created_at']}) in "
                   f"{report.seconds:.1f} s{upgraded}")
        if report.manifest.get("secret_key") == "setting":
            click.echo("the backup's server secret came from the secret_key setting: set the "
                       "same value here, or existing sessions and app tokens stop working",
                       err=True)
    if mismatched:
        raise click.ClickException("row counts differ from the backup: " + ", ".join(
            f"{t} {a} ≠ {b}" for t, (a, b) in mismatched.items()))


@click.command("migrate")
@click.option("--check", is_flag=True,
              help="Only report: exit 0 when the schema is up to date, 1 when migrations are "
                   "pending (none is applied).")
@_data_dir_option
@_json_option
def migrate_command(check: bool, data_dir: Path | None, as_json: bool) -> None:
    """Apply the store's pending schema migrations (`serve` and `worker` also apply them when
    they start). Back up first (`wayview backup`)."""
    from wayview.cli import make_settings, run_with_store
    from wayview.store.maintenance import schema_status

    settings = make_settings(data_dir)
    try:
        status = schema_status(settings)
    except WayviewError as exc:
        raise click.ClickException(exc.message) from None

    def report(line: str, code: int, **extra: Any) -> None:
        if as_json:
            click.echo(json.dumps({"backend": status.backend, "version": status.current,
                                   "latest": status.latest,
                                   "pending": [m.name for m in status.pending],
                                   "newer": status.unknown, **extra}))
        else:
            click.echo(line)
        sys.exit(code)

    if status.unknown:
        report(status.describe(), 2)
    if check or not status.pending:
        report(status.describe(), 1 if status.pending else 0)
    run_with_store(settings, lambda store: asyncio.sleep(0))
    after = schema_status(settings)
    count = len(status.pending)
    report(f"store schema: {status.backend} version {status.current} → {after.current} "
           f"({count} migration{'' if count == 1 else 's'} applied)", 0 if not after.pending
           else 1, applied=[m.name for m in status.pending])


COMMANDS: dict[str, click.Command] = {
    "backup": backup_command, "restore": restore_command, "migrate": migrate_command,
}
