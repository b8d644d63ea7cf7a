"""The docs keep up with the code: every setting and every CLI command is documented.

A new setting (at any depth of `wayview.settings.Settings`) must appear in
docs/configuration.md, a new command of `wayview.cli.cli` in docs/cli.md, and the generated
parts of both must be current: run `make docs` (or `python docs/gen_docs.py`) after a change.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import click
import pytest
from pydantic import BaseModel

from wayview.cli import cli
from wayview.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _leaf_settings(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaf_settings(annotation, (*prefix, name))
        else:
            yield (*prefix, name)


def _command_paths(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _command_paths(sub, (*path, name))


def _gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wayview_gen_docs", DOCS / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # @dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


SETTINGS = sorted(_leaf_settings(Settings))
COMMANDS = sorted(_command_paths(cli))


def test_the_walks_see_nested_settings_and_sub_commands() -> None:
    assert ("search", "max_bbox_area_deg2") in SETTINGS
    assert ("users", "create") in COMMANDS and ("serve",) in COMMANDS


@pytest.mark.parametrize("path", SETTINGS, ids=".".join)
def test_every_setting_is_in_configuration_md(path: tuple[str, ...]) -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    env = "WAYVIEW_" + "__".join(p.upper() for p in path)
    assert f"`{'.'.join(path)}`" in text, f"setting {'.'.join(path)} missing: run `make docs`"
    assert f"`{env}`" in text, f"{env} missing from docs/configuration.md: run `make docs`"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(("wayview", *p)))
def test_every_command_is_in_cli_md(path: tuple[str, ...]) -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    title = " ".join(("wayview", *path))
    assert f"## `{title}`\n" in text, f"{title} missing from docs/cli.md: run `make docs`"


@pytest.mark.parametrize("name", ["cli.md", "configuration.md"])
def test_generated_docs_are_current(name: str) -> None:
    expected = {path.name: text for path, text in _gen_docs().targets().items()}[name]
    actual = (DOCS / name).read_text(encoding="utf-8")
    assert actual == expected, f"docs/{name} is out of date: run `make docs`"


def test_readme_links_the_reference_docs() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/configuration.md" in readme and "docs/cli.md" in readme
