"""A throwaway PostgreSQL + PostGIS server for tests (Debian's `postgresql-15` and
`postgresql-15-postgis-3`), on a unix socket in a temp dir, without TCP and without fsync.

initdb refuses to run as root: when the tests run as root, the server runs as the `postgres`
user (created by the Debian package) through `setpriv`, in a temp dir it owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

#: The database every URL this module yields points at; `postgis` is installed in `template1`
#: first, so it and every database created later have the extension.
DATABASE = "wayview"
_SERVER_USER = "postgres"


def _bindir() -> Path | None:
    """The folder holding initdb and postgres: $PATH first (symlinks followed, so that
    pg_config and the extension folder match), else the newest Debian install."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    return versions[-1].parent if versions else None


def _unavailable(reason: str) -> NoReturn:
    """Skip (developer machine) or fail (CI, where .ci/run installs the server)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (.ci/run installs postgresql-15 and postgresql-15-postgis-3)")
    pytest.skip(f"{reason}: apt-get install postgresql-15 postgresql-15-postgis-3")


def _has_postgis(bindir: Path) -> bool:
    """Whether PostGIS is installed for the server in `bindir`."""
    share = bindir.parent / "share"
    try:
        found = subprocess.run([str(bindir / "pg_config"), "--sharedir"], capture_output=True,
                               text=True, check=False)
        if found.returncode == 0:
            share = Path(found.stdout.strip())
    except OSError:  # no pg_config beside the server: Debian's layout is the fallback
        share = Path("/usr/share/postgresql") / bindir.parent.name
    return (share / "extension" / "postgis.control").exists()


def _scratch_dir() -> str | None:
    """Where the cluster lives: tmpfs (/dev/shm) when it has room, as cloning a database per
    test there costs ~30 ms instead of ~300 ms on disk; else the default temp folder."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= 2**30:
            return str(shm)
    except OSError:
        pass
    return None


def database_url(socket_dir: Path, dbname: str) -> str:
    """The `postgresql://` URL of database `dbname` on the server listening in `socket_dir`."""
    return f"postgresql://{_SERVER_USER}@/{quote(dbname)}?host={quote(str(socket_dir))}"


def with_database(url: str, dbname: str) -> str:
    """`url` (as yielded by `pg_server`) pointing at database `dbname` instead.

    >>> with_database("postgresql://postgres@/wayview?host=/tmp/x", "t_1")
    'postgresql://postgres@/t_1?host=/tmp/x'
    """
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(dbname)))


@contextmanager
def pg_server() -> Iterator[str]:
    """Start a fresh cluster (initdb), install PostGIS in `template1`, create the database
    `wayview`; yield its URL (`with_database` points it at another); stop and delete it.
    """
    bindir = _bindir()
    if bindir is None:
        _unavailable("PostgreSQL server binaries (initdb, postgres) not found")
    if not _has_postgis(bindir):
        _unavailable(f"PostGIS is not installed for the PostgreSQL server in {bindir}")
    prefix: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(_SERVER_USER)
        except KeyError:
            _unavailable(f"running as root and there is no {_SERVER_USER!r} user to run the server")
        if shutil.which("setpriv") is None:
            _unavailable("running as root and setpriv (util-linux) is missing")
        prefix = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}",
                  "--init-groups", "--"]
    # A short path of our own (not pytest's tmp_path): unix socket paths are limited to 107
    # bytes, and pytest's root-owned 0700 folders are closed to the server user.
    root = Path(tempfile.mkdtemp(prefix="wayview-pg-", dir=_scratch_dir()))
    data = root / "data"
    proc: subprocess.Popen[bytes] | None = None
    try:
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        log = root / "server.log"
        initdb = subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", _SERVER_USER,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, check=False, cwd=root)
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stdout}{initdb.stderr}")
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*prefix, str(bindir / "postgres"), "-D", str(data), "-k", str(root),
                 "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200",
                 "-c", "shared_buffers=64MB"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root,
                start_new_session=True)
        admin = database_url(root, "postgres")
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "postgres did not start: " + log.read_text(errors="replace")[-2000:]
                    ) from None
                time.sleep(0.05)
        with psycopg.connect(database_url(root, "template1"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        yield database_url(root, DATABASE)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: disconnects clients
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
