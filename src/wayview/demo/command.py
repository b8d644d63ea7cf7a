"""wayview.demo.command: `wayview demo`: build the demo city once, print a banner, serve it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from wayview.demo.build import DemoInfo, DemoProgress, build_demo
from wayview.errors import WayviewError
from wayview.settings import Settings
from wayview.store.base import Store

__all__ = ["ENV_FILE", "MARKER_FILE", "TOKEN_FILE", "DemoTour", "demo_banner", "demo_command",
           "demo_env", "prepare_demo"]

#: Written into the data dir after a complete build; its presence means "reuse, don't rebuild".
MARKER_FILE = "demo.json"
#: The plain demo client token (mode 0600), so that every run prints the same one.
TOKEN_FILE = "demo-token.txt"
#: Shell variables for the README's examples (`. wayview-demo/demo.env`), mode 0600 (a token).
ENV_FILE = "demo.env"
_BANNER_TILE_ZOOM = 14


@dataclass(frozen=True, slots=True)
class DemoTour:
    """Where the examples look: a traffic sign of the demo (if any), a bbox around it (or around
    the sample image) small enough for `/images` and `/map_features`, and its z14 tile."""

    lon: float
    lat: float
    sign_id: int | None

    @property
    def bbox(self) -> str:
        return (f"{self.lon - 0.004:.4f},{self.lat - 0.003:.4f},"
                f"{self.lon + 0.004:.4f},{self.lat + 0.003:.4f}")

    @property
    def tile(self) -> str:
        x, y = _tile_xy(self.lon, self.lat, _BANNER_TILE_ZOOM)
        return f"{_BANNER_TILE_ZOOM}/{x}/{y}"


async def _tour(store: Store, info: DemoInfo) -> DemoTour:
    """A traffic sign to show, else the sample image's place."""
    from wayview.model.entities import MapFeatureSearch

    page = await store.search_map_features(
        MapFeatureSearch(bbox=info.bbox, object_type="trafficsign", limit=1))
    if page.items:
        sign = page.items[0]
        return DemoTour(lon=sign.lon, lat=sign.lat, sign_id=sign.id)
    lon, lat = info.sample_image_lon_lat
    return DemoTour(lon=lon, lat=lat, sign_id=None)


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
) -> tuple[DemoInfo, bool, str | None, DemoTour]:
    """Build the demo into `settings.data_dir` unless it is already there.

    Returns:
        (info, whether it was built now, the demo client token or None, where the examples
        look).

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
        tour = await _tour(store, info)
    finally:
        await store.close()
    return info, fresh, token, tour


def _tile_xy(lon: float, lat: float, zoom: int) -> tuple[int, int]:
    """The XYZ tile containing a point.

    >>> _tile_xy(13.191, 55.7047, 14)
    (8792, 5125)
    """
    n = 2**zoom
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def _wayview_command() -> str:
    """How this process was started (`.venv/bin/wayview`), to print commands that work."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name == "wayview":
        return argv0
    return f"{sys.executable} -m wayview"


def demo_env(info: DemoInfo, tour: DemoTour, base_url: str, token: str) -> str:
    """`demo.env`: the shell variables the README's examples use."""
    first_user = next(iter(info.users), "alice")
    values = {
        "BASE": base_url, "TOKEN": token, "IMAGE_ID": str(info.sample_image_id),
        "SEQUENCE_ID": info.sample_sequence_id, "BBOX": tour.bbox,
        "FEATURE_ID": str(tour.sign_id or info.sample_map_feature_id or ""),
        "TILE": tour.tile, "DEMO_USER": first_user,
    }
    lines = ["# The wayview demo's ids for the README's examples: `. wayview-demo/demo.env`",
             *(f"{key}='{value}'" for key, value in values.items())]
    return "\n".join(lines) + "\n"


def demo_banner(info: DemoInfo, base_url: str, token: str, data_dir: Path, *, built: bool,
                tour: DemoTour | None = None) -> str:
    """The start banner: what is served, the token, and copy-paste curl examples."""
    west, south, east, north = info.bbox
    if tour is None:
        lon, lat = info.sample_image_lon_lat
        tour = DemoTour(lon=lon, lat=lat, sign_id=None)
    feature_id = tour.sign_id or info.sample_map_feature_id
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
        f"  URL:   {base_url}   (explorer: {base_url}/app)",
        f"  token: {token}",
        f"  ids:   . {data_dir / ENV_FILE}   sets BASE, TOKEN, IMAGE_ID, SEQUENCE_ID, BBOX, "
        "FEATURE_ID, TILE for the README's examples",
        "",
        "Try (quote the URLs: the token contains '|'; curl -g keeps the braces of nested fields):",
        "",
        "  # one image, with its creator's username",
        f"  curl -g '{base_url}/{info.sample_image_id}"
        f"?fields=id,geometry,captured_at,compass_angle,sequence,creator{{username}},"
        f"thumb_1024_url&{auth}'",
        "",
        "  # images in a bounding box",
        f"  curl '{base_url}/images?bbox={tour.bbox}&limit=5"
        f"&fields=id,geometry,captured_at,is_pano&{auth}'",
        "",
        "  # the images of a sequence, in capture order",
        f"  curl '{base_url}/image_ids?sequence_id={info.sample_sequence_id}&{auth}'",
        "",
        "  # map features (traffic signs, points) in a bounding box",
        f"  curl '{base_url}/map_features?bbox={tour.bbox}"
        f"&fields=id,object_value,object_type,geometry&{auth}'",
    ]
    if feature_id is not None:
        lines += [
            "",
            "  # a map feature, and where it was detected",
            f"  curl '{base_url}/{feature_id}"
            f"?fields=id,object_value,object_type,geometry,first_seen_at,last_seen_at,images&{auth}'",
            f"  curl '{base_url}/{feature_id}/detections"
            f"?fields=id,value,created_at,image&{auth}'",
        ]
    first_user = next(iter(info.users), "alice")
    lines += [
        "",
        "  # vector tiles (Mapbox Vector Tile, zoom 14): coverage, and the traffic signs",
        f"  curl -o tile.mvt '{base_url}/maps/vtp/mly1_public/2/{tour.tile}?{auth}'",
        f"  curl -o signs.mvt '{base_url}/maps/vtp/mly_map_feature_traffic_sign/2/{tour.tile}"
        f"?{auth}'",
        "",
        "  # you, with a user token (GET /me)",
        f"  USER_TOKEN=$({_wayview_command()} tokens create --user {first_user} "
        f"--data-dir {data_dir})",
        f"  curl -H \"Authorization: OAuth $USER_TOKEN\" '{base_url}/me?fields=id,username'",
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
        info, built, token, tour = asyncio.run(
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
    _write_private(data_dir / ENV_FILE, demo_env(info, tour, settings.base_url, token))
    click.echo(demo_banner(info, settings.base_url, token, data_dir, built=built, tour=tour))
    try:
        run_server(settings)
    except WayviewError as exc:
        raise click.ClickException(exc.message) from None
