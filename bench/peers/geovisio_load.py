"""Load the wayview dataset (already in PostgreSQL through `wayview migrate-store`) into a
Panoramax (GeoVisio) database, rows only: no picture files.

The rows are what GeoVisio's own upload path leaves once its worker has prepared every picture
and finalized every sequence (read from geovisio 2.15.1: `utils.pictures.
insertNewPictureInDatabase`, `utils.sequences.finalize`, the SQL migrations):

1. the schema: `flask --app geovisio db upgrade` (GeoVisio's own migrations);
2. `accounts` (one per wayview user), `sequences` (status `waiting-for-process`, like a fresh
   upload), `pictures` (status `ready`, `preparing_status = 'prepared'`, the lighter metadata
   JSON their upload code stores: type, make, model, width, height, field_of_view, original file
   name/size, tz, and the tiling (cols, rows) of equirectangular pictures; geometry, ts,
   heading, GPS accuracy; their triggers compute
   `h_pixel_density` and queue a `prepare` job, which is then removed as their worker would),
   `sequences_pictures` (rank in capture order; their deferred trigger counts pictures and
   min/max ts per sequence);
3. GeoVisio's own `utils.sequences.finalize()` for every sequence (run in GeoVisio's virtualenv:
   headings, status `ready`, geometry, bbox, computed fields);
4. `flask --app geovisio db refresh --full` (their CLI) for the z0–6 grid; VACUUM ANALYZE.

Ids are deterministic (`md5(<kind><wayview id>)::uuid`) so request paths can be made from
wayview ids: `geovisio_uuid("img", 4000000000001001)`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

LOADER_VERSION = 2


def geovisio_uuid(kind: str, wayview_id: int | str) -> str:
    """The GeoVisio uuid of a wayview id (`kind`: img, seq, usr), as the loader makes it."""
    return str(uuid.UUID(hashlib.md5(f"{kind}{wayview_id}".encode()).hexdigest()))


PICTURES_SELECT = """
COPY (
  SELECT md5('img' || i.id)::uuid, 'ready', to_timestamp(i.captured_at_ms / 1000.0),
         round(i.compass_angle_deg)::int % 360,
         jsonb_build_object(
           'type', CASE WHEN i.is_pano THEN 'equirectangular' ELSE 'flat' END,
           'make', i.make, 'model', i.model, 'width', i.width, 'height', i.height,
           'field_of_view', CASE WHEN i.is_pano THEN 360 ELSE 70 END,
           'originalFileName', i.id || '.jpg', 'originalFileSize', i.width * i.height / 4,
           'tz', 'UTC')
         || CASE WHEN i.is_pano THEN jsonb_build_object('cols', t.cols, 'rows', t.cols / 2)
                 ELSE '{}'::jsonb END,
         i.geom, md5('usr' || i.creator_id)::uuid,
         to_timestamp(i.created_at_ms / 1000.0), to_timestamp(i.created_at_ms / 1000.0),
         'prepared', '{}'::jsonb, 4.0, 'anyone', to_timestamp(i.created_at_ms / 1000.0)
  FROM images i,
       -- equirectangular pictures keep their tiling (cols, rows), as their getTileSize makes it
       LATERAL (SELECT CASE WHEN k >= 64 THEN 64 WHEN k >= 32 THEN 32 WHEN k >= 16 THEN 16
                            WHEN k >= 8 THEN 8 ELSE 4 END AS cols
                FROM (SELECT greatest(least(i.width / 512 / 2 * 2, 64), 4) AS k) kk) t
) TO STDOUT
"""
PICTURES_COPY = """
COPY pictures (id, status, ts, heading, metadata, geom, account_id, inserted_at, processed_at,
               preparing_status, exif, gps_accuracy_m, visibility, updated_at) FROM STDIN
"""
SEQUENCES_SELECT = """
COPY (
  SELECT md5('seq' || s.id)::uuid, 'waiting-for-process', jsonb_build_object('title', s.id),
         md5('usr' || s.creator_id)::uuid, to_timestamp(s.created_at_ms / 1000.0), 'anyone'
  FROM sequences s
) TO STDOUT
"""
SEQUENCES_COPY = """
COPY sequences (id, status, metadata, account_id, inserted_at, visibility) FROM STDIN
"""
LINKS_SELECT = """
COPY (
  SELECT md5('seq' || sequence_id)::uuid,
         row_number() OVER (PARTITION BY sequence_id ORDER BY captured_at_ms, id),
         md5('img' || id)::uuid
  FROM images
) TO STDOUT
"""
LINKS_COPY = "COPY sequences_pictures (seq_id, rank, pic_id) FROM STDIN"
ACCOUNTS_SELECT = """
COPY (SELECT md5('usr' || id)::uuid, username, to_timestamp(created_at_ms / 1000.0)
      FROM users) TO STDOUT
"""
ACCOUNTS_COPY = "COPY accounts (id, name, created_at) FROM STDIN"

FINALIZE_SCRIPT = """
import sys, time, psycopg
from geovisio.utils.sequences import finalize
url = sys.argv[1]
with psycopg.connect(url) as conn:
    ids = [r[0] for r in conn.execute("SELECT id FROM sequences WHERE status <> 'ready'")]
    started = time.monotonic()
    for k, seq in enumerate(ids, 1):
        with conn.cursor() as cur:
            finalize(cur, seq)
        conn.commit()
        if k % 500 == 0:
            print(f"  finalized {k:,}/{len(ids):,} sequences in "
                  f"{time.monotonic() - started:.0f} s", flush=True)
"""


def _stream(src: psycopg.Connection, dst: psycopg.Connection, select: str, copy: str) -> None:
    with src.cursor() as cin, dst.cursor() as cout:
        with cin.copy(select) as reader, cout.copy(copy) as writer:
            for chunk in reader:
                writer.write(chunk)


def load(wayview_url: str, geovisio_url: str, venv: Path, workdir: Path,
         log: Callable[[str], None] = print) -> dict[str, float]:
    """Fill the empty database at `geovisio_url` from wayview's PostgreSQL database."""
    phases: dict[str, float] = {}
    env = {**os.environ, "DB_URL": geovisio_url, "FS_URL": str(workdir / "fs"),
           "API_LOG_LEVEL": "warning"}
    (workdir / "fs").mkdir(parents=True, exist_ok=True)
    flask = str(venv / "bin" / "flask")

    t = time.monotonic()
    subprocess.run([flask, "--app", "geovisio", "db", "upgrade"], env=env, cwd=workdir,
                   check=True, capture_output=True)
    phases["schema (their migrations)"] = time.monotonic() - t

    t = time.monotonic()
    with psycopg.connect(wayview_url) as src, psycopg.connect(geovisio_url) as dst:
        _stream(src, dst, ACCOUNTS_SELECT, ACCOUNTS_COPY)
        _stream(src, dst, SEQUENCES_SELECT, SEQUENCES_COPY)
        dst.commit()
        log("  geovisio: copying pictures …")
        _stream(src, dst, PICTURES_SELECT, PICTURES_COPY)
        dst.commit()
        phases["accounts, sequences, pictures"] = time.monotonic() - t
        t = time.monotonic()
        log("  geovisio: linking pictures to sequences …")
        _stream(src, dst, LINKS_SELECT, LINKS_COPY)
        dst.commit()  # their deferred per-row trigger runs here
        dst.execute("DELETE FROM job_queue WHERE task = 'prepare'")
        dst.commit()
        phases["sequences_pictures"] = time.monotonic() - t

    t = time.monotonic()
    log("  geovisio: finalizing sequences with geovisio.utils.sequences.finalize …")
    subprocess.run([str(venv / "bin" / "python"), "-c", FINALIZE_SCRIPT, geovisio_url],
                   env=env, cwd=workdir, check=True)
    phases["finalize (their code)"] = time.monotonic() - t

    t = time.monotonic()
    subprocess.run([flask, "--app", "geovisio", "db", "refresh", "--full"], env=env,
                   cwd=workdir, check=True, capture_output=True)
    with psycopg.connect(geovisio_url, autocommit=True) as conn:
        conn.execute("DELETE FROM job_queue")
        conn.execute("VACUUM ANALYZE")
    phases["grid + vacuum"] = time.monotonic() - t
    return phases
