"""wayview.cli_governance: instance roles, organization members, the audit log and the report
queue from the command line (issue #17), registered by wayview.cli.

An operator at the command line acts as an instance admin; the audit log records them as
"operator" (no user).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from wayview.auth import governance
from wayview.model.entities import INSTANCE_ROLES, ORGANIZATION_ROLES, AuditEntry

_data_dir = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Data folder (database and blobs). Default: $WAYVIEW_DATA_DIR or ./wayview-data.")
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _run(data_dir: Path | None, fn: Any) -> Any:
    from wayview.cli import make_settings, run_with_store

    return run_with_store(make_settings(data_dir), fn)


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.command("role")
@click.argument("username", required=False)
@click.argument("role", required=False, type=click.Choice([*INSTANCE_ROLES, "none"]))
@_data_dir
@_json
def role_command(username: str | None, role: str | None, data_dir: Path | None,
                 as_json: bool) -> None:
    """Give USERNAME an instance ROLE (admin, moderator) or take it (none); without
    arguments, list who holds a role.

    Admins may delete and correct anyone's data, give roles and see the whole audit log;
    moderators work the report queue.
    """
    if username is not None and role is None:
        raise click.UsageError("give a ROLE: admin, moderator or none")

    async def run(store: Any) -> Any:
        if username is not None:
            await governance.set_role(store, None, username, None if role == "none" else role)
        return await store.users_with_roles()

    holders = _run(data_dir, run)
    if as_json:
        click.echo(json.dumps({"roles": [{"id": str(i), "username": n, "role": r}
                                         for i, n, r in holders]}))
        return
    if username is not None:
        click.echo(f"{username}: {role}")
    for _, name, held in holders:
        click.echo(f"{name:<24} {held}")


@click.command("org-member")
@click.argument("slug")
@click.argument("username")
@click.option("--role", type=click.Choice(ORGANIZATION_ROLES), default="member",
              show_default=True)
@click.option("--remove", is_flag=True, help="Remove the member instead.")
@_data_dir
def org_member_command(slug: str, username: str, role: str, remove: bool,
                       data_dir: Path | None) -> None:
    """Add USERNAME to organization SLUG as ROLE (at once, no invitation), change their
    role, or --remove them."""

    async def run(store: Any) -> str:
        org_id = await store.get_organization_by_slug(slug)
        if org_id is None:
            raise click.ClickException(f"no organization {slug!r}")
        if remove:
            user = await store.get_user_by_username(username)
            if user is None:
                raise click.ClickException(f"no user {username!r}")
            await governance.remove_member(store, None, org_id, user.id)
            return f"removed {username} from {slug}"
        saved = await governance.invite(store, None, org_id, username, role)
        return f"{username} is now {saved.role} of {slug}"

    click.echo(_run(data_dir, run))


@click.command("audit")
@click.option("--actor", default=None, help="Only this user's actions (username).")
@click.option("--target", default=None, metavar="KIND:ID",
              help="Only actions on this target, e.g. image:123 or sequence:abc.")
@click.option("--limit", type=int, default=50, show_default=True)
@_data_dir
@_json
def audit_command(actor: str | None, target: str | None, limit: int, data_dir: Path | None,
                  as_json: bool) -> None:
    """Show the audit log, newest first: who did what to which data, and when."""
    wanted = None
    if target is not None:
        kind, _, ident = target.partition(":")
        if not kind or not ident:
            raise click.UsageError("--target is KIND:ID, e.g. image:123")
        wanted = (kind, ident)

    async def run(store: Any) -> Any:
        actor_id = None
        if actor is not None:
            user = await store.get_user_by_username(actor)
            if user is None:
                raise click.ClickException(f"no user {actor!r}")
            actor_id = user.id
        return await store.audit_entries(actor_id=actor_id, target=wanted,
                                         limit=max(1, min(limit, 10_000)))

    entries = _run(data_dir, run)
    if as_json:
        click.echo(json.dumps({"entries": [
            {"id": e.id, "at": e.at_ms, "actor": _who(e), "action": e.action,
             "target_kind": e.target_kind, "target_id": e.target_id,
             "organization_id": e.organization_id, "details": e.details} for e in entries]}))
        return
    for e in entries:
        click.echo(f"{_when(e.at_ms)}  {_who(e):<16} {e.action:<24} {e.target_kind} "
                   f"{e.target_id}  {json.dumps(e.details, sort_keys=True)}")


def _who(e: AuditEntry) -> str:
    return e.actor_username or ("operator" if e.actor_id is None else str(e.actor_id))


@click.command("reports")
@click.option("--status", type=click.Choice(["open", "resolved", "all"]), default="open",
              show_default=True)
@click.option("--resolve", "report_id", type=int, default=None,
              help="Resolve this report with --action.")
@click.option("--action", type=click.Choice(governance.RESOLUTIONS), default=None,
              help="dismiss: keep the image; delete: delete it.")
@_data_dir
def reports_command(status: str, report_id: int | None, action: str | None,
                    data_dir: Path | None) -> None:
    """List reported images, or resolve one (--resolve ID --action dismiss|delete)."""
    if (report_id is None) != (action is None):
        raise click.UsageError("--resolve and --action go together")

    async def run(store: Any) -> list[str]:
        if report_id is not None and action is not None:
            done = await governance.resolve(store, None, report_id, action)
            return [f"report {r.id}: {r.resolution}" for r in done]
        found = await governance.queue(store, None, status=None if status == "all"
                                       else status, limit=1000)
        return [f"{r.id:>6}  {_when(r.created_at_ms)}  image {r.image_id}  {r.reason:<15}"
                f" {r.status}{' (' + str(r.resolution) + ')' if r.resolution else ''}"
                f"  {r.comment}" for r in found]

    for line in _run(data_dir, run):
        click.echo(line)


@click.command("close-account")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do it (without it, only say what would go).")
@_data_dir
def close_account_command(username: str, yes: bool, data_dir: Path | None) -> None:
    """Close USERNAME's account: every image they uploaded (blobs included), their data
    exports and apps, then the account."""
    from wayview.cli import make_settings

    settings = make_settings(data_dir)

    async def run(store: Any) -> str:
        from wayview.blobs import open_blobs
        from wayview.pipeline.delete import DELETE_JOB, images_of
        from wayview.pipeline.export import discard_exports
        from wayview.pipeline.worker import JobRunner

        user = await store.get_user_by_username(username)
        if user is None:
            raise click.ClickException(f"no user {username!r}")
        if not yes:
            count = len(await images_of(store, username=user.username))
            return f"would delete {username} and {count} images (add --yes)"
        blobs = open_blobs(settings)
        report, _ = await governance.close_account(store, None, user.id)
        await discard_exports(store, blobs, user.id)
        await JobRunner(settings, store, blobs, kinds=(DELETE_JOB,)).drain()
        return f"closed {username}'s account: {report.images} images deleted"

    click.echo(_run(data_dir, run))


#: name → command, added to the `wayview` group.
COMMANDS: dict[str, click.Command] = {
    "role": role_command,
    "org-member": org_member_command,
    "audit": audit_command,
    "reports": reports_command,
    "close-account": close_account_command,
}
