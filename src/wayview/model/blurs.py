"""wayview.model.blurs: the blur regions of one image and the edits its managers made to them
(issue #17, re-blur).

Coordinates are normalised to the stored pixel grid (u, v in 0..1, origin top-left, v down;
EXIF orientation not applied), like detection geometries, so they do not depend on the size of
the copy a viewer shows.

- `AutoRegion`: a region the blurrer found (a face or a plate), with a stable id ("a0", "a1",
  …) that an edit names to remove it;
- `BlurShape`: a region a person added: a rectangle (two corners) or a polygon (3 to
  `MAX_POLYGON_POINTS` points);
- `BlurEdits`: one image's state: the automatic regions (None until first looked at), the
  added shapes, the removed automatic ids, the `revision` (the media version the newest edit
  is rendered as) and the last rendering error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from wayview.errors import InvalidParameter

__all__ = [
    "MAX_ADDED",
    "MAX_POLYGON_POINTS",
    "AutoRegion",
    "BlurEdits",
    "BlurShape",
    "automatic_from_text",
    "automatic_to_text",
    "parse_removed",
    "parse_shapes",
    "shapes_from_text",
    "shapes_json",
    "shapes_to_text",
]

#: At most this many added shapes per image.
MAX_ADDED = 200
#: At most this many points per polygon.
MAX_POLYGON_POINTS = 64
#: A shape smaller than this (normalised width or height) is refused: nothing would be hidden.
_MIN_SIDE = 1e-4

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class AutoRegion:
    """A region the blurrer found: `box` = (u0, v0, u1, v1), before the blur's margin."""

    id: str
    kind: str
    box: tuple[float, float, float, float]

    def to_json(self) -> dict[str, object]:
        """The wire form: {"id", "kind", "box": [u0, v0, u1, v1]}."""
        return {"id": self.id, "kind": self.kind, "box": list(self.box)}


@dataclass(frozen=True, slots=True)
class BlurShape:
    """A region a person added: "rect" (points = two opposite corners) or "polygon"."""

    kind: str
    points: tuple[Point, ...]

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(u0, v0, u1, v1) around the shape."""
        us = [p[0] for p in self.points]
        vs = [p[1] for p in self.points]
        return min(us), min(vs), max(us), max(vs)

    def to_json(self) -> dict[str, object]:
        """The wire form: {"type": "rect", "box": [u0, v0, u1, v1]} or
        {"type": "polygon", "points": [[u, v], …]}."""
        if self.kind == "rect":
            return {"type": "rect", "box": list(self.bbox)}
        return {"type": "polygon", "points": [list(p) for p in self.points]}


@dataclass(frozen=True, slots=True)
class BlurEdits:
    """The blur edits of one image (`wayview.store.parts.blurs`)."""

    image_id: int
    #: The media version the newest edit renders as; the image is up to date when its
    #: `media_version` has reached it. 0: never edited.
    revision: int = 0
    added: tuple[BlurShape, ...] = ()
    removed: tuple[str, ...] = ()
    #: What the blurrer found, recorded once (None: not looked at yet).
    automatic: tuple[AutoRegion, ...] | None = None
    updated_at_ms: int = 0
    updated_by: int | None = None
    #: Why the newest revision could not be rendered (None: no failure).
    error: str | None = None


def _coordinate(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameter(name, "coordinates are numbers from 0 to 1")
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise InvalidParameter(name, "coordinates are numbers from 0 to 1")
    return number


def _shape(name: str, item: object) -> BlurShape:
    if not isinstance(item, dict):
        raise InvalidParameter(name, 'expected {"type": "rect", "box": [u0, v0, u1, v1]} or '
                                     '{"type": "polygon", "points": [[u, v], …]}')
    kind = item.get("type", "rect")
    if kind == "rect":
        box = item.get("box")
        if not isinstance(box, list) or len(box) != 4:
            raise InvalidParameter(name, "a rect has a box [u0, v0, u1, v1]")
        u0, v0, u1, v1 = (_coordinate(name, v) for v in box)
        u0, u1 = min(u0, u1), max(u0, u1)
        v0, v1 = min(v0, v1), max(v0, v1)
        if u1 - u0 < _MIN_SIDE or v1 - v0 < _MIN_SIDE:
            raise InvalidParameter(name, "a rect must not be empty")
        return BlurShape("rect", ((u0, v0), (u1, v1)))
    if kind == "polygon":
        points = item.get("points")
        if not isinstance(points, list) or not 3 <= len(points) <= MAX_POLYGON_POINTS:
            raise InvalidParameter(name, f"a polygon has 3 to {MAX_POLYGON_POINTS} points")
        parsed: list[Point] = []
        for point in points:
            if not isinstance(point, list) or len(point) != 2:
                raise InvalidParameter(name, "a point is [u, v]")
            parsed.append((_coordinate(name, point[0]), _coordinate(name, point[1])))
        shape = BlurShape("polygon", tuple(parsed))
        u0, v0, u1, v1 = shape.bbox
        if u1 - u0 < _MIN_SIDE or v1 - v0 < _MIN_SIDE:
            raise InvalidParameter(name, "a polygon must not be empty")
        return shape
    raise InvalidParameter(name, 'a shape\'s type is "rect" or "polygon"')


def parse_shapes(value: object, name: str = "add") -> tuple[BlurShape, ...]:
    """Added shapes from their wire form (a JSON list).

    >>> parse_shapes([{"type": "rect", "box": [0.5, 0.1, 0.2, 0.3]}])
    (BlurShape(kind='rect', points=((0.2, 0.1), (0.5, 0.3))),)
    >>> parse_shapes([{"type": "rect", "box": [0, 0, 2, 1]}])
    Traceback (most recent call last):
    ...
    wayview.errors.InvalidParameter: Invalid parameter add: coordinates are numbers from 0 to 1
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidParameter(name, "expected a list of shapes")
    if len(value) > MAX_ADDED:
        raise InvalidParameter(name, f"at most {MAX_ADDED} shapes")
    return tuple(_shape(name, item) for item in value)


def parse_removed(value: object, automatic: tuple[AutoRegion, ...],
                  name: str = "remove") -> tuple[str, ...]:
    """Removed automatic region ids (each once, in the automatic regions' order); every id
    must be one of `automatic`.

    >>> auto = (AutoRegion("a0", "face", (0, 0, .1, .1)), AutoRegion("a1", "plate", (0, 0, 1, 1)))
    >>> parse_removed(["a1", "a0", "a1"], auto)
    ('a0', 'a1')
    """
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameter(name, "expected a list of automatic region ids")
    known = [r.id for r in automatic]
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise InvalidParameter(name, f"no automatic region {unknown[0]!r} on this image")
    return tuple(i for i in known if i in set(value))


def shapes_json(shapes: tuple[BlurShape, ...]) -> list[dict[str, object]]:
    """The wire form of added shapes (what `parse_shapes` reads back)."""
    return [s.to_json() for s in shapes]


# -- stored form (JSON text in both SQL backends) -------------------------------------------
def automatic_to_text(regions: tuple[AutoRegion, ...] | list[AutoRegion]) -> str:
    """Automatic regions as stored."""
    return json.dumps([r.to_json() for r in regions], separators=(",", ":"))


def automatic_from_text(text: str | None) -> tuple[AutoRegion, ...] | None:
    """Automatic regions from their stored text (None stays None).

    >>> automatic_from_text(automatic_to_text([AutoRegion("a0", "face", (0.1, 0.2, 0.3, 0.4))]))
    (AutoRegion(id='a0', kind='face', box=(0.1, 0.2, 0.3, 0.4)),)
    """
    if text is None:
        return None
    out = []
    for item in json.loads(text):
        u0, v0, u1, v1 = (float(v) for v in item["box"])
        out.append(AutoRegion(str(item["id"]), str(item["kind"]), (u0, v0, u1, v1)))
    return tuple(out)


def shapes_to_text(shapes: tuple[BlurShape, ...] | list[BlurShape]) -> str:
    """Added shapes as stored (their wire form)."""
    return json.dumps(shapes_json(tuple(shapes)), separators=(",", ":"))


def shapes_from_text(text: str) -> tuple[BlurShape, ...]:
    """Added shapes from their stored text.

    >>> shapes_from_text(shapes_to_text([BlurShape("rect", ((0.1, 0.2), (0.3, 0.4)))]))
    (BlurShape(kind='rect', points=((0.1, 0.2), (0.3, 0.4))),)
    """
    return parse_shapes(json.loads(text))
