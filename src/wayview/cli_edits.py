"""wayview.cli_edits: command-line commands (issue #17), registered by wayview.cli."""

from __future__ import annotations

import click

#: name → command, added to the `wayview` group.
COMMANDS: dict[str, click.Command] = {}
