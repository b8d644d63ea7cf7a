"""wayview.model.fields: `fields=` parsing (plain, brace, dot) and the per-node-type field registry.

Wire names (`captured_at`, `thumb_1024_url`) live here and in the renderer only (STYLE rule 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from wayview.errors import InvalidParameter, UnknownField

#: A parsed selection: field name → sub-selection (None = the reference's defaults / a scalar).
FieldTree = dict[str, "FieldTree | None"]


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference from one node type to another (spec §3.1)."""

    target: str
    default: tuple[str, ...]
    edge: bool  # True: {"data": [...]}; False: an object


@dataclass(frozen=True, slots=True)
class NodeType:
    """The fields a node type has."""

    name: str
    scalars: frozenset[str]
    refs: dict[str, Ref]

    def knows(self, field: str) -> bool:
        """Whether `field` exists on this type."""
        return field in self.scalars or field in self.refs


IMAGE_SCALARS = frozenset({
    "id", "altitude", "atomic_scale", "camera_parameters", "camera_type", "captured_at",
    "compass_angle", "computed_altitude", "computed_compass_angle", "computed_geometry",
    "computed_rotation", "exif_orientation", "geometry", "height", "make", "model",
    "thumb_256_url", "thumb_1024_url", "thumb_2048_url", "thumb_original_url", "merge_cc",
    "quality_score", "sequence", "width", "is_pano",
})

NODE_TYPES: dict[str, NodeType] = {
    "Image": NodeType(
        "Image",
        IMAGE_SCALARS,
        {
            "creator": Ref("User", ("id", "username"), edge=False),
            "organization": Ref("Organization", ("id",), edge=False),
            "detections": Ref("Detection", ("id",), edge=True),
            "mesh": Ref("Asset", ("id", "url"), edge=False),
            "sfm_cluster": Ref("Asset", ("id", "url"), edge=False),
        },
    ),
    "MapFeature": NodeType(
        "MapFeature",
        frozenset({"id", "object_value", "object_type", "geometry", "aligned_direction",
                   "first_seen_at", "last_seen_at"}),
        {"images": Ref("Image", ("id", "geometry"), edge=True)},
    ),
    "Detection": NodeType(
        "Detection",
        frozenset({"id", "value", "geometry", "created_at"}),
        {"image": Ref("Image", ("id", "geometry"), edge=False)},
    ),
    "Organization": NodeType("Organization", frozenset({"id", "slug", "name", "description"}), {}),
    "User": NodeType("User", frozenset({"id", "username"}), {}),
    "Asset": NodeType("Asset", frozenset({"id", "url"}), {}),
    "ImageTile": NodeType("ImageTile", frozenset({"url", "z", "x", "y"}), {}),
}


def _split_top(text: str) -> list[str]:
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise InvalidParameter("fields", "unbalanced braces")
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise InvalidParameter("fields", "unbalanced braces")
    items.append(text[start:])
    return items


def _merge(tree: FieldTree, name: str, sub: FieldTree | None) -> None:
    if name in tree:
        old = tree[name]
        if old is None:
            tree[name] = sub
        elif sub is not None:
            for k, v in sub.items():
                _merge(old, k, v)
    else:
        tree[name] = sub


def parse_fields(text: str | None) -> FieldTree:
    """Parse a `fields` value into a tree (cached: clients repeat the same few selections).

    The returned tree is shared between calls and must not be modified.

    >>> parse_fields("id, creator{username},detections.value,,id")
    {'id': None, 'creator': {'username': None}, 'detections': {'value': None}}
    """
    if not text:
        return {}
    return _parse_cached(text)


@lru_cache(maxsize=1024)
def _parse_cached(text: str) -> FieldTree:
    return _parse(text)


def _parse(text: str) -> FieldTree:
    tree: FieldTree = {}
    for raw in _split_top(text):
        item = raw.strip()
        if not item:
            continue
        if "{" in item:
            head, _, rest = item.partition("{")
            if not rest.endswith("}"):
                raise InvalidParameter("fields", f"malformed selector {item!r}")
            name, sub = head.strip(), _parse(rest[:-1])
            dotted = name.split(".")
            for part in reversed(dotted[1:]):
                sub = {part.strip(): sub}
            name = dotted[0].strip()
        else:
            parts = [p.strip() for p in item.split(".")]
            name, sub = parts[0], None
            for part in reversed(parts[1:]):
                sub = {part: sub}
        if not name or (sub is not None and any(not k for k in sub)):
            raise InvalidParameter("fields", f"malformed selector {item!r}")
        _merge(tree, name, sub)
    return tree


def validate(tree: FieldTree, node_type: str) -> None:
    """Raise UnknownField (E8) for the first name the type does not have, at any depth."""
    spec = NODE_TYPES[node_type]
    for name, sub in tree.items():
        if not spec.knows(name):
            raise UnknownField(name, node_type)
        if sub is not None:
            ref = spec.refs.get(name)
            if ref is None:
                raise UnknownField(f"{name}.{next(iter(sub))}", node_type)
            validate(sub, ref.target)


def selection(tree: FieldTree | None, ref: Ref) -> FieldTree:
    """The effective sub-selection of a reference: explicit fields (+ id) or its defaults.

    >>> selection(None, NODE_TYPES["Image"].refs["creator"])
    {'id': None, 'username': None}
    """
    if not tree:
        return {name: None for name in ref.default}
    out: FieldTree = {"id": None} if "id" in NODE_TYPES[ref.target].scalars else {}
    out.update(tree)
    return out
