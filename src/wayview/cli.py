"""wayview.cli: the `wayview` command (`serve` is the default; admin commands print JSON)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from wayview import __version__
from wayview.errors import WayviewError
from wayview.settings import Settings

T = TypeVar("T")


class DefaultGroup(click.Group):
    """A group that runs `serve` when no sub-command is named."""

    default_command = "serve"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Insert the default command when the first argument is not a command."""
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "--version")):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def make_settings(data_dir: Path | None, **overrides: Any) -> Settings:
    """Settings from the environment, with command-line values on top."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise click.ClickException("invalid settings: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))} (WAYVIEW_{'__'.join(map(str, e['loc'])).upper()}):"
            f" {e['msg']}" for e in exc.errors())) from None


def run_with_store(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Open the store, run `fn(store)`, close it; domain errors become clean CLI errors."""
    from wayview.store import open_store

    async def main() -> T:
        store = open_store(settings)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except WayviewError as exc:
        raise click.ClickException(exc.message) from None


def emit(as_json: bool, obj: dict[str, Any], text: str) -> None:
    """Print exactly one JSON object with --json, else human text."""
    click.echo(json.dumps(obj) if as_json else text)


data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Data folder (database and blobs). Default: $WAYVIEW_DATA_DIR or ./wayview-data.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


@click.group(cls=DefaultGroup)
@click.version_option(__version__, prog_name="wayview")
def cli() -> None:
    """wayview: a self-hostable street-level imagery server speaking the Mapillary API v4.

    Every setting can also come from a WAYVIEW_* environment variable (nested with __), e.g.
    WAYVIEW_SEARCH__MAX_BBOX_AREA_DEG2=0.05. See docs/configuration.md.
    """
    # Everything wayview writes (database, secret, uploads, blobs) is for this user only.
    os.umask(0o077)


@cli.command()
@click.option("--host", default=None, help="Listen address (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (default 8080).")
@click.option("--workers", type=int, default=None, help="Server processes (default 1).")
@click.option("--public-base-url", default=None,
              help="Base of absolute URLs in responses (default http://HOST:PORT).")
@data_dir_option
@click.option("--get", "get_path", metavar="PATH", default=None,
              help="Answer one GET in-process, print the body, exit (status ≥ 400 → exit 1).")
def serve(host: str | None, port: int | None, workers: int | None,
          public_base_url: str | None, data_dir: Path | None, get_path: str | None) -> None:
    """Serve the API (creates and migrates the data folder on first run)."""
    settings = make_settings(data_dir, host=host, port=port, workers=workers,
                             public_base_url=public_base_url)
    if get_path is not None:
        status, body = asyncio.run(_get_once(settings, get_path))
        click.echo(body)
        sys.exit(0 if status < 400 else 1)
    from wayview import logs
    from wayview.server import PortUnavailable, check_port, run_server
    from wayview.store import describe_store

    try:
        # A port in use fails in one line, before the store is touched or anything logged.
        check_port(settings.host, settings.port)
    except PortUnavailable as exc:
        raise click.ClickException(exc.message) from None
    logs.configure(settings.log_level, settings.log_format)  # logs the schema line below
    run_with_store(settings, lambda store: asyncio.sleep(0))  # create + migrate before forking
    _check_shared_data_dir(settings, apart=True)
    try:
        click.echo(f"wayview {__version__} serving {settings.base_url} "
                   f"(data: {describe_store(settings)})", err=True)
        run_server(settings)
    except PortUnavailable as exc:
        raise click.ClickException(exc.message) from None


def _check_shared_data_dir(settings: Settings, *, apart: bool = False) -> None:
    """Refuse to start, in one line, on a data_dir the deployment's other hosts do not share
    (staged uploads live there; wayview.ingest.shared_dir).

    `apart`: in a forked child. `serve` forks its workers afterwards, and obstore's runtime
    started in the parent does not survive a fork: the workers' S3 calls would never answer.
    """
    from wayview.store import uses_postgres

    if not (uses_postgres(settings) and settings.blobs_url):
        return  # SQLite or blobs in data_dir: one host, nothing to check
    if apart:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_shared_data_dir_problem, args=(settings, send))
        child.start()
        send.close()
        problem = receive.recv() if receive.poll(120) else "the data_dir check did not finish"
        child.join(10)
    else:
        problem = _shared_data_dir_problem(settings)
    if problem:
        raise click.ClickException(problem)


def _shared_data_dir_problem(settings: Settings, send: Any = None) -> str:
    """The data_dir check's one-line error, or "" (sent through `send` when given)."""
    from wayview.blobs import open_blobs
    from wayview.ingest.shared_dir import check_shared_data_dir

    try:
        check_shared_data_dir(settings, open_blobs(settings))
        problem = ""
    except WayviewError as exc:
        problem = exc.message
    if send is not None:
        send.send(problem)
    return problem


async def _get_once(settings: Settings, path: str) -> tuple[int, str]:
    import httpx

    from wayview.api.app import create_app
    from wayview.store import open_store

    store = open_store(settings)
    await store.open()
    try:
        app = create_app(settings, store=store)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.base_url) as client:
            response = await client.get(path)
        return response.status_code, response.text
    finally:
        await store.close()


@cli.group()
def users() -> None:
    """Manage users."""


@users.command("create")
@click.argument("name")
@click.option("--email", default=None, help="E-mail address (unique).")
@click.option("--password-stdin", is_flag=True, help="Read a password from standard input.")
@data_dir_option
@json_option
def users_create(name: str, email: str | None, password_stdin: bool, data_dir: Path | None,
                 as_json: bool) -> None:
    """Create a user NAME."""
    from wayview.auth.tokens import hash_password

    password_hash = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if len(password) < 8:
            raise click.ClickException("the password must have at least 8 characters")
        password_hash = hash_password(password)
    user = run_with_store(make_settings(data_dir), lambda s: s.create_user(
        name, email=email, password_hash=password_hash))
    emit(as_json, {"id": str(user.id), "username": user.username},
         f"created user {user.username} (id {user.id})")


@users.command("invite")
@click.argument("email")
@data_dir_option
@json_option
def users_invite(email: str, data_dir: Path | None, as_json: bool) -> None:
    """Print an invitation link for one account with EMAIL (for `accounts.signup_invite_only`;
    valid for `accounts.invite_ttl_s`)."""
    from wayview.auth.accounts import Accounts
    from wayview.auth.secret import server_secret
    from wayview.errors import InvalidInput

    settings = make_settings(data_dir)
    accounts = Accounts(None, settings, None, server_secret(settings))  # type: ignore[arg-type]
    try:
        token = accounts.invite(email)
    except InvalidInput as exc:
        raise click.ClickException(exc.message) from None
    url = f"{settings.base_url}/signup?invite={token}"
    emit(as_json, {"email": email.strip(), "url": url,
                   "expires_in_s": settings.accounts.invite_ttl_s}, url)


@cli.group()
def orgs() -> None:
    """Manage organizations."""


@orgs.command("create")
@click.argument("slug")
@click.option("--name", default="", help="Display name.")
@click.option("--description", default="", help="Description.")
@click.option("--member", "members", multiple=True, help="Username of a member (repeatable).")
@data_dir_option
@json_option
def orgs_create(slug: str, name: str, description: str, members: tuple[str, ...],
                data_dir: Path | None, as_json: bool) -> None:
    """Create an organization SLUG."""

    async def run(store: Any) -> Any:
        found = [await store.get_user_by_username(m) for m in members]
        missing = [m for m, u in zip(members, found, strict=True) if u is None]
        if missing:
            raise click.ClickException(f"unknown user {missing[0]!r}")
        org = await store.create_organization(slug, name=name or slug, description=description)
        for user in found:
            await store.add_organization_member(org.id, user.id)
        return org

    org = run_with_store(make_settings(data_dir), run)
    emit(as_json, {"id": str(org.id), "slug": org.slug, "name": org.name,
                   "members": list(members)},
         f"created organization {org.slug} (id {org.id})")


@cli.group()
def apps() -> None:
    """Manage developer applications."""


@apps.command("create")
@click.argument("name")
@click.option("--owner", required=True, help="Username of the owner.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="OAuth callback URL.")
@click.option("--scope", "scope", default=None, help="Allowed scopes: read,write,upload.")
@click.option("--client-token", default=None,
              help="Register this exact client token (MLY|<app id>|<secret>), e.g. the one "
                   "iD or mapillary_tools ship.")
@data_dir_option
@json_option
def apps_create(name: str, owner: str, redirect_uris: tuple[str, ...], scope: str | None,
                client_token: str | None, data_dir: Path | None, as_json: bool) -> None:
    """Register an application NAME; prints its client token and secret (the owner sees
    them again on the developer dashboard; the database keeps only hashes)."""
    from wayview.auth.secret import server_secret
    from wayview.auth.tokens import create_app, parse_scopes

    settings = make_settings(data_dir)
    secret = server_secret(settings)

    async def run(store: Any) -> Any:
        user = await store.get_user_by_username(owner)
        if user is None:
            raise click.ClickException(f"unknown user {owner!r}")
        return await create_app(store, name, owner=user, redirect_uris=redirect_uris,
                                scopes=parse_scopes(scope), client_token=client_token,
                                server_secret=secret)

    new = run_with_store(settings, run)
    emit(as_json, {"app_id": str(new.app.id), "name": new.app.name,
                   "client_token": new.client_token, "client_secret": new.client_secret,
                   "scopes": list(new.app.scopes)},
         f"app {new.app.id}\nclient token:  {new.client_token}\n"
         f"client secret: {new.client_secret}")


@cli.group()
def tokens() -> None:
    """Issue user access tokens."""


@tokens.command("create")
@click.option("--user", "username", required=True, help="Username the token acts for.")
@click.option("--app", "app_id", type=int, default=None, help="App id (default: built-in app).")
@click.option("--scope", "scope", default=None, help="Scopes: read,write,upload (default all).")
@data_dir_option
@json_option
def tokens_create(username: str, app_id: int | None, scope: str | None, data_dir: Path | None,
                  as_json: bool) -> None:
    """Issue a user access token (shown once)."""
    from wayview.auth.tokens import issue_user_token, parse_scopes

    settings = make_settings(data_dir)

    async def run(store: Any) -> Any:
        user = await store.get_user_by_username(username)
        if user is None:
            raise click.ClickException(f"unknown user {username!r}")
        app = None
        if app_id is not None:
            app = await store.get_app(app_id)
            if app is None:
                raise click.ClickException(f"unknown app {app_id}")
        return await issue_user_token(store, user, app=app, scopes=parse_scopes(scope),
                                      ttl_s=settings.oauth.token_ttl_s)

    issued = run_with_store(settings, run)
    emit(as_json, {"access_token": issued.access_token, "expires_in": issued.expires_in,
                   "app_id": str(issued.app_id), "scopes": list(issued.scopes)},
         issued.access_token)


@cli.group()
def uploads() -> None:
    """Upload sessions of the upload service."""


@uploads.command("cleanup")
@data_dir_option
@json_option
def uploads_cleanup(data_dir: Path | None, as_json: bool) -> None:
    """Delete upload sessions idle longer than upload.handle_ttl (rows and staged files)."""
    from wayview.ingest.upload_sessions import UploadSessions

    settings = make_settings(data_dir)

    async def run(store: Any) -> int:
        return await UploadSessions(settings, store).cleanup_expired()

    removed = run_with_store(settings, run)
    emit(as_json, {"removed": removed}, f"removed {removed} expired upload sessions")


@cli.command()
@data_dir_option
@click.option("--concurrency", type=int, default=None,
              help="Jobs run at once (default: the number of CPUs).")
@click.option("--drain", is_flag=True, help="Run the jobs that are due, then exit.")
def worker(data_dir: Path | None, concurrency: int | None, drain: bool) -> None:
    """Run background jobs (uploads, processing) until interrupted.

    Any number of workers may run beside `serve` and each other, on this machine or others
    sharing the store: each job is taken by exactly one. Stop with Ctrl-C or SIGTERM; the
    running jobs are handed back to the queue.
    """
    import os
    import signal

    from wayview import logs
    from wayview.blobs import open_blobs
    from wayview.pipeline.worker import JobRunner

    settings = make_settings(data_dir)
    logs.configure(settings.log_level, settings.log_format)
    if settings.metrics.worker_port and not drain:
        from wayview import metrics

        try:  # this worker's own /metrics (docs/monitoring.md)
            metrics.start_worker_server(settings.metrics)
        except OSError as exc:
            raise click.ClickException(
                f"cannot serve metrics on {settings.metrics.worker_host}:"
                f"{settings.metrics.worker_port}: {exc.strerror or exc}") from None
    lanes = concurrency if concurrency is not None else (os.cpu_count() or 1)
    if lanes < 1:
        raise click.UsageError("--concurrency must be at least 1")
    _check_shared_data_dir(settings)

    async def run(store: Any) -> int:
        runner = JobRunner(settings, store, open_blobs(settings), concurrency=lanes)
        if drain:
            return await runner.drain()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def shut_down() -> None:
            runner.stop()
            if task is not None:
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, shut_down)
        from wayview.store import describe_store

        click.echo(f"wayview worker {runner.name}: {lanes} at once (data: "
                   f"{describe_store(settings)})", err=True)
        try:
            await runner.run_forever()
        except asyncio.CancelledError:
            pass
        return 0

    ran = run_with_store(settings, run)
    if drain:
        click.echo(f"ran {ran} jobs", err=True)


@cli.group()
def jobs() -> None:
    """The background job queue: see what is queued, running, done or parked."""


@jobs.command("list")
@data_dir_option
@json_option
@click.option("--state", "states", multiple=True,
              type=click.Choice(["queued", "running", "done", "parked"]),
              help="Only jobs in this state (repeatable).")
@click.option("--limit", type=int, default=50, show_default=True)
def jobs_list(data_dir: Path | None, as_json: bool, states: tuple[str, ...], limit: int) -> None:
    """Jobs, newest first, with their attempts and last error."""
    settings = make_settings(data_dir)

    async def run(store: Any) -> tuple[list[Any], dict[str, int]]:
        return (await store.list_jobs(states=states or None, limit=limit),
                await store.job_counts())

    listed, counts = run_with_store(settings, run)
    if as_json:
        emit(True, {"counts": counts, "jobs": [
            {"id": j.id, "kind": j.kind, "state": j.state, "attempts": j.attempts,
             "payload": j.payload, "last_error": j.last_error, "worker": j.worker,
             "run_after_ms": j.run_after_ms, "updated_at_ms": j.updated_at_ms}
            for j in listed]}, "")
        return
    click.echo("  ".join(f"{state}: {n}" for state, n in counts.items()))
    for j in listed:
        error = f"  error: {j.last_error.splitlines()[-1][:160]}" if j.last_error else ""
        click.echo(f"{j.id:>8}  {j.kind:<18} {j.state:<8} attempts={j.attempts}  "
                   f"{json.dumps(j.payload)[:60]}{error}")


@jobs.command("retry")
@data_dir_option
@json_option
@click.argument("job_ids", nargs=-1, type=int)
@click.option("--all-parked", is_flag=True, help="Requeue every parked job.")
def jobs_retry(data_dir: Path | None, as_json: bool, job_ids: tuple[int, ...],
               all_parked: bool) -> None:
    """Queue parked jobs again (by id, or every parked job with --all-parked)."""
    if bool(job_ids) == all_parked:
        raise click.UsageError("give job ids or --all-parked (not both)")
    settings = make_settings(data_dir)

    async def run(store: Any) -> int:
        return int(await store.retry_jobs(None if all_parked else list(job_ids)))

    count = run_with_store(settings, run)
    emit(as_json, {"requeued": count}, f"requeued {count} parked jobs")


@cli.command("migrate-store")
@click.option("--from", "source", required=True, metavar="sqlite:////PATH",
              help="The SQLite store to copy (sqlite:////abs/path/wayview.db or "
                   "sqlite:///path/to/wayview.db).")
@click.option("--to", "target", required=True, metavar="postgresql://…",
              help="An empty PostgreSQL + PostGIS database (migrated here first).")
@click.option("--blobs-to", default=None, metavar="s3://BUCKET/PREFIX|DIR",
              help="Also copy the blobs there (S3 credentials from the s3.* settings).")
@click.option("--blobs-from", type=click.Path(path_type=Path), default=None,
              help="The blob folder to copy (default: `blobs` beside the SQLite file).")
def migrate_store(source: str, target: str, blobs_to: str | None,
                  blobs_from: Path | None) -> None:
    """Copy a SQLite store into PostgreSQL: users, apps, tokens, images, everything.

    The copy runs in one transaction (all or nothing) into an empty database and ends with
    the row count of every table on both sides; the command fails if any differs.
    """
    from wayview.store import POSTGRES_SCHEMES
    from wayview.store.postgres.connection import redact
    from wayview.store.postgres.copy import TableCount, copy_sqlite_to_postgres
    from wayview.store.postgres.store import PostgresStore
    from wayview.store.sqlite.export import sqlite_path_of

    try:
        sqlite_path = sqlite_path_of(source)
    except WayviewError as exc:
        raise click.UsageError(f"--from: {exc.message}") from None
    if not target.startswith(POSTGRES_SCHEMES):
        raise click.UsageError("--to must be a postgresql:// URL")

    async def migrate_target() -> None:
        store = PostgresStore(target, pool_size=1)
        await store.open()
        await store.close()

    try:
        asyncio.run(migrate_target())
        with click.progressbar(length=1, label="copying", file=sys.stderr) as bar:
            def progress(table: str, done: int, total: int) -> None:
                bar.label = f"{table:<20}"
                bar.length = max(total, 1)
                bar.pos = done
                bar.render_progress()

            counts: list[TableCount] = copy_sqlite_to_postgres(sqlite_path, target, progress)
    except WayviewError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{'table':<22}{'sqlite':>12}{'postgresql':>12}")
    for c in counts:
        click.echo(f"{c.table:<22}{c.source:>12,}{c.target:>12,}{'' if c.ok else '  MISMATCH'}")
    if not all(c.ok for c in counts):
        raise click.ClickException("row counts differ: the copy is incomplete")
    click.echo(f"copied {sum(c.target for c in counts):,} rows into {redact(target)}")
    if blobs_to:
        copied = _copy_blobs(blobs_from or sqlite_path.parent / "blobs", blobs_to)
        click.echo(f"copied {copied:,} blobs to {blobs_to}")


def _copy_blobs(folder: Path, target: str) -> int:
    """Copy every blob file under `folder` to the blob store `target`; how many."""
    from wayview.blobs import LocalBlobs, open_blobs

    if not folder.is_dir():
        raise click.ClickException(f"no blob folder at {folder}")
    settings = make_settings(None, blobs_url=target) if target.startswith("s3://") else None
    store = open_blobs(settings) if settings is not None else LocalBlobs(Path(target))
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")]
    with click.progressbar(files, label="blobs", file=sys.stderr) as bar:
        for path in bar:
            store.put_file(path.relative_to(folder).as_posix(), path)
    return len(files)


def _register_commands() -> None:
    """Attach the commands that live beside their services (imported lazily by click)."""
    from wayview.demo import demo_command
    from wayview.ingest.cli import (
        delete_command,
        import_command,
        reprocess_command,
        sfm_report_command,
    )

    cli.add_command(import_command, "import")
    cli.add_command(reprocess_command, "reprocess")
    cli.add_command(sfm_report_command, "sfm-report")
    cli.add_command(delete_command, "delete")
    cli.add_command(demo_command, "demo")
    from wayview import cli_backup, cli_check, cli_edits, cli_export, cli_governance

    for module in (cli_backup, cli_check, cli_edits, cli_export, cli_governance):
        for name, command in module.COMMANDS.items():
            cli.add_command(command, name)


_register_commands()
