"""wayview.cli_check: `wayview check`, the hardening checklist of the settings in effect
(docs/production.md), registered by wayview.cli."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("check")
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Data folder (database and blobs). Default: $WAYVIEW_DATA_DIR or ./wayview-data.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check_command(data_dir: Path | None, as_json: bool) -> None:
    """Check the settings (environment, .env, options) for what is open or risky on a server
    others can reach: plain HTTP, a proxy whose clients all look alike, open sign-up, CORS and
    embedding for any site, an open /metrics, a missing shared secret.

    Prints one line per finding with its fix; exits 1 when there is a warning (fix it before
    going public), 0 when there are only notes (choices to make knowingly) or nothing."""
    from wayview.hardening import findings, is_exposed
    from wayview.settings import Settings

    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    found = findings(settings)
    warnings = [f for f in found if f.level == "warning"]
    if as_json:
        click.echo(json.dumps({
            "exposed": is_exposed(settings),
            "findings": [{"level": f.level, "setting": f.setting, "problem": f.problem,
                          "fix": f.fix} for f in found]}))
    else:
        where = ("reachable by others" if is_exposed(settings)
                 else "on loopback only (local use)")
        click.echo(f"wayview at {settings.base_url}, {where}: "
                   f"{len(warnings)} warning(s), {len(found) - len(warnings)} note(s)")
        for finding in found:
            click.echo(f"  {finding.line()}")
    if warnings:
        raise SystemExit(1)


COMMANDS: dict[str, click.Command] = {"check": check_command}
