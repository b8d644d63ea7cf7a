"""wayview.store.base: the Store protocol, one method per use; every backend implements it."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence as Seq
from contextvars import ContextVar
from typing import Protocol

from wayview.model.entities import (
    ComputedFields,
    DeletedImages,
    Detection,
    DetectionSearch,
    FeatureChanges,
    Image,
    ImageSearch,
    MapFeature,
    MapFeatureSearch,
    Organization,
    Page,
    Sequence,
    TileContent,
    TileFeatureColumns,
    TileImageColumns,
    TileLine,
    User,
)
from wayview.store.parts.accounts import AccountsStore
from wayview.store.parts.blurs import BlursStore
from wayview.store.parts.edits import EditsStore
from wayview.store.parts.exports import ExportsStore
from wayview.store.parts.governance import GovernanceStore
from wayview.store.parts.jobs import JobsStore
from wayview.store.parts.profiles import ProfilesStore
from wayview.store.parts.rendered import RenderedTilesStore
from wayview.store.parts.uploads import UploadsStore

#: Node kinds sharing the one id space (spec §1.3). `upload_cluster` ids (the `cluster_id` of a
#: `finish_upload`) are drawn from it too but are not Graph nodes: `GET /{id}` answers E7.
NODE_KINDS = ("image", "map_feature", "detection", "organization", "user", "app",
              "upload_cluster")

#: Seconds one database call of the current API request may wait for the database (checkout
#: and answer together), set by the app for each request (`database_request_timeout_s`);
#: None outside requests: jobs and commands wait as long as `statement_timeout` lets them.
call_deadline_s: ContextVar[float | None] = ContextVar("wayview_call_deadline_s", default=None)


class Store(AccountsStore, JobsStore, UploadsStore, GovernanceStore, EditsStore, ExportsStore,
            BlursStore, ProfilesStore, RenderedTilesStore, Protocol):
    """Persistence for every entity. Methods return model objects, never rows.

    All methods are coroutines; implementations never block the event loop.
    """

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and migrate to the newest schema. Called by app lifespan and the CLI."""

    async def close(self) -> None:
        """Release connections and threads."""

    # -- nodes -----------------------------------------------------------------------------
    async def reserve_ids(self, kind: str, count: int) -> list[int]:
        """Mint `count` fresh node ids of `kind` in the shared id space. Called by ingest/CLI."""

    async def node_kinds(self, ids: Seq[int]) -> dict[int, str]:
        """The kind of each known id. Called by GET /?ids=."""

    async def get_node(self, node_id: int) -> tuple[str, object] | None:
        """The kind and entity of one node id (one round trip). Called by GET /{id}."""

    # -- users, organizations --------------------------------------------------------------
    async def create_user(
        self, username: str, *, email: str | None = None, password_hash: str | None = None
    ) -> User:
        """Create a user; raises Conflict if the username (case-insensitive) is taken."""

    async def get_users(self, ids: Seq[int]) -> dict[int, User]:
        """Users by id. Called by GET /{id}, /me and nested `creator` fields."""

    async def get_user_by_username(self, username: str) -> User | None:
        """A user by name (case-insensitive). Called by the CLI and creator searches."""

    async def create_organization(
        self, slug: str, *, name: str = "", description: str = ""
    ) -> Organization:
        """Create an organization; raises Conflict if the slug is taken."""

    async def get_organizations(self, ids: Seq[int]) -> dict[int, Organization]:
        """Organizations by id. Called by GET /{id} and nested `organization` fields."""

    async def add_organization_member(self, organization_id: int, user_id: int) -> None:
        """Make a user a member (idempotent)."""

    async def is_organization_member(self, organization_id: int, user_id: int) -> bool:
        """Whether the user belongs to the organization. Called by import and finish_upload."""

    # -- images and sequences --------------------------------------------------------------
    async def insert_sequence(self, sequence: Sequence, images: Seq[Image]) -> None:
        """Insert a sequence and its images atomically (ids reserved with reserve_ids)."""

    async def find_images_by_sha256(self, hashes: Iterable[str]) -> dict[str, int]:
        """Image ids already stored for these content hashes. Called by import (dedup)."""

    async def get_images(self, ids: Seq[int]) -> dict[int, Image]:
        """Images by id, with `creator_username` filled. Called by GET /{id} and lookups."""

    async def search_images(self, q: ImageSearch) -> Page[Image]:
        """Filtered images ordered by (captured_at, id), at most `q.limit` (None = all).

        Called by GET /images, /image_ids. With `q.image_ids` the order is the request order.
        """

    async def relabel_merge_cc(self, old: Seq[int], new: int) -> int:
        """Give every image whose `merge_cc` is in `old` the `merge_cc` `new`; how many
        changed. Called when a new sequence joins stored components."""

    async def count_images(self) -> int:
        """How many images are stored. Called by the CLI and the demo."""

    # -- map features and detections -------------------------------------------------------
    async def insert_map_features(self, features: Seq[MapFeature]) -> None:
        """Insert map features (ids reserved with reserve_ids)."""

    async def insert_detections(self, detections: Seq[Detection]) -> None:
        """Insert detections (ids reserved with reserve_ids)."""

    async def replace_detections(self, image_ids: Seq[int], detections: Seq[Detection]
                                 ) -> list[int]:
        """Delete every detection of `image_ids` and insert `detections` (of those images),
        in one transaction; the ids of the map features the deleted ones were evidence of.
        Called by `wayview reprocess`."""

    async def set_quality_scores(self, scores: Seq[tuple[int, float | None]]) -> None:
        """Set `quality_score` of images by id (unknown ids are ignored)."""

    async def set_computed_fields(self, fields: Seq[ComputedFields]) -> int:
        """Replace the computed fields of stored images (unknown ids are ignored), in one
        transaction; how many images changed (an image written with the values it already
        has does not count). The `mly1_computed_public` tile index of every sequence whose
        computed positions or angles changed is rebuilt, and the "computed" tile epochs of
        every old and new computed position (every zoom) and of every old and new line tile
        are bumped, so those tiles are rendered again; `mly1_public` is not touched.
        Called by the SfM job (`wayview.pipeline.sfm_job`)."""

    async def delete_images(self, image_ids: Seq[int]) -> DeletedImages:
        """Delete images and everything in the store that hangs on them, in one transaction:
        their rows and node ids (they then answer like ids that never existed), their
        detections, their rows in both tile indexes (original and computed positions: the
        sequence lines and overview cells are rebuilt without them), and sequences left
        empty. The tile epochs of every cell that showed them are bumped (both tilesets, all
        zooms). Unknown ids are ignored; deleting twice is a no-op. Blobs are the caller's
        (`wayview.pipeline.delete`)."""

    async def apply_feature_changes(self, changes: FeatureChanges) -> None:
        """Insert, move or delete map features and relink detections, in one transaction;
        the z14 tile epochs of every old and new position are bumped. Called by the
        perception stage of the pipeline."""

    async def get_map_features(self, ids: Seq[int]) -> dict[int, MapFeature]:
        """Map features by id. Called by GET /{id}."""

    async def get_detections(self, ids: Seq[int]) -> dict[int, Detection]:
        """Detections by id. Called by GET /{id}."""

    async def search_map_features(self, q: MapFeatureSearch) -> Page[MapFeature]:
        """Map features in a bbox, ordered by id. Called by GET /map_features."""

    async def search_detections(self, q: DetectionSearch) -> Page[Detection]:
        """Detections whose image lies in a bbox, ordered by id. Called by GET /detections."""

    async def detections_for_images(self, image_ids: Seq[int]) -> dict[int, list[Detection]]:
        """Each image's detections ordered by id. Called by GET /{image_id}/detections."""

    async def detections_for_features(self, feature_ids: Seq[int]) -> dict[int, list[Detection]]:
        """Each feature's detections, newest image first. Called by GET /{feature}/detections."""

    async def image_ids_for_features(self, feature_ids: Seq[int]) -> dict[int, list[int]]:
        """Ids of the images that saw each feature (by capture time). Called by `images` edges."""

    # -- vector tiles ----------------------------------------------------------------------
    # Writers keep the tile index in step inside insert_sequence / set_computed_fields /
    # insert_map_features / apply_feature_changes (see wayview.tiles.index); these reads never
    # scan raw images beyond one tile's range.
    async def tile_epoch(self, group: str, z: int, x: int, y: int) -> int:
        """The write epoch of a tile (0 = never written) in one group: "images" (original
        positions), "computed" (computed positions, falling back to the original ones) or
        "features".

        Called by GET /maps/vtp/… for every request (cache validation).
        """

    async def tile_images(self, z: int, x: int, y: int) -> TileImageColumns:
        """Every image inside a tile. Called by the z14 `image` layer."""

    async def tile_overview(self, z: int, x: int, y: int) -> TileImageColumns:
        """The representative images of a z0–5 tile. Called by the `overview` layer."""

    async def tile_sequence_lines(self, z: int, x: int, y: int) -> list[TileLine]:
        """The pre-clipped sequence lines of a z6–14 tile. Called by the `sequence` layer."""

    async def tile_content(self, z: int, x: int, y: int, layers: Seq[str], *,
                           computed: bool = False, epoch: int | None = None) -> TileContent:
        """The rows of each layer named in `layers` ("image", "overview", "sequence"), read in
        one snapshot and one call (one thread hop / one round trip). Called for every tile
        render; the three methods above are its single-layer forms (original positions).

        With `computed`, images and lines are at the computed positions and angles, falling
        back to the original ones (`mly1_computed_public`, spec §4.2): a point lies in the tile
        holding its computed position only.

        `epoch` is the tile's epoch the caller read (and will cache the tile under): a
        backend reading from a replica (PostgreSQL, `database_replica_urls`) uses the
        replica only when it has reached that epoch, else the primary.
        """

    async def tile_map_features(
        self, object_type: str, z: int, x: int, y: int
    ) -> TileFeatureColumns:
        """Map features of one type in a tile. Called by the map-feature tilesets."""
