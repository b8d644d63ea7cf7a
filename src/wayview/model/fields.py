"""wayview.model.fields: `fields=` parsing (plain, brace, dot) and the per-node-type field registry.

Wire names (`captured_at`, `thumb_1024_url`) live here and in the renderer only (STYLE rule 3).
"""

from __future__ import annotations

import re
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


@dataclass(frozen=True, slots=True)
class FieldLimits:
    """Bounds on one `fields` value, checked while it is parsed (settings `graph.fields_*`)."""

    max_length: int = 4096
    max_depth: int = 6
    max_names: int = 256


DEFAULT_LIMITS = FieldLimits()
_TOKENS = re.compile(r"[{},.]|[^{},.]+")


def parse_fields(text: str | None, limits: FieldLimits = DEFAULT_LIMITS) -> FieldTree:
    """Parse a `fields` value into a tree (cached: clients repeat the same few selections).

    The returned tree is shared between calls and must not be modified. Parsing is iterative
    and bounded by `limits` (E9 naming the limit beyond them), whatever the input.

    >>> parse_fields("id, creator{username},detections.value,,id")
    {'id': None, 'creator': {'username': None}, 'detections': {'value': None}}
    >>> parse_fields("a{" * 7 + "}" * 7)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wayview.errors.InvalidParameter: Invalid parameter fields: nested deeper than 6 levels ...
    """
    if not text:
        return {}
    if len(text) > limits.max_length:
        raise InvalidParameter(
            "fields", f"longer than {limits.max_length} characters (graph.fields_max_length)")
    return _parse_cached(text, limits)


@lru_cache(maxsize=1024)
def _parse_cached(text: str, limits: FieldLimits) -> FieldTree:
    return _Parser(limits).parse(text)


class _Parser:
    """A one-pass state machine over the tokens `{ } , .` and names (no recursion).

    Grammar: list = item ("," item)*; item = "" | path ["{" list "}"]; path = name ("." name)*.
    `a{}` selects the reference's defaults, like `a`.
    """

    def __init__(self, limits: FieldLimits) -> None:
        self.limits = limits
        self.names = 0

    def _malformed(self, why: str) -> InvalidParameter:
        return InvalidParameter("fields", why)

    def _check_depth(self, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise InvalidParameter(
                "fields", f"nested deeper than {self.limits.max_depth} levels "
                "(graph.fields_max_depth)")

    def _node(self, tree: FieldTree, name: str, depth: int) -> FieldTree:
        """The sub-tree of `name` in `tree`, created (and counted) when absent or a scalar."""
        self._check_depth(depth)
        sub = tree.get(name)
        if sub is None:
            if name not in tree:
                self._count()
            sub = tree[name] = {}
        return sub

    def _count(self) -> None:
        self.names += 1
        if self.names > self.limits.max_names:
            raise InvalidParameter(
                "fields", f"more than {self.limits.max_names} field names "
                "(graph.fields_max_names)")

    def _add_path(self, tree: FieldTree, path: list[str], depth: int) -> None:
        for name in path[:-1]:
            depth += 1
            tree = self._node(tree, name, depth)
        last = path[-1]
        self._check_depth(depth + 1)
        if last not in tree:
            self._count()
            tree[last] = None

    def parse(self, text: str) -> FieldTree:
        root: FieldTree = {}
        # Open braces: (the tree being filled, its parent, its name in the parent).
        stack: list[tuple[FieldTree, FieldTree | None, str]] = [(root, None, "")]
        parts: list[str] = []
        current: str | None = None  # the name being read; None after a "." or at item start
        closed = False  # a "}" ended the item: only "," or "}" may follow

        def finish_item() -> None:
            nonlocal parts, current
            if closed:
                return
            if current is None and not parts:
                return  # an empty item: `a,,b`
            if not current:
                raise self._malformed(f"malformed selector {'.'.join(parts)!r}.")
            self._add_path(stack[-1][0], [*parts, current], len(stack) - 1)
            parts, current = [], None

        for token in _TOKENS.findall(text):
            if token == ",":
                finish_item()
                closed = False
            elif token == "}":
                finish_item()
                if len(stack) == 1:
                    raise self._malformed("unbalanced braces")
                tree, parent, name = stack.pop()
                if not tree and parent is not None:
                    parent[name] = None
                closed = True
            elif closed:
                if token.strip():
                    raise self._malformed(f"unexpected {token.strip()!r} after '}}'")
            elif token == ".":
                if not current:
                    raise self._malformed("empty name before '.'")
                parts.append(current)
                current = None
            elif token == "{":
                if not current:
                    raise self._malformed("'{' without a field name")
                parent = stack[-1][0]
                depth = len(stack) - 1
                for name in parts:
                    depth += 1
                    parent = self._node(parent, name, depth)
                stack.append((self._node(parent, current, depth + 1), parent, current))
                parts, current = [], None
            else:
                name = token.strip()
                if current is not None or (not name and parts):
                    raise self._malformed(f"malformed selector near {token!r}")
                current = name if name or parts else None
        finish_item()
        if len(stack) != 1:
            raise self._malformed("unbalanced braces")
        return root


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
