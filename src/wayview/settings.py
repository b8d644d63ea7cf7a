"""wayview.settings: one pydantic-settings tree (WAYVIEW_ prefix, `__` nesting)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from wayview.networks import parse_networks

#: `database_url` prefixes of PostgreSQL (as `wayview.store.POSTGRES_SCHEMES`).
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
#: A comma that starts another URL (a libpq multi-host URL has commas of its own).
_NEXT_URL = re.compile(r",\s*(?=postgres(?:ql)?://)")


def _url_list(value: Any) -> Any:
    """A JSON list, or URLs separated by commas, as a list of URLs.

    >>> _url_list("postgresql://r1/w, postgresql://a,b:5433/w")
    ['postgresql://r1/w', 'postgresql://a,b:5433/w']
    >>> _url_list('["postgresql://r1/w"]'), _url_list("")
    (['postgresql://r1/w'], [])
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in _NEXT_URL.split(text) if part.strip()]
    return value


def _check_networks(value: str) -> str:
    """`value` if every comma-separated entry is an address or CIDR (ValueError names the
    first that is not)."""
    parse_networks(value)
    return value


class SearchSettings(BaseModel):
    """Limits of the search endpoints (spec §3.9)."""

    max_bbox_area_deg2: float = Field(
        0.01, ge=0, description="Largest bbox area in square degrees (0 = unlimited)."
    )
    default_limit: int = Field(2000, ge=1, description="Rows returned when `limit` is absent.")
    max_limit: int = Field(2000, ge=1, description="Larger `limit` values are clamped to this.")


class IdsSettings(BaseModel):
    """Multi-id lookups: GET /?ids= (spec §3.8)."""

    max_per_request: int = Field(100, ge=1, description="Most ids accepted by `GET /?ids=`.")


class ImageIdsSettings(BaseModel):
    """`GET /images?image_ids=` (spec §3.10)."""

    max_per_request: int = Field(
        2000, ge=1, description="Most ids accepted by `GET /images?image_ids=`."
    )


class GraphSettings(BaseModel):
    """Bounds on the work one Graph request may ask for (`fields=` and what it renders)."""

    fields_max_length: int = Field(
        4096, ge=16, description="Longest `fields` value in characters (E9 beyond).")
    fields_max_depth: int = Field(
        6, ge=1, le=64, description="Deepest nesting in `fields` (`a{b{c}}` and `a.b.c` are 3).")
    fields_max_names: int = Field(
        256, ge=1, description="Most field names one `fields` value may hold.")
    max_rendered_objects: int = Field(
        100_000, ge=1, description="Most JSON objects (rows plus every nested reference) one "
        "response may render; the request gets E9 before the level that would pass it is "
        "loaded.")


class CorsSettings(BaseModel):
    """Cross-origin headers (spec §1.7)."""

    allowed_origins: str = Field(
        "*", description="`*` or a comma-separated list of origins allowed to read responses."
    )


class AuthSettings(BaseModel):
    """Token validation."""

    token_cache_s: float = Field(
        5.0,
        ge=0,
        description="Seconds a validated token is remembered in process (0 = look up every time). "
        "A token revoked in another process keeps working for at most this long.",
    )
    password_login: bool = Field(
        True, description="Serve `POST /login` (email + password, used by mapillary_tools)."
    )


class OAuthSettings(BaseModel):
    """Lifetimes of OAuth artefacts (spec §7)."""

    token_ttl_s: int = Field(5_184_000, ge=60, description="Lifetime of user access tokens.")
    code_ttl_s: int = Field(
        600, ge=10, le=3600, description="Lifetime of an authorization code from `/connect`."
    )
    refresh_grace_s: int = Field(
        60, ge=0, description="How long a refreshed access token keeps working after the refresh."
    )


class AccountsSettings(BaseModel):
    """Web accounts: sign-up, sign-in and sessions."""

    signup_enabled: bool = Field(True, description="Let visitors create accounts at `/signup`.")
    signup_invite_only: bool = Field(
        False, description="Sign-up only with an invitation link from `wayview users invite "
        "EMAIL` (one account per invitation, for that e-mail address).")
    invite_ttl_s: int = Field(
        7 * 86_400, ge=60, description="Lifetime of an invitation link in seconds.")
    signups_per_address: int = Field(
        5, ge=0, description="Accounts one client address may create per sign-up window "
        "(0 = unlimited; shared through Redis when `redis_url` is set).")
    signup_window_s: int = Field(
        3600, ge=1, description="Length of the sign-up throttle window in seconds.")
    session_ttl_s: int = Field(
        1_209_600, ge=300, description="Lifetime of a browser session (signed cookie)."
    )
    login_failures_per_account: int = Field(
        10, ge=0, description="Failed sign-ins allowed per account *from one client address* "
        "per throttle window (0 = off); the owner elsewhere is never locked out."
    )
    login_failures_per_address: int = Field(
        50, ge=0, description="Failed sign-ins allowed per client address per throttle window "
        "(0 = off)."
    )
    login_throttle_window_s: int = Field(
        900, ge=1, description="Length of the sign-in throttle window in seconds."
    )
    min_password_length: int = Field(10, ge=8, description="Shortest password accepted.")


class RateLimitSettings(BaseModel):
    """Request budgets per app (spec §9); 0 disables a limit."""

    graph_per_minute: int = Field(
        50_000, ge=0, description="Graph API requests per app per minute."
    )
    search_per_minute: int = Field(
        0, ge=0, description="Search requests per app per minute (0 = share the graph budget)."
    )
    tiles_per_day: int = Field(50_000, ge=0, description="Vector tile requests per app per day.")
    upload_per_minute: int = Field(
        0, ge=0, description="Upload-service requests per app per minute."
    )


class TilesSettings(BaseModel):
    """Vector tiles (spec §4)."""

    cache_max_age_s: int = Field(
        300, ge=0, description="`Cache-Control: max-age` of vector tiles, in seconds."
    )
    cache_max_bytes: int = Field(
        256 * 1024 * 1024, ge=0,
        description="Memory for rendered tiles per server process (0 = no cache).",
    )
    max_line_tile_bytes: int = Field(
        500_000, ge=0, description="Byte budget of a z6–13 image tile: its `sequence` lines "
        "are thinned by pixel coverage (cells of one 512-pixel pixel, the newest capture "
        "first) and the cells are made coarser until the tile fits (0 = no budget; "
        "docs/performance.md).",
    )
    prerender_interval_s: float = Field(
        5.0, ge=0, description="How often the job runner renders the z6–13 image tiles that "
        "writes made stale, into the store, so requests read them instead of rendering "
        "(0 = never: the first request after a write renders and stores the tile).",
    )


class S3Settings(BaseModel):
    """S3-compatible object storage for `blobs_url = s3://bucket/prefix`."""

    endpoint_url: str = Field(
        "", description="S3 endpoint (e.g. https://s3.eu-central-1.amazonaws.com or a MinIO/"
        "SeaweedFS URL); empty = AWS for `region`."
    )
    region: str = Field("us-east-1", description="Region used for request signing.")
    access_key_id: str = Field(
        "", description="Access key; empty = the environment's AWS credentials chain."
    )
    secret_access_key: str = Field("", description="Secret key for `access_key_id`.")
    serve: str = Field(
        "proxy", pattern="^(proxy|presigned|public)$",
        description="How clients get images: `proxy` (through wayview), `presigned` (expiring "
        "signed bucket URLs) or `public` (under `public_base_url`, e.g. a CDN).",
    )
    public_base_url: str = Field(
        "", description="Base URL of the public bucket or CDN when `serve` is `public`."
    )
    presign_ttl_s: int = Field(
        86_400, ge=60, le=604_800, description="Lifetime of presigned URLs (S3 allows 7 days)."
    )
    connect_timeout_s: float = Field(
        1.0, gt=0, description="Longest wait for a connection to the S3 endpoint."
    )
    timeout_s: float = Field(
        10.0, gt=0, description="Longest one S3 request may take (a large upload part "
        "included), for jobs and commands; API reads wait `request_timeout_s`."
    )
    request_timeout_s: float = Field(
        1.5, gt=0, description="Longest an API request waits for one S3 read (a media GET, a "
        "HEAD) before answering a transient 503: retries included."
    )
    max_retries: int = Field(
        2, ge=0, description="Retries of a failed S3 call (obstore's backoff), within "
        "`retry_timeout_s`."
    )
    retry_timeout_s: float = Field(
        3.0, gt=0, description="No S3 retry starts after this many seconds of one call."
    )
    max_concurrency: int = Field(
        32, ge=1, description="S3 reads of API requests one process runs at once; more "
        "wait, and a media request that cannot start within `request_timeout_s` is a 503."
    )


class ImportSettings(BaseModel):
    """`wayview import`: how images are cut into sequences."""

    max_time_gap_s: float = Field(
        60.0, gt=0, description="A capture-time gap above this starts a new sequence."
    )
    max_distance_gap_m: float = Field(
        100.0, gt=0, description="A jump above this distance starts a new sequence."
    )
    max_sequence_length: int = Field(
        1000, ge=1, description="Longer runs are split into sequences of this many images."
    )


class UploadSettings(BaseModel):
    """The upload service for mapillary_tools (spec §8)."""

    path_prefix: str = Field(
        "/upload", pattern=r"^(/[A-Za-z0-9._~-]+)+$",
        description="Path of the upload endpoints (`MAPILLARY_UPLOAD_ENDPOINT` = base URL + this).",
    )
    handle_ttl: int = Field(
        604_800, ge=172_800,
        description="Seconds a session and its file handle live after the last upload or finish "
        "(at least 48 h: mapillary_tools reuses cached handles for 2 days).",
    )
    max_session_bytes: int = Field(
        16 * 1024**3, ge=0,
        description="Largest upload (one file: an image, a zip of a sequence, a video) in bytes "
        "(0 = unlimited). The default, 16 GiB, holds a 1000-image zip of 12-MP photos or a "
        "4-GB GoPro/BlackVue video chapter several times over.",
    )
    max_expanded_bytes: int = Field(
        16 * 1024**3, ge=0,
        description="Most bytes one upload may stage for processing (every zip member and "
        "every manifest image counts; 0 = unlimited). Staging stops with a reason beyond it.",
    )
    max_zip_ratio: int = Field(
        100, ge=1,
        description="A zip member that inflates more than this many times its compressed size "
        "is dropped (JPEG photos compress about 1.1 times).",
    )
    user_quota_bytes: int = Field(
        200 * 1024**3, ge=0,
        description="Most bytes one user's upload sessions may hold on disk (0 = unlimited). "
        "Staged uploads stay until their handles expire (`handle_ttl`), so this caps what a "
        "user uploads per `handle_ttl`; an upload POST beyond it is refused (413) before the "
        "bytes past it are written.",
    )
    min_free_disk_bytes: int = Field(
        2 * 1024**3, ge=0,
        description="Refuse uploads (retriable 507) while writing them would leave less than "
        "this many bytes free on the filesystem of `data_dir` (0 = no floor).",
    )
    max_sequence_length: int = Field(
        1000, ge=1, description="Longer uploads are split into sequences of this many images."
    )
    max_image_bytes: int = Field(
        100 * 1024 * 1024, ge=1024,
        description="Largest image inside a zip or manifest upload; larger ones are dropped.",
    )
    max_images: int = Field(
        10_000, ge=1, description="Most images taken from one upload (zip, manifest or video)."
    )
    video_sample_distance_m: float = Field(
        3.0, gt=0, description="Distance between the frames taken from an uploaded video."
    )
    session_lock_wait_s: float = Field(
        30.0, ge=0, description="How long a POST waits for another POST to the same session "
        "to end before answering 412 (the client then re-reads the offset)."
    )


class JobsSettings(BaseModel):
    """The durable job queue and its workers (processing pipeline)."""

    serve_workers: int = Field(
        1, ge=0, description="Jobs each `serve` process runs at once in the background "
        "(0 = none: run `wayview worker` processes instead).",
    )
    lease_s: float = Field(
        120.0, ge=5, description="A running job whose worker has not renewed it for this long "
        "is taken over by another worker (the first one is presumed dead). Its worker renews "
        "it every third of this and stops the job itself (to run it again later) when it "
        "could not for this minus a guard. Keep it at least 3 × the longest single blocking "
        "call of a job: `s3.timeout_s` with S3, `database_statement_timeout_s` with PostgreSQL "
        "(a worker logs a warning at start-up otherwise).",
    )
    poll_s: float = Field(1.0, gt=0, description="How often an idle worker looks for jobs.")
    max_attempts: int = Field(
        5, ge=1, description="Attempts before a failing job is parked (`wayview jobs retry`).",
    )
    backoff_s: float = Field(
        10.0, ge=0, description="Wait before the first retry; doubled at every further attempt.",
    )
    backoff_max_s: float = Field(3600.0, ge=0, description="Longest wait between two attempts.")
    retry_window_s: float = Field(
        21_600.0, ge=0, description="How long a job failing because a service is down (the "
        "store, the blob store, Redis, a full disk, a network error) keeps being retried "
        "before it is parked, counted from when it was queued: such failures do not count "
        "against `max_attempts`, so an outage of a few hours needs no `wayview jobs retry`.",
    )
    transient_backoff_max_s: float = Field(
        300.0, ge=0, description="Longest wait between two attempts of a job failing because a "
        "service is down (the job resumes at most this long after the service is back).",
    )
    retired_blob_sweep_s: float = Field(
        900.0, ge=0, description="Blobs deleted because the attempt that wrote them failed or "
        "was interrupted are deleted once more this long afterwards, by a job runner: a write "
        "the blob store accepted but did not answer (a timeout, a restart of S3) may still "
        "land in between. Longer than any write can hang; 0 = never.",
    )


class PipelineSettings(BaseModel):
    """What the processing pipeline does to every image before it is public."""

    blurrer: str = Field(
        "centerface+plates", description="Privacy blurring of faces and licence plates: "
        "`centerface+plates` (faces by CenterFace, plates by shape and contrast), any of "
        "`centerface`, `plates`, `yolo` (your model, see `blur_model`) and `opencv` (Haar "
        "cascades, the old default) joined by `+`, `none`, or `package.module:Class` (your own "
        "Blurrer). The unblurred upload stays private; only blurred derivatives are served.",
    )
    blur_min_face_px: int = Field(
        24, ge=4, description="Smallest face height (pixels of the photo) CenterFace must find; "
        "the photo is shrunk by 24 / this before detection (24 and below: full resolution). "
        "Higher is faster (cost grows with the square) and misses smaller faces.",
    )
    blur_face_threshold: float = Field(
        0.15, gt=0, lt=1, description="CenterFace score above which a face is blurred (lower "
        "blurs more: privacy first).",
    )
    blur_max_input_pixels: int = Field(
        1024 * 1024, ge=65536, description="Largest CenterFace input of one run; larger "
        "(scaled) photos are cut into overlapping tiles. Bounds the memory of face detection "
        "(about +200 MB per pipeline thread at 1 MP, +700 MB at 3 MP) at a few % more CPU.",
    )
    blur_plates_max_side: int = Field(
        4096, ge=64, description="The plate finder looks at a copy of the photo at most this "
        "long (plates below ~45 px wide there are missed).",
    )
    blur_model: str = Field(
        "", description="Path of a YOLOv5/v8-format ONNX model of faces and/or plates for the "
        "`yolo` blurrer part (its licence is yours to choose; wayview ships none).",
    )
    blur_labels: str = Field(
        "", description="Path of a text file naming the `blur_model` classes: one line per class "
        "index, `face`, `plate` or `-` (ignore the class).",
    )
    blur_min_score: float = Field(
        0.3, ge=0, le=1, description="Boxes of `blur_model` below this score are not blurred.",
    )
    keep_unblurred: bool = Field(
        True, description="Keep the unblurred original as a private blob (never served); "
        "false deletes it once the public derivatives exist.",
    )
    pyramid: bool = Field(
        True, description="Render the image tiles of `GET /{id}/tiles` (spec §3.12).",
    )
    meshes: bool = Field(
        True, description="Give every image `merge_cc`, a mesh and an sfm_cluster "
        "(MapillaryJS's 3D transitions).",
    )
    merge_radius_m: float = Field(
        30.0, gt=0, description="Sequences whose images come this close share a `merge_cc`.",
    )
    positioner: Literal["auto", "track", "sfm"] = Field(
        "auto", description="Computed positions and rotations: `sfm` (structure from motion with "
        "pycolmap, the optional extra `wayview[sfm]`, run as a job per sequence after it is "
        "stored), `track` (smoothing of the GPS track only) or `auto` (`sfm` when the extra is "
        "installed, else `track`).",
    )
    sfm_window: int = Field(
        15, ge=3, le=200, description="Images per SfM window (the global mapper's cost grows "
        "fast with window size).",
    )
    sfm_window_overlap: int = Field(
        5, ge=2, le=100, description="Images consecutive SfM windows share (they are chained "
        "on them).",
    )
    sfm_match_overlap: int = Field(
        8, ge=1, le=50, description="Each image is matched with this many of its successors "
        "in capture order.",
    )
    sfm_max_image_size: int = Field(
        2048, ge=256, le=8192, description="Features are extracted at most this many pixels "
        "wide or high (from the public 2048-px derivative).",
    )
    sfm_max_features: int = Field(8192, ge=256, le=65536,
                                  description="SIFT features per image.")
    sfm_max_residual_m: float = Field(
        20.0, gt=0, description="An image placed further than this from its GPS position "
        "keeps its GPS-track position instead (a recorded fallback).",
    )
    sfm_seeds: int = Field(
        3, ge=1, le=20, description="Seeds tried for a window until every image is registered "
        "within `sfm_max_residual_m` of its GPS position (the best seed is kept).",
    )
    sfm_threads: int = Field(2, ge=1, le=256,
                             description="CPU threads one SfM job's feature extraction uses "
                             "(matching and mapping run on one thread, for repeatable "
                             "results).")
    sfm_max_points: int = Field(
        100_000, ge=0, description="Most points in a sequence's sfm_cluster (evenly thinned "
        "beyond).",
    )
    sfm_max_neighbours: int = Field(
        60, ge=0, le=1000, description="Images of other sequences within `merge_radius_m` "
        "matched with a sequence, so crossing sequences share one reconstruction (0: none).",
    )
    max_image_pixels: int = Field(
        100_000_000, ge=1,
        description="Largest image (width × height from its frame header) accepted by uploads "
        "and `wayview import`, checked before decoding. 100 MP holds the largest 360° camera "
        "frames (72 MP); the peak memory of processing grows with it (docs/deployment.md).",
    )
    min_bytes_per_megapixel: int = Field(
        1000, ge=0,
        description="A JPEG smaller than this many bytes per million pixels it claims is "
        "refused as a decompression bomb (0 = no check). Photos take 100,000 and more; a "
        "uniformly grey frame about 4,000.",
    )
    max_jpeg_scans: int = Field(
        50, ge=1,
        description="A JPEG with more scans than this is refused before decoding: each scan is "
        "a pass over the whole image (a 260-kB file of 1,000 scans costs 27 s of CPU); "
        "progressive JPEGs have about 10, baseline ones 1.",
    )
    on_demand_renders: int = Field(
        1, ge=1,
        description="Pyramid levels one server process renders on request at the same time "
        "(levels the pipeline did not store); further requests wait for a free slot.",
    )
    detectors: str = Field(
        "signs", description="What the pipeline detects in every image, comma-separated: "
        "`signs` (traffic signs by colour and shape), `onnx` (your YOLO-format model, see "
        "`onnx_model`), `package.module:Class`, or `none`.",
    )
    onnx_model: str = Field(
        "", description="Path of a YOLO-format (v5/v8) ONNX detector for `detectors = onnx`; "
        "its licence is yours to choose.",
    )
    onnx_labels: str = Field(
        "", description="Path of a text file mapping the ONNX model's classes to taxonomy "
        "values: one line per class index, the value (or `-` to ignore the class).",
    )
    onnx_min_score: float = Field(
        0.4, ge=0, le=1, description="Detections of the ONNX model below this score are "
        "dropped.",
    )
    map_features: bool = Field(
        True, description="Triangulate map features from the detections of every upload and "
        "import (and merge them with stored ones).",
    )
    feature_merge_radius_m: float = Field(
        8.0, gt=0, description="A new map feature this close to a stored one of the same "
        "value is the same object: its evidence joins the stored feature.",
    )


class EmbedSettings(BaseModel):
    """The `/embed` viewer page and the `/app` explorer."""

    frame_ancestors: str = Field(
        "*", description="`Content-Security-Policy: frame-ancestors` of `/embed`: the origins "
        "allowed to show it in a frame (space-separated; `*` = any, `'none'` = none).",
    )


class WebSettings(BaseModel):
    """The web pages' map (`/app`, `/embed`)."""

    basemap_style_url: str = Field(
        "", description="A MapLibre style URL (any origin: an operator's own tiles, an OSM "
        "raster style, …) drawn under the coverage on `/app` and `/embed`; empty = the "
        "built-in offline base map (Natural Earth land and borders). The style's own "
        "attribution is shown.",
    )
    geocoder_url: str = Field(
        "", description="A Nominatim-compatible search URL (`/search` answering `format=jsonv2`, "
        "e.g. `https://nominatim.openstreetmap.org/search` within its usage policy, or your "
        "own Nominatim or Photon-with-Nominatim-API) for `/app`'s place search; it must allow "
        "CORS from this server. Empty = no place search (the default: nothing leaves the "
        "server unless you name a geocoder).",
    )
    extra_origins: str = Field(
        "", description="Comma-separated origins (`https://tiles.example.net`) the pages' "
        "Content-Security-Policy admits besides this server, the base map style's origin, "
        "the geocoder's and the blob store's public URL: where an operator's base map style "
        "fetches its tiles, glyphs and sprites from, when that is not the style's own origin.",
    )


class ExportSettings(BaseModel):
    """Users' downloads of all their data: zips made by a background job (docs/export.md)."""

    ttl_hours: float = Field(
        72.0, gt=0, description="Hours a finished export can be downloaded; then its zip is "
        "deleted from the blob store (by a delayed `export_expire` job, and by any listing of "
        "exports that finds it overdue).",
    )
    max_concurrent_per_user: int = Field(
        1, ge=1, description="Exports one user may have queued or running at once; a further "
        "request is refused until one is done.",
    )
    max_listed: int = Field(
        20, ge=1, le=1000, description="Most exports `GET /me/exports` and `/account/export` "
        "show (newest first).",
    )


class MetricsSettings(BaseModel):
    """Prometheus metrics at `/metrics` (docs/monitoring.md)."""

    enabled: bool = Field(
        False, description="Serve `/metrics` (Prometheus text format). Off: the path does not "
        "exist (answered like any unknown path).")
    bearer_token: str = Field(
        "", description="When set, a scrape must send `Authorization: Bearer <this>` (401 "
        "otherwise). Use 32+ random characters; it is never logged.")
    allow_from: str = Field(
        "", description="Comma-separated addresses or CIDRs (`10.0.0.0/8, ::1`) allowed to "
        "scrape (403 otherwise); empty = any address. Behind a reverse proxy set "
        "`trusted_proxies` too, else every request comes from the proxy's address.")
    worker_port: int = Field(
        0, ge=0, le=65535, description="Port on which each `wayview worker` serves its own "
        "`/metrics` (job and pipeline metrics; the same token and allow-list); 0 = none.")
    worker_host: str = Field(
        "127.0.0.1", description="Address a `wayview worker` serves its metrics on.")

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, value: str) -> str:
        return _check_networks(value)


class Settings(BaseSettings):
    """All wayview settings. Environment: `WAYVIEW_<NAME>`, nested with `__`."""

    model_config = SettingsConfigDict(
        env_prefix="WAYVIEW_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    data_dir: Path = Field(
        Path("wayview-data"), description="Folder for the SQLite database and the blob store."
    )
    host: str = Field("127.0.0.1", description="Address `serve` listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Port `serve` listens on.")
    workers: int = Field(1, ge=1, description="Server processes started by `serve`.")
    public_base_url: str = Field(
        "",
        description="Base of every absolute URL the server emits (thumbnails, paging). "
        "Empty = http://<host>:<port>.",
    )
    trusted_proxies: str = Field(
        "", description="Comma-separated addresses or CIDRs of reverse proxies (e.g. "
        "`127.0.0.1/32` for nginx or Caddy on the same host). A request from one of them takes "
        "its client address from `X-Forwarded-For` (the right-most address that is not a "
        "trusted proxy) and its scheme from `X-Forwarded-Proto`, so per-address throttles, "
        "the metrics allow-list and the logs see the real client. Empty = the headers are "
        "ignored (a client could forge them).",
    )
    search: SearchSettings = SearchSettings()
    ids: IdsSettings = IdsSettings()
    image_ids: ImageIdsSettings = ImageIdsSettings()
    graph: GraphSettings = GraphSettings()
    cors: CorsSettings = CorsSettings()
    auth: AuthSettings = AuthSettings()
    oauth: OAuthSettings = OAuthSettings()
    accounts: AccountsSettings = AccountsSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    imports: ImportSettings = ImportSettings()
    tiles: TilesSettings = TilesSettings()
    upload: UploadSettings = UploadSettings()
    jobs: JobsSettings = JobsSettings()
    pipeline: PipelineSettings = PipelineSettings()
    embed: EmbedSettings = EmbedSettings()
    export: ExportSettings = ExportSettings()
    web: WebSettings = WebSettings()
    metrics: MetricsSettings = MetricsSettings()
    database_url: str = Field(
        "", description="`postgresql://user:pass@host:port/db` to keep everything in "
        "PostgreSQL + PostGIS (the `postgis` extension must exist in the database, or the "
        "role must be allowed to create it); empty = SQLite in `data_dir`."
    )
    database_pool_size: int = Field(
        10, ge=1, description="Most PostgreSQL connections one process keeps open."
    )
    database_connect_timeout_s: int = Field(
        2, ge=2, description="Longest wait for a new PostgreSQL connection (libpq "
        "`connect_timeout`, whole seconds, at least 2)."
    )
    database_checkout_timeout_s: float = Field(
        2.0, gt=0, description="Longest a request waits for a free pooled PostgreSQL "
        "connection before a transient 503 (during an outage: at once)."
    )
    database_statement_timeout_s: float = Field(
        30.0, ge=0, description="PostgreSQL `statement_timeout` of every pooled connection "
        "(0 = none)."
    )
    database_idle_in_transaction_timeout_s: float = Field(
        60.0, ge=0, description="PostgreSQL `idle_in_transaction_session_timeout` of every "
        "pooled connection (0 = none): a stalled client cannot hold locks for long."
    )
    database_request_timeout_s: float = Field(
        1.5, gt=0, description="Longest one database call of an API request waits for "
        "PostgreSQL's answer before its connection is dropped and the request answered with a "
        "transient 503 (a server that stopped answering; raise it for slow queries)."
    )
    database_replica_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="PostgreSQL streaming replicas (hot standbys) of "
        "`database_url`, as a JSON list or separated by commas: Graph reads and searches of "
        "API requests go to a healthy one in turn; writes, jobs, uploads, OAuth, accounts and "
        "tile epochs stay on the primary (docs/deployment.md). A replica that is down or lags "
        "is skipped, never failing a request.")
    database_replica_max_lag_s: float = Field(
        5.0, ge=0, description="A replica more than this many seconds behind the primary is "
        "skipped until it catches up (its reads go to the primary); within it, a replica's "
        "answers may be this old.")
    redis_url: str = Field(
        "", description="`redis://host:port/db` (or `unix:///path`) to share rate-limit counters "
        "and rendered vector tiles across processes and hosts; empty = each process counts "
        "and caches for itself."
    )
    rate_limit_fail_open: bool = Field(
        True, description="When Redis is unreachable, allow requests uncounted (True) or "
        "answer them with a transient 503 (False)."
    )
    redis_timeout_s: float = Field(
        0.5, gt=0, description="Longest wait for one Redis call (connect or answer) of the "
        "rate limiter and the shared tile cache."
    )
    blobs_url: str = Field(
        "", description="`s3://bucket/prefix` to keep images in S3-compatible storage (see "
        "`s3.*`); empty = the `blobs` folder in `data_dir`."
    )
    s3: S3Settings = S3Settings()
    store_inline_point_reads: bool = Field(
        True,
        description="Run primary-key reads (node, token, tile epoch, a z14 tile's packed "
        "images and lines) directly on the server's event loop instead of a reader thread "
        "(SQLite): ~200 µs less CPU per request. Turn off if the database lives on slow or "
        "network storage.",
    )
    asset_max_age_s: int = Field(
        31_536_000, ge=0, description="`Cache-Control: max-age` of thumbnails and originals."
    )
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    log_format: Literal["plain", "json"] = Field(
        "plain", description="`plain` (one text line per record) or `json` (one JSON object "
        "per line: a record per request and per job run, with its trace id; "
        "docs/monitoring.md).")
    secret_key: str = Field(
        "",
        description="Server secret for session cookies, CSRF tokens and built-in tokens. Empty = "
        "generated once into `<data_dir>/secret_key`. Set it (32+ random characters) when "
        "several hosts serve one deployment.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        return _check_networks(value)

    @field_validator("database_replica_urls", mode="before")
    @classmethod
    def _replica_list(cls, value: Any) -> Any:
        return _url_list(value)

    @field_validator("database_replica_urls")
    @classmethod
    def _replicas_of_postgres(cls, urls: list[str], info: ValidationInfo) -> list[str]:
        # Messages name schemes only: a URL may hold a password.
        if urls and not str(info.data.get("database_url", "")).startswith(_POSTGRES_SCHEMES):
            raise ValueError("replicas need a PostgreSQL database_url (postgresql://…)")
        for url in urls:
            if not url.startswith(_POSTGRES_SCHEMES):
                raise ValueError(f"{url.partition(':')[0]!r} is not a PostgreSQL URL "
                                 "(postgresql://…)")
        return urls

    @property
    def base_url(self) -> str:
        """The public base URL without a trailing slash."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def database_path(self) -> Path:
        """The SQLite database file inside `data_dir`."""
        return self.data_dir / "wayview.db"

    @property
    def blobs_path(self) -> Path:
        """The local blob folder inside `data_dir`."""
        return self.data_dir / "blobs"
