"""wayview.graph.service: the Graph API use cases (lookups, searches) over the store.

Order of checks inside each use (spec §1.9): node lookup → field validation → parameters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wayview.errors import InvalidParameter, MissingParameter, NodeNotFound, UserTokenRequired
from wayview.graph import params
from wayview.graph.render import AssetUrl, Json, Renderer
from wayview.ids import is_sequence_key, parse_id
from wayview.model.entities import Detection, Image, ImageSearch, Principal
from wayview.model.fields import FieldLimits, FieldTree, parse_fields, validate
from wayview.settings import Settings
from wayview.store.base import Store

#: store node kind → Graph node type (apps are nodes but not visible through the graph).
VISIBLE_KINDS = {
    "image": "Image", "map_feature": "MapFeature", "detection": "Detection",
    "organization": "Organization", "user": "User",
}


class Visibility:
    """Who sees hidden images (issue #17): their owner, instance moderators and admins, and
    the admins of the image's organization; nobody else, whatever the token. The caller's
    rights are looked up only when an answer holds a hidden image."""

    def __init__(self, store: Store, viewer: Principal | None) -> None:
        self.store = store
        self.user_id = viewer.user_id if viewer is not None else None
        self._rights: tuple[bool, set[int]] | None = None

    async def _may_see(self, image: Image) -> bool:
        if self.user_id is None:
            return False
        if image.creator_id == self.user_id:
            return True
        if self._rights is None:
            from wayview.auth.permissions import admin_of, instance_role

            everything = await instance_role(self.store, self.user_id) in ("admin", "moderator")
            self._rights = (everything, set() if everything else await admin_of(
                self.store, self.user_id))
        everything, orgs = self._rights
        return everything or (image.organization_id is not None and image.organization_id in orgs)

    async def images(self, images: Sequence[Image]) -> list[Image]:
        """The images the viewer may see, in order."""
        # The store reads the flag with the image; only images from elsewhere need a query.
        unknown = [im.id for im in images if im.hidden is None]
        hidden = {im.id for im in images if im.hidden}
        if unknown:
            hidden |= await self.store.hidden_among(unknown)
        if not hidden:
            return list(images)
        return [im for im in images if im.id not in hidden or await self._may_see(im)]

    async def detections(self, detections: Sequence[Detection]) -> list[Detection]:
        """The detections the viewer may see (those of images they may see), in order."""
        image_ids = sorted({d.image_id for d in detections})
        hidden = await self.store.hidden_among(image_ids) if image_ids else set()
        if not hidden:
            return list(detections)
        found = await self.store.get_images(sorted(hidden))
        allowed = {i for i, im in found.items() if await self._may_see(im)}
        return [d for d in detections if d.image_id not in hidden or d.image_id in allowed]


@dataclass(frozen=True, slots=True)
class Collection:
    """A search result: rendered rows plus the cursor of the next page, if any."""

    data: list[Json]
    after: str | None = None


class Graph:
    """Graph API operations; every method raises domain errors, never HTTP ones."""

    def __init__(self, store: Store, settings: Settings,
                 asset_url: AssetUrl | None = None) -> None:
        """`asset_url(image_id, variant)` gives thumbnail URLs when assets are not served by
        wayview itself (a public or presigned object-storage URL)."""
        self.store = store
        self.settings = settings
        self.renderer = Renderer(store, settings.base_url, asset_url,
                                 settings.graph.max_rendered_objects)
        graph = settings.graph
        self.field_limits = FieldLimits(
            graph.fields_max_length, graph.fields_max_depth, graph.fields_max_names)

    def _fields(self, text: str | None, node_type: str) -> FieldTree:
        """Parse (within the configured limits) and validate a `fields` value."""
        tree = parse_fields(text, self.field_limits)
        validate(tree, node_type)
        return tree

    async def node(self, id_text: str, fields: str | None, *, method: str = "get",
                   viewer: Principal | None = None) -> Json:
        """GET /{id}: one node of any visible type (a hidden image, or a detection of one,
        only to those who may see it: E7 otherwise)."""
        node_id = parse_id(id_text)
        found = await self.store.get_node(node_id) if node_id is not None else None
        if found is None or found[0] not in VISIBLE_KINDS:
            raise NodeNotFound(id_text, method)
        kind, entity = found
        visibility = Visibility(self.store, viewer)
        if (isinstance(entity, Image) and not await visibility.images([entity])) or (
                isinstance(entity, Detection) and not await visibility.detections([entity])):
            raise NodeNotFound(id_text, method)
        node_type = VISIBLE_KINDS[kind]
        tree = self._fields(fields, node_type)
        return (await self.renderer.render(node_type, [entity], tree))[0]

    async def me(self, principal: Principal, fields: str | None) -> Json:
        """GET /me: the user behind a user token (E5 for client tokens)."""
        if principal.user_id is None:
            raise UserTokenRequired()
        user = (await self.store.get_users([principal.user_id])).get(principal.user_id)
        if user is None:
            raise UserTokenRequired()
        tree = self._fields(fields, "User")
        return (await self.renderer.render("User", [user], tree))[0]

    async def many(self, ids_text: str, fields: str | None, *,
                   viewer: Principal | None = None) -> Json:
        """GET /?ids=A,B: an object keyed by id; unknown ids are omitted (spec §3.8)."""
        wanted = params.parse_id_list("ids", ids_text, self.settings.ids.max_per_request)
        if not wanted:
            raise MissingParameter("ids")
        tree = parse_fields(fields, self.field_limits)
        kinds = await self.store.node_kinds(wanted)
        by_type: dict[str, list[int]] = {}
        for node_id in dict.fromkeys(wanted):
            kind = kinds.get(node_id)
            if kind in VISIBLE_KINDS:
                by_type.setdefault(VISIBLE_KINDS[kind], []).append(node_id)
        for node_type in by_type:
            validate(tree, node_type)
        rendered: dict[int, Json] = {}
        budget = self.renderer.budget()
        loaders: dict[str, Callable[[Sequence[int]], Awaitable[dict[int, Any]]]] = {
            "Image": self.store.get_images, "MapFeature": self.store.get_map_features,
            "Detection": self.store.get_detections,
            "Organization": self.store.get_organizations, "User": self.store.get_users,
        }
        visibility = Visibility(self.store, viewer)
        for node_type, node_ids in by_type.items():
            found = await loaders[node_type](node_ids)
            present = [found[i] for i in node_ids if i in found]
            if node_type == "Image":
                present = await visibility.images(present)
            elif node_type == "Detection":
                present = await visibility.detections(present)
            for entity, obj in zip(
                present, await self.renderer.render(node_type, present, tree, budget),
                strict=True
            ):
                rendered[entity.id] = obj
        return {str(i): rendered[i] for i in dict.fromkeys(wanted) if i in rendered}

    async def images(self, q: params.Query, *, viewer: Principal | None = None) -> Collection:
        """GET /images: image search (spec §3.9–3.10)."""
        tree = self._fields(q.get("fields"), "Image")
        search = params.image_search(q, self.settings)
        return await self._image_collection(search, tree, viewer)

    async def _image_collection(self, search: ImageSearch, tree: FieldTree,
                                viewer: Principal | None) -> Collection:
        page = await self.store.search_images(search)
        # Hidden images drop out of a page (the cursor stays the store's, so paging holds).
        items = await Visibility(self.store, viewer).images(page.items)
        data = await self.renderer.render("Image", items, tree)
        after = params.encode_cursor(page.next_after) if page.next_after else None
        return Collection(data, after)

    async def image_ids(self, q: params.Query, *, viewer: Principal | None = None
                        ) -> Collection:
        """GET /image_ids?sequence_id=: every image of a sequence in capture order."""
        sequence_id = q.get("sequence_id", "").strip()
        if not sequence_id:
            raise MissingParameter("sequence_id")
        tree = self._fields(q.get("fields"), "Image")
        if not is_sequence_key(sequence_id):
            return Collection([])
        return await self._image_collection(ImageSearch(sequence_ids=(sequence_id,)), tree,
                                            viewer)

    async def map_features(self, q: params.Query) -> Collection:
        """GET /map_features (spec §3.11)."""
        tree = self._fields(q.get("fields"), "MapFeature")
        page = await self.store.search_map_features(params.map_feature_search(q, self.settings))
        data = await self.renderer.render("MapFeature", page.items, tree)
        return Collection(data, params.encode_cursor(page.next_after)
                          if page.next_after else None)

    async def detections(self, q: params.Query, *, viewer: Principal | None = None
                         ) -> Collection:
        """GET /detections (spec §3.11)."""
        tree = self._fields(q.get("fields"), "Detection")
        page = await self.store.search_detections(params.detection_search(q, self.settings))
        items = await Visibility(self.store, viewer).detections(page.items)
        data = await self.renderer.render("Detection", items, tree)
        return Collection(data, params.encode_cursor(page.next_after)
                          if page.next_after else None)

    async def image_tiles(self, id_text: str, z_text: str | None, fields: str | None, *,
                          viewer: Principal | None = None) -> Collection:
        """GET /{image_id}/tiles?z=: the complete tile grid of one pyramid level (§3.12)."""
        from wayview.pipeline.pyramid import grid, levels

        node_id = parse_id(id_text)
        images = await self.store.get_images([node_id]) if node_id else {}
        image = images.get(node_id) if node_id else None
        if image is None or not await Visibility(self.store, viewer).images([image]):
            raise NodeNotFound(id_text)
        if z_text is None or z_text == "":
            raise MissingParameter("z")
        valid = levels(image.width, image.height)
        if not (z_text.isascii() and z_text.isdigit()) or int(z_text) not in valid:
            raise InvalidParameter("z", f"must be an integer from 0 to {valid.stop - 1}")
        z = int(z_text)
        tree = self._fields(fields or "url,z,x,y", "ImageTile")
        columns, rows = grid(image.width, image.height, z)
        data = []
        for y in range(rows):
            for x in range(columns):
                entry = {"url": self.renderer.asset_url(image.id, f"tile_{z}_{x}_{y}",
                                                        image.media_version),
                         "z": z, "x": x, "y": y}
                data.append({name: entry[name] for name in tree})
        return Collection(data)

    async def detections_of(self, id_text: str, fields: str | None, *,
                            viewer: Principal | None = None) -> Collection:
        """GET /{image_id}/detections and GET /{map_feature_id}/detections (complete)."""
        node_id = parse_id(id_text)
        kind = (await self.store.node_kinds([node_id])).get(node_id) if node_id else None
        if node_id is None or kind not in ("image", "map_feature"):
            raise NodeNotFound(id_text)
        visibility = Visibility(self.store, viewer)
        if kind == "image":
            image = (await self.store.get_images([node_id])).get(node_id)
            if image is None or not await visibility.images([image]):
                raise NodeNotFound(id_text)
            found = (await self.store.detections_for_images([node_id]))[node_id]
        else:
            if not await self.store.get_map_features([node_id]):
                raise NodeNotFound(id_text)
            found = await visibility.detections(
                (await self.store.detections_for_features([node_id]))[node_id])
        tree = self._fields(fields, "Detection")
        return Collection(await self.renderer.render("Detection", found, tree))
