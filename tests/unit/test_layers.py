"""Layering rules (STYLE §4 rule 2): only api/ imports the web framework, only store/ touches SQL."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "wayview"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_layers_framework_and_driver_imports_stay_in_their_packages():
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        mods = imported_modules(path)
        if any(m.split(".")[0] in ("starlette", "granian") for m in mods) and not (
            rel.startswith("api/") or rel in ("server.py",)
        ):
            offenders.append(f"{rel} imports the web framework")
        if "sqlite3" in mods and not rel.startswith(("store/sqlite/",)):
            offenders.append(f"{rel} imports sqlite3")
        if rel.startswith("model/") and any(
            m.startswith("wayview.")
            and not m.startswith(("wayview.model", "wayview.errors", "wayview.ids"))
            for m in mods
        ):
            offenders.append(f"{rel}: model/ must not import services or storage")
        if rel.startswith("store/"):
            services = ("wayview.api", "wayview.graph", "wayview.ingest", "wayview.pipeline",
                        "wayview.auth", "wayview.tiles")
            pure_tiles = ("wayview.tiles.index", "wayview.tiles.tilemath", "wayview.tiles.geometry")
            for m in mods:
                if m.startswith(services) and not m.startswith(pure_tiles):
                    offenders.append(f"{rel} imports the service {m}")
    assert offenders == []
