"""wayview.demo.command: `wayview demo`: build the demo city once, print a banner, serve it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import click

from wayview.demo.build import DemoInfo, DemoProgress, build_demo
from wayview.errors import WayviewError
from wayview.settings import Settings
from wayview.store.base import Store

__all__ = ["MARKER_FILE", "TOKEN_FILE", "demo_banner", "demo_command", "prepare_demo"]

#: Written into the data dir after a complete build; its presence means "reuse, don't rebuild".
MARKER_FILE = "demo.json"
#: The plain demo client token (mode 0600), so that every run prints the same one.
TOKEN_FILE = "demo-token.txt"
_BANNER_TILE_ZOOM = 14


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by the owner only (created 0600, then renamed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


async def _demo_token(store: Store, data_dir: Path) -> str:
    """The demo client token: read from `TOKEN_FILE`, or issued once and saved there."""
    path = data_dir / TOKEN_FILE
    if path.is_file():
        saved = path.read_text(encoding="utf-8").strip()
        if saved:
            return saved
    from wayview.auth.tokens import ensure_demo_token

    token: str = await ensure_demo_token(store)
    _write_private(path, token + "\n")
    return token


async def prepare_demo(
    settings: Settings,
    *,
    images: int,
    seed: int,
    with_token: bool,
    progress: bool = False,
) -> tuple[DemoInfo, bool, str | None]:
    """Build the demo into `settings.data_dir` unless it is already there.

    Returns:
        (info, whether it was built now, the demo client token or None).

    Raises:
        click.ClickException: the data dir holds a database that is not a finished demo.
    """
    from wayview.blobs import open_blobs
    from wayview.store import open_store

    data_dir = settings.data_dir
    marker = data_dir / MARKER_FILE
    fresh = not marker.is_file()
    if fresh and settings.database_path.exists():
        raise click.ClickException(
            f"{data_dir} holds a database but no finished demo ({MARKER_FILE} is missing; an "
            "earlier build may have been interrupted). Delete the folder or pick another "
            "--data-dir."
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    await store.open()
    try:
        if fresh and await store.count_images() > 0:  # a PostgreSQL database in use
            raise click.ClickException(
                "the database already holds images but is not a finished demo: point "
                "database_url at an empty database (or remove it to use SQLite)."
            )
        if fresh:
            with contextlib.ExitStack() as stack:
                advance: DemoProgress | None = None
                if progress:
                    bar = stack.enter_context(
                        click.progressbar(
                            length=images, label="Building the demo city", file=sys.stderr
                        )
                    )

                    def advance(done: int, total: int) -> None:
                        bar.update(done - bar.pos)

                info = await build_demo(
                    store,
                    open_blobs(settings),
                    settings,
                    images=images,
                    seed=seed,
                    progress=advance,
                )
            _write_private(marker, info.to_json() + "\n")
        else:
            info = DemoInfo.from_json_dict(json.loads(marker.read_text(encoding="utf-8")))
        token = await _demo_token(store, data_dir) if with_token else None
    finally:
        await store.close()
    return info, fresh, token


def _tile_xy(lon: float, lat: float, zoom: int) -> tuple[int, int]:
    """The XYZ tile containing a point.

    >>> _tile_xy(13.191, 55.7047, 14)
    (8792, 5125)
    """
    n = 2**zoom
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def demo_banner(info: DemoInfo, base_url: str, token: str, data_dir: Path, *, built: bool) -> str:
    """The start banner: what is served, the token, and copy-paste curl examples."""
    west, south, east, north = info.bbox
    lon, lat = info.sample_image_lon_lat
    near = f"{lon - 0.004:.4f},{lat - 0.003:.4f},{lon + 0.004:.4f},{lat + 0.003:.4f}"
    tile_x, tile_y = _tile_xy(lon, lat, _BANNER_TILE_ZOOM)
    auth = f"access_token={token}"
    lines = [
        f"wayview demo: {info.image_count:,} images in {info.sequence_count} sequences "
        f"({info.pano_image_count:,} panoramic), {info.map_feature_count} map features, "
        f"{info.detection_count:,} detections",
        f"  users: {', '.join(info.users)}   organizations: {', '.join(info.organizations)}",
        f"  data:  {data_dir.resolve()} ({'built now' if built else 'reused'}; "
        "delete it to rebuild)",
        f"  bbox:  {west},{south},{east},{north}",
        "",
        f"  URL:   {base_url}",
        f"  token: {token}",
        "",
        "Try (quote the URLs: the token contains '|'):",
        "",
        "  # one image",
        f"  curl '{base_url}/{info.sample_image_id}"
        f"?fields=id,geometry,captured_at,compass_angle,sequence,creator,thumb_1024_url&{auth}'",
        "",
        "  # images in a bounding box",
        f"  curl '{base_url}/images?bbox={near}&limit=5"
        f"&fields=id,geometry,captured_at,is_pano&{auth}'",
        "",
        "  # the images of a sequence, in capture order",
        f"  curl '{base_url}/image_ids?sequence_id={info.sample_sequence_id}&{auth}'",
    ]
    if info.sample_map_feature_id is not None:
        lines += [
            "",
            "  # a map feature, and where it was detected",
            f"  curl '{base_url}/{info.sample_map_feature_id}"
            f"?fields=id,object_value,object_type,geometry,first_seen_at,last_seen_at,images&{auth}'",
            f"  curl '{base_url}/{info.sample_map_feature_id}/detections"
            f"?fields=id,value,created_at,image&{auth}'",
        ]
    lines += [
        "",
        "  # a vector tile (Mapbox Vector Tile, zoom 14)",
        f"  curl -o tile.mvt '{base_url}/maps/vtp/mly1_public/2/{_BANNER_TILE_ZOOM}/"
        f"{tile_x}/{tile_y}?{auth}'",
        "",
    ]
    return "\n".join(lines)


@click.command("demo")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("wayview-demo"),
    show_default=True,
    help="Folder for the demo's database and images; built once, then reused.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--images",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="How many images to generate (only when building).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Varies the demo city.")
@click.option(
    "--build-only", is_flag=True, help="Build (or reuse), print the summary as JSON, exit."
)
def demo_command(
    data_dir: Path, host: str, port: int, images: int, seed: int, build_only: bool
) -> None:
    """Serve a generated demo city: users, organizations, sequences, map features."""
    values: dict[str, Any] = {"data_dir": data_dir, "host": host, "port": port}
    settings = Settings(**values)
    from wayview.server import check_port, run_server

    try:
        if not build_only:
            check_port(settings.host, settings.port)  # before a build of a minute or more
        info, built, token = asyncio.run(
            prepare_demo(
                settings, images=images, seed=seed, with_token=not build_only, progress=True
            )
        )
    except WayviewError as exc:
        raise click.ClickException(exc.message) from None
    if build_only:
        click.echo(info.to_json())
        return
    assert token is not None
    click.echo(demo_banner(info, settings.base_url, token, data_dir, built=built))
    try:
        run_server(settings)
    except WayviewError as exc:
        raise click.ClickException(exc.message) from None
