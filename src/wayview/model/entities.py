"""wayview.model.entities: the domain objects (frozen dataclasses, no IO)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from wayview.model.s2 import leaf_cell

T = TypeVar("T")

CAMERA_TYPES = ("perspective", "fisheye", "spherical")
OBJECT_TYPES = ("trafficsign", "point")


@dataclass(frozen=True, slots=True)
class User:
    """A contributor account."""

    id: int
    username: str
    email: str | None = None
    created_at_ms: int = 0
    #: The instance role: "admin", "moderator" or None (a contributor).
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Organization:
    """An organization that can own images."""

    id: int
    slug: str
    name: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Sequence:
    """An ordered run of images by one creator with one camera."""

    id: str
    creator_id: int
    organization_id: int | None = None
    created_at_ms: int = 0


#: `Image.assets` flags: a mesh (§6.3), the sequence's sfm_cluster (§6.2), pyramid tiles (§3.12).
ASSET_MESH = 1
ASSET_CLUSTER = 2
ASSET_PYRAMID = 4


@dataclass(frozen=True, slots=True)
class Image:
    """One street-level photo and its metadata.

    Positions are WGS84 degrees; `compass_angle_deg` is 0 ≤ a < 360. `computed_*` are None until
    the processing pipeline produces them (the Graph API then falls back to the originals).
    `creator_username` is filled on read (a join), never written.
    """

    id: int
    sequence_id: str
    creator_id: int
    captured_at_ms: int
    lon: float
    lat: float
    width: int
    height: int
    altitude_m: float | None = None
    compass_angle_deg: float | None = None
    camera_type: str = "perspective"
    camera_parameters: tuple[float, float, float] | None = None
    exif_orientation: int = 1
    make: str | None = None
    model: str | None = None
    is_pano: bool = False
    organization_id: int | None = None
    quality_score: float | None = None
    computed_lon: float | None = None
    computed_lat: float | None = None
    computed_altitude_m: float | None = None
    computed_compass_angle_deg: float | None = None
    computed_rotation: tuple[float, float, float] | None = None
    atomic_scale: float | None = None
    merge_cc: int | None = None
    #: Derived blobs that exist (`ASSET_*` bit flags).
    assets: int = 0
    content_sha256: str = ""
    created_at_ms: int = 0
    creator_username: str = ""
    #: Which rendering of the pixels is served (0: ingest's; N: the N-th re-blur, issue #17).
    #: Part of every media URL and blob key of the image's thumbnails, original and tiles.
    media_version: int = 0
    #: Whether the image is hidden (issue #17), read in the same statement as the image by the
    #: store; None where it is not known (an Image not read from the store). Not part of
    #: equality: the same image, hidden or not.
    hidden: bool | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ComputedFields:
    """The structure-from-motion results of one stored image (`Store.set_computed_fields`).

    Written by the SfM job after the image's sequence is stored; every field replaces the
    stored one (`camera_parameters` refined by bundle adjustment, `assets` with the mesh and
    cluster bits). `merge_cc` None keeps the stored value.
    """

    image_id: int
    computed_lon: float
    computed_lat: float
    computed_altitude_m: float | None
    computed_compass_angle_deg: float
    computed_rotation: tuple[float, float, float]
    atomic_scale: float
    camera_parameters: tuple[float, float, float] | None
    assets: int
    merge_cc: int | None = None


@dataclass(frozen=True, slots=True)
class MapFeature:
    """A map object (traffic sign or point) derived from detections."""

    id: int
    object_value: str
    object_type: str
    lon: float
    lat: float
    first_seen_at_ms: int
    last_seen_at_ms: int
    aligned_direction_deg: float | None = None


@dataclass(frozen=True, slots=True)
class Detection:
    """A segmentation of an object in one image.

    `geometry` holds the normalised polygon rings (u, v in 0..1, origin top-left, y down);
    the API encodes it as the base64 MVT of spec §5.
    """

    id: int
    image_id: int
    value: str
    geometry: tuple[tuple[tuple[float, float], ...], ...]
    created_at_ms: int
    map_feature_id: int | None = None


@dataclass(frozen=True, slots=True)
class FeatureChanges:
    """One atomic change of the map features derived from detections (pipeline → store)."""

    #: Features to insert, or to replace (position, times, direction) when the id exists.
    upserts: tuple[MapFeature, ...] = ()
    #: Features to delete (their detections lose the link).
    deletes: tuple[int, ...] = ()
    #: (detection id, feature id or None): which feature each detection is evidence of.
    assignments: tuple[tuple[int, int | None], ...] = ()


@dataclass(frozen=True, slots=True)
class DeletedImages:
    """What `Store.delete_images` removed (the caller then deletes blobs and re-places
    features)."""

    #: Ids that existed and are gone now (ascending).
    image_ids: tuple[int, ...] = ()
    #: Sequences left with no image, deleted with them.
    emptied_sequence_ids: tuple[str, ...] = ()
    #: Sequences that lost some images but still have others.
    shrunk_sequence_ids: tuple[str, ...] = ()
    #: Map features that were linked to a deleted detection (some may have no evidence left).
    feature_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class App:
    """A developer application: the owner of client tokens and of the tokens it obtains."""

    id: int
    name: str
    owner_id: int | None
    scopes: tuple[str, ...] = ("read", "write", "upload")
    redirect_uris: tuple[str, ...] = ()
    builtin: bool = False
    disabled: bool = False
    #: Generations of the client token / secret derived from the server secret (None: set by
    #: the operator or random, so not derivable for display).
    token_gen: int | None = None
    secret_gen: int | None = None
    #: A public client (mobile, single-page app) has no usable secret and must use PKCE.
    public_client: bool = False
    created_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class Token:
    """A stored token (only its hash is kept). `user_id` is None for client tokens."""

    app_id: int
    kind: str  # "client" or "user"
    scopes: tuple[str, ...]
    user_id: int | None = None
    expires_at_ms: int | None = None
    revoked: bool = False
    app_disabled: bool = False
    #: Hash of the authorization code this token descends from (reuse of the code revokes it).
    code_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved from a valid token."""

    app_id: int
    scopes: frozenset[str]
    user_id: int | None = None
    username: str | None = None

    @property
    def is_user(self) -> bool:
        """Whether this is a user (not a client) token."""
        return self.user_id is not None


@dataclass(frozen=True, slots=True)
class ImageSearch:
    """Filters of GET /images (spec §3.9); all combine with AND."""

    bbox: tuple[float, float, float, float] | None = None
    start_captured_at_ms: int | None = None
    end_captured_at_ms: int | None = None
    organization_id: int | None = None
    sequence_ids: tuple[str, ...] | None = None
    creator_username: str | None = None
    image_ids: tuple[int, ...] | None = None
    s2_range: tuple[int, int] | None = None
    is_pano: bool | None = None
    make: str | None = None
    model: str | None = None
    camera_type: str | None = None
    limit: int | None = None
    after: tuple[int, int] | None = None  # keyset cursor (captured_at_ms, id)

    def matches(self, im: Image) -> bool:
        """Whether `im` passes every filter but `image_ids`, `limit` and `after` (the stores
        apply them in Python to an `image_ids=` lookup, a small set)."""
        q = self
        checks = [
            q.bbox is None or (q.bbox[0] <= im.lon <= q.bbox[2]
                               and q.bbox[1] <= im.lat <= q.bbox[3]),
            q.start_captured_at_ms is None or im.captured_at_ms >= q.start_captured_at_ms,
            q.end_captured_at_ms is None or im.captured_at_ms < q.end_captured_at_ms,
            q.organization_id is None or im.organization_id == q.organization_id,
            q.sequence_ids is None or im.sequence_id in q.sequence_ids,
            q.creator_username is None
            or im.creator_username.lower() == q.creator_username.lower(),
            q.is_pano is None or im.is_pano == q.is_pano,
            q.make is None or (im.make or "").lower() == q.make.lower(),
            q.model is None or (im.model or "").lower() == q.model.lower(),
            q.camera_type is None or im.camera_type == q.camera_type,
        ]
        if q.s2_range is not None:
            checks.append(q.s2_range[0] <= leaf_cell(im.lat, im.lon) <= q.s2_range[1])
        return all(checks)


@dataclass(frozen=True, slots=True)
class MapFeatureSearch:
    """Filters of GET /map_features (spec §3.11)."""

    bbox: tuple[float, float, float, float]
    object_values: tuple[str, ...] | None = None
    object_type: str | None = None
    start_first_seen_at_ms: int | None = None
    end_first_seen_at_ms: int | None = None
    start_last_seen_at_ms: int | None = None
    end_last_seen_at_ms: int | None = None
    limit: int = 2000
    after: int | None = None  # keyset cursor (id)


@dataclass(frozen=True, slots=True)
class DetectionSearch:
    """Filters of GET /detections (spec §3.11)."""

    bbox: tuple[float, float, float, float]
    values: tuple[str, ...] | None = None
    start_captured_at_ms: int | None = None
    end_captured_at_ms: int | None = None
    limit: int = 2000
    after: int | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a search; `next_after` is set when more rows exist."""

    items: list[T] = field(default_factory=list)
    next_after: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class TileImageColumns:
    """Images for a tile layer, column-oriented (cheap for 30,000-image tiles).

    `codes` are z26 Morton codes of the positions; `sequence_ids[k]` is the sequence of row k
    through `sequence_index[k]`.
    """

    ids: np.ndarray
    codes: np.ndarray
    captured_at_ms: np.ndarray
    compass_deg: np.ndarray
    is_pano: np.ndarray
    organization_ids: np.ndarray  # 0 = no organization
    creator_ids: np.ndarray
    sequence_index: np.ndarray
    sequence_keys: tuple[str, ...]

    def __len__(self) -> int:
        """Number of images."""
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class TileLine:
    """One sequence's pre-clipped line in a tile, with its first image's properties."""

    sequence_id: str
    coords: bytes
    image_id: int
    captured_at_ms: int
    is_pano: bool
    organization_id: int | None
    creator_id: int


@dataclass(frozen=True, slots=True)
class TileContent:
    """What one image tile is drawn from: the rows of each layer asked for (None: not asked)."""

    images: TileImageColumns | None = None  # the z14 `image` layer
    overview: TileImageColumns | None = None  # the z0–5 `overview` layer
    lines: list[TileLine] | None = None  # the z6–14 `sequence` layer


@dataclass(frozen=True, slots=True)
class TileFeatureColumns:
    """Map features for a tile layer, column-oriented."""

    ids: tuple[int, ...] = ()
    lons: tuple[float, ...] = ()
    lats: tuple[float, ...] = ()
    values: tuple[str, ...] = ()
    first_seen_at_ms: tuple[int, ...] = ()
    last_seen_at_ms: tuple[int, ...] = ()


JOB_STATES = ("queued", "running", "done", "parked")


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of background work (a durable queue row). `payload` is JSON-serialisable."""

    id: int
    kind: str
    payload: dict[str, object]
    state: str = "queued"
    attempts: int = 0
    run_after_ms: int = 0
    last_error: str | None = None
    dedupe_key: str | None = None
    created_at_ms: int = 0
    updated_at_ms: int = 0
    worker: str | None = None
    lease_until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class JobKindStats:
    """The unfinished jobs of one kind, for the queue gauges of `/metrics`."""

    kind: str
    queued: int = 0
    #: Queued jobs whose run time has come.
    due: int = 0
    running: int = 0
    parked: int = 0
    #: The earliest run time (ms since the epoch) of a due job; None when none is due.
    oldest_due_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Credentials:
    """What sign-in checks: the user and the argon2 hash of their password (None: no password)."""

    user: User
    password_hash: str | None


@dataclass(frozen=True, slots=True)
class WebSession:
    """A signed-in browser (only the hash of the session id is stored)."""

    user: User
    created_at_ms: int
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class OAuthCode:
    """An authorization code (stored by hash): bound to app, user, scopes and redirect URI."""

    app_id: int
    user_id: int
    scopes: tuple[str, ...]
    redirect_uri: str | None
    expires_at_ms: int
    code_challenge: str | None = None
    used: bool = False


@dataclass(frozen=True, slots=True)
class AuthorizedApp:
    """An app holding live user tokens of a user (the user's "authorized apps" list)."""

    app: App
    scopes: tuple[str, ...]
    authorized_at_ms: int


#: `finish_upload` file types (spec §8.4).
UPLOAD_FILE_TYPES = ("mly_bundle_manifest", "zip", "mly_camm_video", "mly_blackvue_video")


@dataclass(frozen=True, slots=True)
class UploadSession:
    """A user's upload session (spec §8.3): the bytes live in a staged file, `size` long when
    last acknowledged; `handle` is the opaque file handle given to the client."""

    id: int
    user_id: int
    session_key: str
    handle: str
    size: int
    created_at_ms: int
    updated_at_ms: int
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class UploadFinish:
    """A `finish_upload` of one handle; `cluster_id` is what the client was told. `result` is
    the ingest job's outcome (None until it ran)."""

    cluster_id: int
    session_id: int
    handle: str
    user_id: int
    file_type: str
    organization_id: int | None
    job_id: int | None
    result: dict[str, object] | None
    created_at_ms: int


#: Instance roles (`User.role`): admins may do anything an owner may, to anyone's data, and
#: moderate; moderators work the report queue (hide, delete, dismiss).
INSTANCE_ROLES = ("admin", "moderator")
#: Roles in an organization: its admins manage members and the organization's images.
ORGANIZATION_ROLES = ("admin", "member")


@dataclass(frozen=True, slots=True)
class Membership:
    """A user's place in an organization: "active", or "invited" until they accept."""

    organization_id: int
    user_id: int
    role: str = "member"
    status: str = "active"
    invited_by: int | None = None
    created_at_ms: int = 0
    username: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One action in the audit log: who did what to which target, and when."""

    #: What was done, `noun.verb`: "image.delete", "sequence.split", "report.resolve", ….
    action: str
    #: The acting user (None: an operator at the command line).
    actor_id: int | None
    target_kind: str
    target_id: str
    #: The organization the target belongs to, when it does (its admins may read the entry).
    organization_id: int | None = None
    #: Action-specific facts (JSON-serialisable): counts, old and new values, a reason.
    details: dict[str, object] = field(default_factory=dict)
    id: int = 0
    at_ms: int = 0
    actor_username: str | None = None


@dataclass(frozen=True, slots=True)
class HiddenImage:
    """An image a moderator hid: out of every tile and of every Graph answer except to its
    owner and moderators."""

    image_id: int
    hidden_at_ms: int
    hidden_by: int | None = None
    reason: str = ""
    owner_id: int | None = None
    organization_id: int | None = None


#: Why an image is reported.
REPORT_REASONS = ("privacy", "offensive", "wrong_location", "other")


@dataclass(frozen=True, slots=True)
class Report:
    """A user's report of an image, open until a moderator resolves it."""

    id: int
    image_id: int
    reporter_id: int
    reason: str
    comment: str = ""
    #: The image's owner and organization when reported (moderation queues filter on them).
    owner_id: int | None = None
    organization_id: int | None = None
    status: str = "open"
    #: "hidden", "deleted" or "dismissed" once resolved.
    resolution: str | None = None
    resolver_id: int | None = None
    created_at_ms: int = 0
    resolved_at_ms: int | None = None


#: States of a data export: queued → running → done → expired, or failed.
EXPORT_STATES = ("queued", "running", "done", "failed", "expired")


@dataclass(frozen=True, slots=True)
class Export:
    """A user's download of all their data: a zip made by a background job (issue #17)."""

    id: int
    user_id: int
    state: str = "queued"
    #: Images written so far / images to write (0 until the job has counted them).
    progress: int = 0
    total: int = 0
    size_bytes: int | None = None
    #: Where the finished zip lives in the blob store (private, never served as media).
    blob_key: str | None = None
    error: str | None = None
    created_at_ms: int = 0
    updated_at_ms: int = 0
    finished_at_ms: int | None = None
    expires_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ImageCorrection:
    """An owner's correction of one image (`Store.correct_images`); None leaves a value as
    it is. The first correction keeps the values as uploaded (`OriginalValues`)."""

    image_id: int
    lon: float | None = None
    lat: float | None = None
    compass_angle_deg: float | None = None
    captured_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class OriginalValues:
    """An image's position, compass angle and capture time as uploaded, kept since its first
    correction (`Store.image_originals`)."""

    image_id: int
    lon: float
    lat: float
    compass_angle_deg: float | None
    captured_at_ms: int
    #: When it was last corrected.
    corrected_at_ms: int


@dataclass(frozen=True, slots=True)
class EditedImages:
    """What a correction, a split or a merge changed (`wayview.store.parts.edits`)."""

    #: Images whose position, angle, capture time or sequence changed (ascending).
    image_ids: tuple[int, ...] = ()
    #: Sequences whose rows and tiles were rebuilt, including a new one (ascending).
    sequence_ids: tuple[str, ...] = ()
    #: Sequences left without images (merged away).
    emptied_sequence_ids: tuple[str, ...] = ()
    #: The values of the corrected images before the correction, by image id.
    previous: tuple[ImageCorrection, ...] = ()


@dataclass(frozen=True, slots=True)
class SequenceSummary:
    """One sequence as its owner's page lists it (`Store.sequences_of`)."""

    id: str
    creator_id: int
    organization_id: int | None
    image_count: int
    first_captured_at_ms: int | None
    last_captured_at_ms: int | None
