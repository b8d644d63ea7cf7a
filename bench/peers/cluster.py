"""A PostgreSQL + PostGIS cluster kept under bench/.data/ between runs (loading 1 M images into
three databases takes minutes, so the data must survive the process).

The binaries and the URL format are those of tests/pg_server.py (Debian's postgresql-15 and
postgresql-15-postgis-3, a unix socket, no TCP); unlike `pg_server()` the data folder is kept.
As root, the server runs as the `postgres` user through `setpriv`, in a folder it owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from pg_server import _bindir, _has_postgis, database_url  # noqa: E402

SERVER_USER = "postgres"
#: Production-like settings for a 2-core, 23 GiB VM (one cluster for every PostgreSQL-backed
#: server under test). fsync stays off like tests/pg_server.py: the bench only reads.
SETTINGS = {
    "listen_addresses": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "2GB",
    "effective_cache_size": "8GB",
    "work_mem": "16MB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "8GB",
    "jit": "off",
    "max_parallel_workers_per_gather": "0",
}


class Cluster:
    """`initdb` once into `root/data`, start on a unix socket in `root`, stop on exit."""

    def __init__(self, root: Path, log: object = print) -> None:
        self.root = root
        self.data = root / "data"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.prefix: list[str] = []
        self.owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self.owner = pwd.getpwnam(SERVER_USER)
            self.prefix = ["setpriv", f"--reuid={self.owner.pw_uid}",
                           f"--regid={self.owner.pw_gid}", "--init-groups", "--"]
        bindir = _bindir()
        if bindir is None or not _has_postgis(bindir):
            raise RuntimeError("PostgreSQL 15 + PostGIS 3 needed: apt-get install postgresql-15 "
                               "postgresql-15-postgis-3")
        self.bindir = bindir

    def url(self, dbname: str) -> str:
        """The `postgresql://` URL of database `dbname` (unix socket, trust auth)."""
        return database_url(self.root, dbname)

    def __enter__(self) -> Cluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.owner is not None:
            os.chown(self.root, self.owner.pw_uid, self.owner.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            shutil.rmtree(self.data, ignore_errors=True)
            done = subprocess.run(
                [*self.prefix, str(self.bindir / "initdb"), "-D", str(self.data), "-U",
                 SERVER_USER, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
                 "--no-instructions"], capture_output=True, text=True, check=False,
                cwd=self.root)
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
        stale = self.data / "postmaster.pid"
        if stale.exists():  # a previous run was killed: is its server still alive?
            try:
                pid = int(stale.read_text().split()[0])
                os.kill(pid, 0)
                raise RuntimeError(f"a postgres (pid {pid}) already runs on {self.data}")
            except (ProcessLookupError, ValueError):
                stale.unlink()
        opts = [x for k, v in SETTINGS.items() for x in ("-c", f"{k}={v}")]
        with open(self.root / "server.log", "ab") as out:
            self.proc = subprocess.Popen(
                [*self.prefix, str(self.bindir / "postgres"), "-D", str(self.data), "-k",
                 str(self.root), *opts], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(self.url("postgres"), autocommit=True,
                                     connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("postgres did not start: " + (
                        self.root / "server.log").read_text(errors="replace")[-2000:]) from None
                time.sleep(0.1)
        with psycopg.connect(self.url("template1"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        return self

    def pids(self) -> list[int]:
        """The postmaster and every backend (their CPU is the database's share of a run)."""
        if self.proc is None:
            return []
        return [self.proc.pid, *descendants(self.proc.pid)]

    def version(self) -> str:
        """`PostgreSQL 15.x` and the PostGIS version."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            pg = conn.execute("SHOW server_version").fetchone()[0]
        with psycopg.connect(self.url("template1"), autocommit=True) as conn:
            gis = conn.execute("SELECT postgis_lib_version()").fetchone()[0]
        return f"PostgreSQL {pg}, PostGIS {gis}"

    def database_exists(self, name: str) -> bool:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (name,)).fetchone() is not None

    def fingerprint(self, name: str) -> str | None:
        """The fingerprint a finished load left as the database's comment, if any."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE datname = %s", (name,)).fetchone()
        return row[0] if row else None

    def recreate(self, name: str) -> None:
        """Drop (if present) and create an empty database `name` (PostGIS from template1)."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')

    def mark_loaded(self, name: str, fingerprint: str) -> None:
        """Record a finished load (checked by `fingerprint` on the next run)."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{fingerprint}'")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc, recursively)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out
