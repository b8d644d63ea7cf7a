"""wayview.graph.params: parse Graph API query parameters into search objects (errors E9–E12)."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from wayview.errors import InvalidParameter, MissingParameter
from wayview.ids import is_sequence_key, parse_id
from wayview.model.entities import DetectionSearch, ImageSearch, MapFeatureSearch
from wayview.model.s2 import cell_level, leaf_range
from wayview.settings import Settings

Query = Mapping[str, str]
_CAMERA_TYPES = {"perspective": "perspective", "fisheye": "fisheye",
                 "spherical": "spherical", "equirectangular": "spherical"}
_OBJECT_TYPES = {"trafficsign": "trafficsign", "traffic_sign": "trafficsign", "point": "point"}
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_OFFSET_RE = re.compile(r"([+-]\d{2})(\d{2})$")
_CURSOR_VALUE = re.compile(r"-?[0-9]{1,19}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: Longest cursor text worth decoding: what `encode_cursor` makes of two 64-bit values.
_MAX_CURSOR_CHARS = 64


def parse_bbox(text: str, max_area_deg2: float) -> tuple[float, float, float, float]:
    """`minLon,minLat,maxLon,maxLat`, inclusive (E9 when malformed, E11 when too large).

    >>> parse_bbox("13.0,55.0,13.05,55.05", 0.01)
    (13.0, 55.0, 13.05, 55.05)
    """
    parts = text.split(",")
    if len(parts) != 4:
        raise InvalidParameter("bbox", "expected minLon,minLat,maxLon,maxLat")
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise InvalidParameter("bbox", "coordinates must be numbers") from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise InvalidParameter("bbox", "coordinates must be finite")
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90
            and -90 <= north <= 90):
        raise InvalidParameter("bbox", "coordinates out of range")
    if west > east or south > north:
        raise InvalidParameter("bbox", "minimum greater than maximum")
    area = (east - west) * (north - south)
    if max_area_deg2 > 0 and area > max_area_deg2:
        raise InvalidParameter(
            "bbox", f"area {area:g} exceeds the maximum of {max_area_deg2:g} square degrees"
        )
    return west, south, east, north


def parse_time_ms(name: str, text: str) -> int:
    """ISO-8601 (Z, ±hh:mm, ±hhmm, fractions, bare date; no offset = UTC) → epoch ms.

    >>> parse_time_ms("t", "2022-08-16T16:42:46Z"), parse_time_ms("t", "2022-08-16")
    (1660668166000, 1660608000000)
    >>> parse_time_ms("t", "2022-08-16T18:42:46.5+0200")
    1660668166500
    """
    value = text.strip()
    if _DATE_RE.fullmatch(value):
        value += "T00:00:00"
    value = _OFFSET_RE.sub(r"\1:\2", value) if "T" in value else value
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise InvalidParameter(name, f"cannot parse time {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def parse_limit(text: str | None, settings: Settings) -> int:
    """A positive integer, clamped to `search.max_limit`."""
    if text is None:
        return settings.search.default_limit
    try:
        value = int(text)
    except ValueError:
        raise InvalidParameter("limit", "must be a positive integer") from None
    if value <= 0:
        raise InvalidParameter("limit", "must be a positive integer")
    return min(value, settings.search.max_limit)


def parse_bool(name: str, text: str) -> bool:
    """`true`/`false`/`1`/`0`."""
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise InvalidParameter(name, "must be true or false")


def parse_id_param(name: str, text: str) -> int:
    """A node id given as a parameter."""
    value = parse_id(text.strip())
    if value is None:
        raise InvalidParameter(name, "must be a numeric id")
    return value


def parse_id_list(name: str, text: str, max_count: int) -> tuple[int, ...]:
    """A comma list of numeric ids (E9 for a malformed one, E12 for too many)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if len(items) > max_count:
        raise InvalidParameter(name, f"at most {max_count} ids per request")
    return tuple(parse_id_param(name, t) for t in items)


def parse_sequence_ids(name: str, text: str) -> tuple[str, ...]:
    """A comma list of sequence keys."""
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in items if not is_sequence_key(t)]
    if bad or not items:
        raise InvalidParameter(name, "must be a comma-separated list of sequence ids")
    return items


def parse_s2(text: str) -> tuple[int, int]:
    """A decimal S2 cell id (any level) → its signed leaf range."""
    try:
        cell_id = int(text.strip())
    except ValueError:
        raise InvalidParameter("s2", "must be a decimal S2 cell id") from None
    if cell_level(cell_id) is None:
        raise InvalidParameter("s2", "not a valid S2 cell id")
    return leaf_range(cell_id)


def encode_cursor(values: tuple[int, ...]) -> str:
    """An opaque paging cursor."""
    raw = ":".join(str(v) for v in values).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, size: int) -> tuple[int, ...]:
    """The values inside a cursor made by `encode_cursor` (E9 when tampered).

    Every value must be a plain decimal that fits a signed 64-bit column: a larger one would
    overflow the database driver (OverflowError, a 500) instead of meaning anything.

    >>> decode_cursor(encode_cursor((1619863200500, 42)), 2)
    (1619863200500, 42)
    """
    if len(text) > _MAX_CURSOR_CHARS:
        raise InvalidParameter("after", "invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidParameter("after", "invalid cursor") from None
    parts = raw.split(":")
    if len(parts) != size or not all(_CURSOR_VALUE.fullmatch(p) for p in parts):
        raise InvalidParameter("after", "invalid cursor")
    values = tuple(int(p) for p in parts)
    if not all(_INT64_MIN <= v <= _INT64_MAX for v in values):
        raise InvalidParameter("after", "invalid cursor")
    return values


def _times(q: Query, start: str, end: str) -> tuple[int | None, int | None]:
    return (
        parse_time_ms(start, q[start]) if q.get(start) else None,
        parse_time_ms(end, q[end]) if q.get(end) else None,
    )


def image_search(q: Query, settings: Settings) -> ImageSearch:
    """GET /images parameters (spec §3.9–3.10)."""
    bbox = parse_bbox(q["bbox"], settings.search.max_bbox_area_deg2) if "bbox" in q else None
    image_ids = (parse_id_list("image_ids", q["image_ids"], settings.image_ids.max_per_request)
                 if "image_ids" in q else None)
    s2_range = parse_s2(q["s2"]) if "s2" in q else None
    seq_name = "sequence_ids" if "sequence_ids" in q else "sequence_id"
    sequence_ids = parse_sequence_ids(seq_name, q[seq_name]) if seq_name in q else None
    org = parse_id_param("organization_id", q["organization_id"]) \
        if "organization_id" in q else None
    creator = q.get("creator_username", "").strip() or None
    if (bbox is None and image_ids is None and s2_range is None and sequence_ids is None
            and org is None and creator is None):
        raise MissingParameter("bbox")
    start, end = _times(q, "start_captured_at", "end_captured_at")
    camera_type = None
    if "camera_type" in q:
        camera_type = _CAMERA_TYPES.get(q["camera_type"].strip().lower())
        if camera_type is None:
            raise InvalidParameter("camera_type", "must be perspective, fisheye or spherical")
    limit = parse_limit(q.get("limit"), settings)
    # image_ids and s2 are complete in one response (spec §1.5); no limit applies.
    unlimited = image_ids is not None or s2_range is not None
    after = decode_cursor(q["after"], 2) if q.get("after") and not unlimited else None
    return ImageSearch(
        bbox=bbox, start_captured_at_ms=start, end_captured_at_ms=end, organization_id=org,
        sequence_ids=sequence_ids, creator_username=creator, image_ids=image_ids,
        s2_range=s2_range,
        is_pano=parse_bool("is_pano", q["is_pano"]) if "is_pano" in q else None,
        make=q["make"].strip() if q.get("make") else None,
        model=q["model"].strip() if q.get("model") else None,
        camera_type=camera_type, limit=None if unlimited else limit,
        after=(after[0], after[1]) if after else None,
    )


def _values(q: Query, name: str) -> tuple[str, ...] | None:
    if not q.get(name):
        return None
    return tuple(v.strip() for v in q[name].split(",") if v.strip()) or None


def map_feature_search(q: Query, settings: Settings) -> MapFeatureSearch:
    """GET /map_features parameters (spec §3.11)."""
    if "bbox" not in q:
        raise MissingParameter("bbox")
    bbox = parse_bbox(q["bbox"], settings.search.max_bbox_area_deg2)
    object_type = None
    if q.get("object_type"):
        object_type = _OBJECT_TYPES.get(q["object_type"].strip().lower())
        if object_type is None:
            raise InvalidParameter("object_type", "must be trafficsign or point")
    s_first, e_first = _times(q, "start_first_seen_at", "end_first_seen_at")
    s_last, e_last = _times(q, "start_last_seen_at", "end_last_seen_at")
    after = decode_cursor(q["after"], 1)[0] if q.get("after") else None
    return MapFeatureSearch(
        bbox=bbox, object_values=_values(q, "object_values"), object_type=object_type,
        start_first_seen_at_ms=s_first, end_first_seen_at_ms=e_first,
        start_last_seen_at_ms=s_last, end_last_seen_at_ms=e_last,
        limit=parse_limit(q.get("limit"), settings), after=after,
    )


def detection_search(q: Query, settings: Settings) -> DetectionSearch:
    """GET /detections parameters (spec §3.11)."""
    if "bbox" not in q:
        raise MissingParameter("bbox")
    bbox = parse_bbox(q["bbox"], settings.search.max_bbox_area_deg2)
    start, end = _times(q, "start_captured_at", "end_captured_at")
    after = decode_cursor(q["after"], 1)[0] if q.get("after") else None
    return DetectionSearch(
        bbox=bbox, values=_values(q, "values"), start_captured_at_ms=start,
        end_captured_at_ms=end, limit=parse_limit(q.get("limit"), settings), after=after,
    )
