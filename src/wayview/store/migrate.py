"""wayview.store.migrate: ordered `NNNN_name.sql` resources, applied once each, recorded."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib import resources

log = logging.getLogger("wayview.store")

_NAME_RE = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step."""

    version: int
    name: str
    sql: str


def load_migrations(package: str) -> list[Migration]:
    """The migrations shipped in `package` (a `migrations` folder), ordered by version.

    >>> [m.version for m in load_migrations("wayview.store.sqlite")][:1]
    [1]
    """
    folder = resources.files(package).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _NAME_RE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {package}: {versions}")
    return found


def report_outcome(backend: str, done: Collection[int], applied: Sequence[Migration],
                   shipped: Sequence[Migration]) -> str:
    """Log (and return) the one line saying what opening a store did to its schema: `done`
    were the versions applied before, `applied` the migrations applied now.

    >>> m = load_migrations("wayview.store.sqlite")
    >>> report_outcome("sqlite", {1}, m[1:3], m)
    'store schema: sqlite version 1 → 3 (2 migrations applied)'
    >>> report_outcome("sqlite", {1}, [], m[:1])
    'store schema up to date (sqlite version 1)'
    """
    before = max(done, default=0)
    if applied:
        after = max(before, max(mig.version for mig in applied))
        count = len(applied)
        line = (f"store schema: {backend} version {before} → {after} ({count} migration"
                f"{'' if count == 1 else 's'} applied)")
    else:
        line = f"store schema up to date ({backend} version {before})"
    log.info("%s", line)
    unknown = sorted(set(done) - {mig.version for mig in shipped})
    if unknown:
        log.warning("store schema: migrations %s were applied by a newer wayview; this one "
                    "knows up to version %d", ", ".join(map(str, unknown)),
                    max((mig.version for mig in shipped), default=0))
    return line
