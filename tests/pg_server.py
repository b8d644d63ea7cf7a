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
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


def _initdb(prefix: list[str], bindir: Path, data: Path, root: Path) -> None:
    """A new cluster in `data` (trust auth, UTF-8, C locale, no fsync)."""
    initdb = subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", _SERVER_USER,
         "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
        capture_output=True, text=True, check=False, cwd=root)
    if initdb.returncode != 0:
        raise RuntimeError(f"initdb failed: {initdb.stdout}{initdb.stderr}")


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
    prefix, owner = _server_prefix()
    # A short path of our own (not pytest's tmp_path): unix socket paths are limited to 107
    # bytes, and pytest's root-owned 0700 folders are closed to the server user.
    root = Path(tempfile.mkdtemp(prefix="wayview-pg-", dir=_scratch_dir()))
    data = root / "data"
    proc: subprocess.Popen[bytes] | None = None
    try:
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        log = root / "server.log"
        _initdb(prefix, bindir, data, root)
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


# -- a primary and a streaming replica on loopback (issue 21) -------------------------------

#: The role the replica streams WAL as (pg_hba lets it in from loopback only).
REPLICATION_USER = "replicator"


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_prefix() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that runs the server tools as `_SERVER_USER` when we are root
    (initdb refuses root), and that user; skips (or fails on CI) when that is impossible."""
    if os.geteuid() != 0:
        return [], None
    try:
        owner = pwd.getpwnam(_SERVER_USER)
    except KeyError:
        _unavailable(f"running as root and there is no {_SERVER_USER!r} user to run the server")
    if shutil.which("setpriv") is None:
        _unavailable("running as root and setpriv (util-linux) is missing")
    return ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups",
            "--"], owner


def tcp_url(port: int, dbname: str = DATABASE) -> str:
    """The URL of database `dbname` on the loopback server at `port`."""
    return f"postgresql://{_SERVER_USER}@127.0.0.1:{port}/{quote(dbname)}"


@dataclass
class StreamingPair:
    """A primary and its hot standby (streaming replication), both on 127.0.0.1."""

    primary_url: str
    replica_url: str
    replica_port: int
    _pg_ctl: list[str]
    _replica_data: Path
    _replica_log: Path
    _replica_options: str

    def url(self, dbname: str, *, replica: bool = False) -> str:
        """The primary's (or the replica's) URL of database `dbname`."""
        return with_database(self.replica_url if replica else self.primary_url, dbname)

    def stop_replica(self) -> None:
        """`pg_ctl stop -m immediate`: the replica vanishes at once (its clients see a
        dropped connection, new ones are refused)."""
        subprocess.run([*self._pg_ctl, "-D", str(self._replica_data), "-m", "immediate",
                        "stop"], capture_output=True, check=True, timeout=30)

    def start_replica(self) -> None:
        """Start the replica again and wait until it accepts connections (hot standby)."""
        _pg_ctl_start(self._pg_ctl, self._replica_data, self._replica_log,
                      self._replica_options)

    def wait_replayed(self, timeout_s: float = 30.0) -> None:
        """Wait until the replica has replayed everything the primary has written."""
        with psycopg.connect(self.primary_url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        deadline = time.monotonic() + timeout_s
        with psycopg.connect(self.replica_url, autocommit=True) as conn:
            while True:
                done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                    (row[0],)).fetchone()
                if done and done[0]:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("the replica did not catch up with the primary")
                time.sleep(0.01)


def _pg_ctl_start(pg_ctl: list[str], data: Path, log: Path, options: str) -> None:
    started = subprocess.run(
        [*pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
        capture_output=True, text=True, check=False, timeout=90)
    if started.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {started.stdout}{started.stderr}{tail}")


@contextmanager
def pg_streaming_pair() -> Iterator[StreamingPair]:
    """Start a primary (`wal_level=replica`, a `replicator` role with a pg_hba line) with
    PostGIS in `template1` and a database `wayview`, clone it with `pg_basebackup -R` and
    start the clone as a hot standby on another port; yield both; stop and delete them."""
    bindir = _bindir()
    if bindir is None:
        _unavailable("PostgreSQL server binaries (initdb, postgres) not found")
    if not _has_postgis(bindir):
        _unavailable(f"PostGIS is not installed for the PostgreSQL server in {bindir}")
    if not (bindir / "pg_basebackup").exists():
        _unavailable(f"pg_basebackup is not installed in {bindir}")
    prefix, owner = _server_prefix()
    root = Path(tempfile.mkdtemp(prefix="wayview-pgr-", dir=_scratch_dir()))
    primary, replica = root / "primary", root / "replica"
    pg_ctl = [*prefix, str(bindir / "pg_ctl")]
    running: list[Path] = []
    try:
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        _initdb(prefix, bindir, primary, root)
        with open(primary / "pg_hba.conf", "a", encoding="utf-8") as hba:
            hba.write(f"host replication {REPLICATION_USER} 127.0.0.1/32 trust\n")
        common = (f"-c listen_addresses=127.0.0.1 -k {root} -c fsync=off "
                  "-c synchronous_commit=off -c max_connections=100 -c shared_buffers=32MB")
        primary_port, replica_port = _free_port(), _free_port()
        _pg_ctl_start(pg_ctl, primary, root / "primary.log",
                      f"{common} -c port={primary_port} -c wal_level=replica "
                      "-c max_wal_senders=4")
        running.append(primary)
        with psycopg.connect(tcp_url(primary_port, "template1"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")
            conn.execute(f"CREATE ROLE {REPLICATION_USER} WITH REPLICATION LOGIN")
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        backup = subprocess.run(
            [*prefix, str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary_port),
             "-U", REPLICATION_USER, "-D", str(replica), "-R", "-X", "stream", "-c", "fast",
             "--no-sync"], capture_output=True, text=True, check=False, cwd=root, timeout=120)
        if backup.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed: {backup.stdout}{backup.stderr}")
        replica_options = f"{common} -c port={replica_port} -c hot_standby=on"
        pair = StreamingPair(tcp_url(primary_port), tcp_url(replica_port), replica_port, pg_ctl,
                             replica, root / "replica.log", replica_options)
        pair.start_replica()
        running.append(replica)
        pair.wait_replayed()
        yield pair
    finally:
        for data in reversed(running):
            subprocess.run([*pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, check=False, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
