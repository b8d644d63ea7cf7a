"""wayview.api.openapi: the OpenAPI 3.1 document of the public API, served at `GET /openapi.json`.

It covers what clients call: the Graph API (spec §3), vector tiles (§4), the media URLs (§6)
and the upload service (§8); the account pages and OAuth (§7) are left out. The document is a
dict built here from a few helpers, once per (public base URL, upload prefix), and served
without a token. `tests/api/test_openapi.py` keeps it true: every API route of
`wayview.api.app._routes` is a path here and every path here is routed, every query parameter a
handler reads is documented, the document validates as OpenAPI 3.1, and live responses validate
against its schemas. `tests/fuzz` drives a live server from it (schemathesis).
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from wayview import __version__
from wayview.api.responses import JSON_TYPE
from wayview.blobs.base import IMAGE_VARIANTS
from wayview.graph.params import encode_cursor
from wayview.model.entities import UPLOAD_FILE_TYPES
from wayview.settings import Settings
from wayview.tiles.policy import TILE_VERSION, TILESETS

if TYPE_CHECKING:
    from wayview.api.app import Context

__all__ = ["OPENAPI_VERSION", "openapi_document", "serve_openapi"]

OPENAPI_VERSION = "3.1.0"
Json = dict[str, Any]

_ID_PATTERN = "^[0-9]+$"
_SEQUENCE_PATTERN = "^[A-Za-z0-9_-]+$"
_SCHEMAS = "#/components/schemas/"
_MAX_TILE_ZOOM = 14


def _ref(name: str) -> Json:
    return {"$ref": _SCHEMAS + name}


# -- schemas ---------------------------------------------------------------------------------

_ID: Json = {"type": "string", "pattern": _ID_PATTERN, "description": "A decimal node id "
             "(< 2^53; spec §1.3).", "examples": ["4000000000001001"]}
_POINT: Json = {
    "type": "object", "required": ["type", "coordinates"], "additionalProperties": False,
    "properties": {
        "type": {"const": "Point"},
        "coordinates": {"type": "array", "items": {"type": "number"}, "minItems": 2,
                        "maxItems": 3, "description": "[longitude, latitude]"},
    },
}
_ISO_TIME: Json = {"type": "string", "description": "ISO-8601 UTC with `+0000`, e.g. "
                   "`2021-05-20T17:49:01+0000` (spec §3.4)."}
_NUMBER: Json = {"type": "number"}
_INTEGER: Json = {"type": "integer"}
_STRING: Json = {"type": "string"}
_URL: Json = {"type": "string", "format": "uri"}


def _node(description: str, properties: Json) -> Json:
    """A node type: only requested fields appear (`id` always), never `null` (spec §1.4)."""
    return {"type": "object", "description": description, "required": ["id"],
            "additionalProperties": False, "properties": properties}


def _edge(item: str) -> Json:
    return {"type": "object", "required": ["data"], "additionalProperties": False,
            "properties": {"data": {"type": "array", "items": _ref(item)}}}


_NODE_SCHEMAS: dict[str, Json] = {
    "Image": _node("An image (spec §3.2).", {
        "id": _ID,
        "altitude": _NUMBER,
        "atomic_scale": _NUMBER,
        "camera_parameters": {"type": "array", "items": _NUMBER,
                              "description": "[focal, k1, k2]; absent for spherical images."},
        "camera_type": {"type": "string", "examples": ["perspective", "fisheye", "spherical"]},
        "captured_at": {"type": "integer", "description": "Milliseconds since the epoch, UTC."},
        "compass_angle": _NUMBER,
        "computed_altitude": _NUMBER,
        "computed_compass_angle": _NUMBER,
        "computed_geometry": _ref("Point"),
        "computed_rotation": {"type": "array", "items": _NUMBER, "minItems": 3, "maxItems": 3,
                              "description": "Angle-axis rotation (OpenSfM)."},
        "creator": _ref("User"),
        "detections": _edge("Detection"),
        "exif_orientation": _INTEGER,
        "geometry": _ref("Point"),
        "height": _INTEGER,
        "is_pano": {"type": "boolean"},
        "make": _STRING,
        "merge_cc": _INTEGER,
        "mesh": _ref("Asset"),
        "model": _STRING,
        "organization": _ref("Organization"),
        "quality_score": _NUMBER,
        "sequence": {"type": "string", "description": "The sequence id (opaque string)."},
        "sfm_cluster": _ref("Asset"),
        "thumb_256_url": _URL,
        "thumb_1024_url": _URL,
        "thumb_2048_url": _URL,
        "thumb_original_url": _URL,
        "width": _INTEGER,
    }),
    "MapFeature": _node("A map feature (spec §3.4).", {
        "id": _ID,
        "aligned_direction": _NUMBER,
        "first_seen_at": _ISO_TIME,
        "geometry": _ref("Point"),
        "images": _edge("Image"),
        "last_seen_at": _ISO_TIME,
        "object_type": {"type": "string", "examples": ["trafficsign", "point"]},
        "object_value": {"type": "string", "examples": ["regulatory--stop--g1"]},
    }),
    "Detection": _node("A detection (spec §3.5).", {
        "id": _ID,
        "created_at": _ISO_TIME,
        "geometry": {"type": "string", "contentEncoding": "base64",
                     "description": "A one-polygon Mapbox Vector Tile, base64 (spec §5)."},
        "image": _ref("Image"),
        "value": _STRING,
    }),
    "Organization": _node("An organization (spec §3.6).", {
        "id": _ID, "description": _STRING, "name": _STRING, "slug": _STRING,
    }),
    "User": _node("A user (spec §3.7).", {"id": _ID, "username": _STRING}),
    "Asset": _node("A mesh or point cloud of an image (spec §6.2, §6.3).",
                   {"id": {"type": "string", "description": "The image id (mesh) or the "
                           "reconstruction's id (sfm_cluster)."}, "url": _URL}),
    "ImageTile": {
        "type": "object", "description": "One tile of an image pyramid level (spec §3.12); "
        "no `id`.", "additionalProperties": False,
        "properties": {"url": _URL, "z": _INTEGER, "x": _INTEGER, "y": _INTEGER},
    },
}


def _schemas() -> Json:
    schemas: Json = copy.deepcopy(_NODE_SCHEMAS)
    schemas["Point"] = _POINT
    schemas["Node"] = {"description": "Any node type `GET /{id}` resolves.", "anyOf": [
        _ref(name) for name in ("Image", "MapFeature", "Detection", "Organization", "User")]}
    for name in ("Image", "MapFeature", "Detection", "ImageTile"):
        schemas[f"{name}Collection"] = {
            "type": "object", "required": ["data"], "additionalProperties": False,
            "properties": {"data": {"type": "array", "items": _ref(name)},
                           "paging": _ref("Paging")},
        }
    schemas["Paging"] = {
        "type": "object", "description": "Present when rows were cut off at `limit` (§1.5).",
        "required": ["cursors", "next"], "additionalProperties": False,
        "properties": {
            "cursors": {"type": "object", "required": ["after"], "additionalProperties": False,
                        "properties": {"after": _STRING}},
            "next": {"type": "string", "format": "uri",
                     "description": "The same query with `after=<cursor>`."},
        },
    }
    schemas["Success"] = {"type": "object", "required": ["success"],
                          "properties": {"success": {"type": "boolean", "const": True}}}
    schemas["SplitSequence"] = {"type": "object", "required": ["success", "id"], "properties": {
        "success": {"type": "boolean", "const": True}, "id": _STRING}}
    schemas["NodesById"] = {
        "type": "object", "description": "Nodes keyed by id; unknown ids are left out (§3.8).",
        "propertyNames": {"pattern": _ID_PATTERN}, "additionalProperties": _ref("Node"),
    }
    schemas["GraphError"] = {
        "type": "object", "description": "The Graph error envelope (spec §1.8, §2).",
        "required": ["error"], "additionalProperties": False,
        "properties": {"error": {
            "type": "object", "required": ["message", "type", "code", "fbtrace_id"],
            "additionalProperties": False,
            "properties": {
                "message": _STRING,
                "type": {"type": "string", "examples": ["OAuthException", "MLYApiException"]},
                "code": _INTEGER,
                "error_subcode": _INTEGER,
                "is_transient": {"type": "boolean"},
                "error_user_title": _STRING,
                "error_user_msg": _STRING,
                "error_data": {"type": "object"},
                "fbtrace_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{23}$"},
            },
        }},
    }
    schemas["UploadError"] = {
        "type": "object", "description": "The upload service's error envelope (spec §8.6).",
        "required": ["debug_info"], "additionalProperties": False,
        "properties": {
            "debug_info": {
                "type": "object", "required": ["retriable", "type", "message"],
                "additionalProperties": False,
                "properties": {"retriable": {"type": "boolean"},
                               "type": {"type": "string", "examples": ["OffsetInvalidError"]},
                               "message": _STRING},
            },
            "backoff": {"type": "integer", "description": "Milliseconds to wait (U3)."},
        },
    }
    schemas["FinishUpload"] = {
        "type": "object", "required": ["file_handle", "file_type"],
        "properties": {
            "file_handle": {"type": "string", "description": "The `h` of an upload session."},
            "file_type": {"type": "string", "enum": list(UPLOAD_FILE_TYPES)},
            "organization_id": {"oneOf": [{"type": "string", "pattern": _ID_PATTERN},
                                          {"type": "integer", "minimum": 0}]},
        },
    }
    schemas["LoggingEvent"] = {
        "type": "object", "description": "A mapillary_tools event; logged, then dropped.",
        "properties": {"action_type": _STRING, "properties": {"type": "object"}},
    }
    return schemas


# -- parameters ------------------------------------------------------------------------------


def _param(where: str, name: str, schema: Json, description: str, example: Any,
           *, required: bool = False, **extra: Any) -> Json:
    param: Json = {"name": name, "in": where, "description": description, "schema": schema,
                   "example": example}
    if required or where == "path":
        param["required"] = True
    param.update(extra)
    return param


def _query(name: str, schema: Json, description: str, example: Any, **kw: Any) -> Json:
    return _param("query", name, schema, description, example, **kw)


def _path(name: str, schema: Json, description: str, example: Any) -> Json:
    return _param("path", name, schema, description, example)


def _list(item: Json, max_items: int | None = None) -> Json:
    """A comma-separated list in the query (`style: form, explode: false`)."""
    schema: Json = {"type": "array", "items": item, "minItems": 1}
    if max_items is not None:
        schema["maxItems"] = max_items
    return schema


def _fields(node_type: str, default: str = "id") -> Json:
    return _query(
        "fields", {"type": "string"},
        f"Comma-separated {node_type} fields; nested selections as `creator{{username}}` or "
        f"`creator.username` (spec §1.4, §3.1). Default `{default}`. An unknown field is E8; "
        "too long, too deep or too large a selection is E9.",
        default)


def _times(start: str, end: str, what: str) -> list[Json]:
    schema: Json = {"anyOf": [{"type": "string", "format": "date-time"},
                              {"type": "string", "format": "date"}]}
    return [
        _query(start, schema, f"{what} at or after this ISO-8601 time (no offset = UTC).",
               "2021-05-01T00:00:00Z"),
        _query(end, schema, f"{what} before this ISO-8601 time (half-open interval).",
               "2030-01-01"),
    ]


def _bbox(required: bool) -> Json:
    return _query(
        "bbox", {"type": "string"},
        "`minLon,minLat,maxLon,maxLat`, borders inclusive; area at most "
        "`search.max_bbox_area_deg2` square degrees (E9, E11).",
        "13.0,55.0,13.05,55.05", required=required)


def _limit() -> Json:
    return _query("limit", {"type": "integer", "minimum": 1},
                  "Most rows to return; larger values are clamped to `search.max_limit`.", 10)


def _after(example: tuple[int, ...]) -> Json:
    return _query("after", {"type": "string"},
                  "The `paging.cursors.after` of the previous page (an opaque cursor; E9 when "
                  "it was not made by this server).", encode_cursor(example))


def _id_path(what: str) -> Json:
    return _path("id", {"type": "string", "pattern": _ID_PATTERN}, what, "4000000000001001")


# -- responses -------------------------------------------------------------------------------


def _json(schema_name: str, description: str) -> Json:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(schema_name)}}}


def _errors(*codes: int, upload: bool = False) -> Json:
    name = "UploadError" if upload else "GraphError"
    return {str(code): {"$ref": f"#/components/responses/{name}"} for code in codes}


_GRAPH_ERRORS = (400, 401, 403, 429, 500, 503)
_PUBLIC_ERRORS = (404, 500, 503)


def _graph_op(op_id: str, summary: str, description: str, params: list[Json], ok: Json,
              *, tag: str = "graph", errors: tuple[int, ...] = _GRAPH_ERRORS) -> Json:
    return {"operationId": op_id, "tags": [tag], "summary": summary,
            "description": description, "parameters": params,
            "responses": {"200": ok, **_errors(*errors)}}


def _edit_op(op_id: str, summary: str, params: list[Json], body: Json,
             ok: str = "Success") -> Json:
    """An owner's edit (docs/editing.md): a user token with `write`; form or JSON body."""
    schema = {"type": "object", "properties": body}
    op = _graph_op(op_id, summary, "With a user token (`write` scope) of someone who may "
                   "manage the images (owner, organization admin, instance admin); anyone "
                   "else gets E7, as for an unknown id. See docs/editing.md.", params,
                   _json(ok, "Done."))
    op["requestBody"] = {"content": {t: {"schema": schema} for t in (
        "application/x-www-form-urlencoded", "application/json")}}
    return op


def _edit_paths() -> Json:
    seq = [_path("sequence_id", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                 "A sequence key.", "7nfcwfvjdtphz7yj6zat6a")]
    return {
        "/sequences/{sequence_id}/split": {"post": _edit_op(
            "splitSequence", "Split a sequence at an image", seq, {"image_id": _STRING},
            ok="SplitSequence")},
        "/sequences/{sequence_id}/merge": {"post": _edit_op(
            "mergeSequences", "Merge another sequence into this one", seq,
            {"sequence_id": _STRING})},
        "/sequences/{sequence_id}/reorder": {"post": _edit_op(
            "reorderSequence", "Reorder a sequence (corrects capture times)", seq,
            {"image_ids": _STRING})},
    }


def _binary(media_type: str, description: str) -> Json:
    return {"description": description,
            "content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}


# -- paths -----------------------------------------------------------------------------------


def _graph_paths(ids_max: int, image_ids_max: int) -> Json:
    image_filters = [
        _fields("Image"),
        _bbox(required=False),
        *_times("start_captured_at", "end_captured_at", "Captured"),
        _limit(),
        _after((1619863200500, 4000000000001001)),
        _query("organization_id", {"type": "string", "pattern": _ID_PATTERN},
               "Images owned by this organization.", "1000000000000001"),
        _query("sequence_ids", _list({"type": "string", "pattern": _SEQUENCE_PATTERN}),
               "Images of these sequences (comma list).", ["k3h9q2m1x0v8b7n6c5z4a3"],
               style="form", explode=False),
        _query("sequence_id", _list({"type": "string", "pattern": _SEQUENCE_PATTERN}),
               "Same as `sequence_ids` (the name the SDK sends).", ["k3h9q2m1x0v8b7n6c5z4a3"],
               style="form", explode=False),
        _query("creator_username", {"type": "string"},
               "Images by this user (case-insensitive).", "alice"),
        _query("image_ids", _list({"type": "string", "pattern": _ID_PATTERN},
                                  image_ids_max),
               "These images, in request order, complete (no limit, no paging; §3.10). At "
               "most `image_ids.max_per_request` ids (E12).", ["4000000000001001"],
               style="form", explode=False),
        _query("s2", {"type": "string", "pattern": "^[0-9]+$"},
               "Every image of this S2 cell (decimal unsigned 64-bit cell id, any level; "
               "§3.10), complete.", "5328711019406016512"),
        _query("is_pano", {"type": "boolean"}, "Panoramas only (true) or none (false).",
               False),
        _query("make", {"type": "string"}, "Camera make (exact, case-insensitive).", "AcmeCam"),
        _query("model", {"type": "string"}, "Camera model (exact, case-insensitive).",
               "X-100"),
        _query("camera_type", {"type": "string", "enum": [
            "perspective", "fisheye", "spherical", "equirectangular"]},
            "Projection (`equirectangular` = `spherical`).", "perspective"),
    ]
    feature_filters = [
        _fields("MapFeature"),
        _bbox(required=True),
        _query("object_values", _list({"type": "string"}),
               "Values, OR-ed; `*` matches any run of characters (`regulatory--*`).",
               ["regulatory--*"], style="form", explode=False),
        _query("object_type", {"type": "string", "enum": ["trafficsign", "traffic_sign",
                                                          "point"]},
               "Kind of map feature.", "trafficsign"),
        *_times("start_first_seen_at", "end_first_seen_at", "First seen"),
        *_times("start_last_seen_at", "end_last_seen_at", "Last seen"),
        _limit(),
        _after((4000000000001001,)),
    ]
    detection_filters = [
        _fields("Detection"),
        _bbox(required=True),
        _query("values", _list({"type": "string"}),
               "Detection classes, OR-ed; `*` matches any run of characters.",
               ["regulatory--*"], style="form", explode=False),
        *_times("start_captured_at", "end_captured_at", "Image captured"),
        _limit(),
        _after((4000000000001001,)),
    ]
    ids_param: Json = _list({"type": "string", "pattern": _ID_PATTERN}, ids_max)
    many_description = ("Nodes keyed by id; `fields` applies to each of them and unknown or "
                        "invisible ids are left out (spec §3.8). At most "
                        "`ids.max_per_request` ids (E12).")
    return {
        "/": {"get": _graph_op(
            "getNodes", "Several nodes by id", many_description,
            [_query("ids", ids_param, "Node ids (comma list).", ["4000000000001001"],
                    required=True, style="form", explode=False),
             _fields("node")],
            _json("NodesById", "The nodes found, keyed by id."))},
        "/ids={ids}": {"get": _graph_op(
            "getNodesSdkForm", "Several nodes by id (the SDK's `/ids=A,B` form)",
            many_description,
            [_path("ids", ids_param, "Node ids (comma list).", ["4000000000001001"]),
             _fields("node")],
            _json("NodesById", "The nodes found, keyed by id."))},
        "/{id}": {"get": _graph_op(
            "getNode", "One node", "An image, map feature, detection, organization or user "
            "(spec §3.2–3.7). Unknown ids are E7.",
            [_id_path("A node id."), _fields("node")],
            _json("Node", "The node with the requested fields.")),
            "delete": _graph_op(
                "deleteImage", "Delete one of your images (or close an account)",
                "With the owner's user token (`write` scope): the image leaves every endpoint "
                "and tile at once; its blobs and map features follow in a durable job. "
                "Another user's image or an unknown id is E7. A user id closes that account "
                "(the user or an instance admin; docs/deleting.md).",
                [_id_path("An image id.")],
                _json("Success", "`{\"success\": true}`.")),
            "post": _edit_op("correctImage", "Correct one of your images", [_id_path(
                "An image id.")], {"compass_angle": _NUMBER, "lon": _NUMBER, "lat": _NUMBER,
                                   "geometry": {"type": "object"}, "captured_at": _STRING})},
        **_edit_paths(),
        "/{id}/detections": {"get": _graph_op(
            "getDetectionsOf", "Detections of an image or map feature",
            "Complete: ordered by id for an image, newest image first for a map feature "
            "(spec §3.5).",
            [_id_path("An image or map feature id."), _fields("Detection")],
            _json("DetectionCollection", "The detections."))},
        "/{id}/tiles": {"get": _graph_op(
            "getImageTiles", "The tile grid of one pyramid level of an image",
            "Every tile of level `z`, complete (spec §3.12).",
            [_id_path("An image id."),
             _query("z", {"type": "integer", "minimum": 0},
                    "Pyramid level: 0 to max(ceil(log2(max(width, height))), 11) (E9).", 11,
                    required=True),
             _fields("ImageTile", "url,z,x,y")],
            _json("ImageTileCollection", "One entry per tile."))},
        "/me": {"get": _graph_op(
            "getMe", "The calling user", "Needs a user token (E5 for a client token; §3.7).",
            [_fields("User")], _json("User", "The user behind the token.")),
            "delete": _graph_op(
                "closeAccount", "Close your account",
                "Deletes every image you uploaded, your data exports and apps, then the "
                "account (docs/deleting.md). A user token with the `write` scope.", [],
                {"description": "Done.", "content": {"application/json": {
                    "schema": {"type": "object"}}}})},
        "/images": {"get": _graph_op(
            "searchImages", "Image search", "At least one of `bbox`, `image_ids`, `s2`, "
            "`sequence_ids`/`sequence_id`, `creator_username`, `organization_id` (E10). "
            "Filters combine with AND; ordered by `captured_at`, then id (spec §3.9–3.10).",
            image_filters, _json("ImageCollection", "Matching images."), tag="search")},
        "/image_ids": {"get": _graph_op(
            "getSequenceImages", "The images of a sequence",
            "In capture order, complete; an unknown sequence gives an empty list (§3.3).",
            [_query("sequence_id", {"type": "string"}, "A sequence id.",
                    "k3h9q2m1x0v8b7n6c5z4a3", required=True),
             _fields("Image")],
            _json("ImageCollection", "The sequence's images."), tag="search")},
        "/map_features": {"get": _graph_op(
            "searchMapFeatures", "Map feature search", "Features in a bbox, ordered by id "
            "(spec §3.11).", feature_filters,
            _json("MapFeatureCollection", "Matching map features."), tag="search")},
        "/detections": {"get": _graph_op(
            "searchDetections", "Detection search", "Detections whose image lies in a bbox, "
            "ordered by id (spec §3.11).", detection_filters,
            _json("DetectionCollection", "Matching detections."), tag="search")},
    }


def _tile_paths() -> Json:
    params = [
        _path("tileset", {"type": "string", "enum": list(TILESETS)}, "The tileset (§4.2).",
              "mly1_public"),
        _path("version", {"type": "string", "enum": [TILE_VERSION]}, "Always `2`.",
              TILE_VERSION),
        _path("z", {"type": "integer", "minimum": 0, "maximum": _MAX_TILE_ZOOM}, "Zoom.", 14),
        _path("x", {"type": "integer", "minimum": 0}, "Column, 0 to 2^z − 1.", 8792),
        _path("y", {"type": "integer", "minimum": 0}, "Row from the north, 0 to 2^z − 1.",
              5125),
        _param("header", "Accept-Encoding", {"type": "string"},
               "`gzip` gets a gzipped body with `Content-Encoding: gzip`.", "gzip"),
        _param("header", "If-None-Match", {"type": "string"},
               "An `ETag` of an earlier answer: 304 when the tile is unchanged.", '"empty"'),
    ]
    return {"/maps/vtp/{tileset}/{version}/{z}/{x}/{y}": {"get": {
        "operationId": "getVectorTile", "tags": ["tiles"], "summary": "A Mapbox Vector Tile",
        "description": "MVT version 2, extent 4096; an empty tile is 200 with an empty body. "
        "Anything outside the contract (tileset, version, z 0–14, x/y range) is E15 (spec §4).",
        "parameters": params,
        "responses": {
            "200": _binary("application/vnd.mapbox-vector-tile", "The tile (maybe empty)."),
            "304": {"description": "Not modified (`If-None-Match`)."},
            **_errors(401, 403, 404, 429, 500, 503),
        },
    }}}


def _media_paths() -> Json:
    image_id = _path("id", {"type": "string", "pattern": "^[0-9]{1,16}$"}, "An image id.",
                     "4000000000001001")
    variants = ", ".join(f"`{v}`" for v in IMAGE_VARIANTS)
    public = {"security": [], "tags": ["media"]}
    return {
        "/media/images/{id}/{variant}.jpg": {"get": {
            "operationId": "getImageAsset", "summary": "A thumbnail, the original or a "
            "pyramid tile", "description": f"Variants: {variants} and `tile_<z>_<x>_<y>` "
            "(spec §6.1, §3.12). No token.", **public,
            "parameters": [image_id, _path("variant", {"type": "string",
                                                       "pattern": "^[a-z0-9_]+$"},
                                           "The variant.", "thumb_1024")],
            "responses": {"200": _binary("image/jpeg", "A JPEG."), **_errors(*_PUBLIC_ERRORS)},
        }},
        "/media/images/{id}/v{version}/{variant}.jpg": {"get": {
            "operationId": "getImageAssetVersion", "summary": "A thumbnail, the original or "
            "a pyramid tile of a re-blurred image", "description": "The same variants as "
            "the unversioned URL, of media version `version` (docs/reblur.md): the Graph API "
            "hands these out once an image was re-blurred; a replaced version answers 404. "
            "No token.", **public,
            "parameters": [image_id, _path("version", {"type": "string",
                                                       "pattern": "^[1-9][0-9]{0,8}$"},
                                           "The media version.", "1"),
                           _path("variant", {"type": "string", "pattern": "^[a-z0-9_]+$"},
                                 "The variant.", "thumb_1024")],
            "responses": {"200": _binary("image/jpeg", "A JPEG."), **_errors(*_PUBLIC_ERRORS)},
        }},
        "/media/images/{id}/mesh.pbf": {"get": {
            "operationId": "getImageMesh", "summary": "The mesh of an image",
            "description": "Protobuf mesh for MapillaryJS (spec §6.3). No token.", **public,
            "parameters": [image_id],
            "responses": {"200": _binary("application/x-protobuf", "The mesh."),
                          **_errors(*_PUBLIC_ERRORS)},
        }},
        "/media/sequences/{sequence_id}/cluster.json.z": {"get": {
            "operationId": "getSequenceCluster", "summary": "The point cloud of a sequence",
            "description": "zlib-compressed JSON reconstruction (spec §6.2). No token.",
            **public,
            "parameters": [_path("sequence_id", {"type": "string", "pattern":
                                                 "^[A-Za-z0-9_-]{1,64}$"},
                                 "A sequence id.", "k3h9q2m1x0v8b7n6c5z4a3")],
            "responses": {"200": _binary("application/octet-stream", "zlib data."),
                          **_errors(*_PUBLIC_ERRORS)},
        }},
    }


def _upload_paths(prefix: str) -> Json:
    key = _path("session_key", {"type": "string", "minLength": 1, "maxLength": 1024,
                                "pattern": "^[^/]+$"},
                "An opaque session name chosen by the client (`mly_tools_<md5>.jpg`).",
                "mly_tools_0123456789abcdef0123456789abcdef.jpg")
    upload_errors = _errors(400, 401, 403, 412, 413, 429, 500, 503, upload=True)
    user_token = "A user token with the `upload` scope."

    def ok(schema: Json, description: str) -> Json:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    return {
        f"{prefix}/{{session_key}}": {
            "get": {
                "operationId": "getUploadOffset", "tags": ["upload"],
                "summary": "Bytes held by an upload session",
                "description": f"0 for an unknown session (spec §8.1). {user_token}",
                "parameters": [key],
                "responses": {"200": ok({"type": "object", "required": ["offset"],
                                         "additionalProperties": False,
                                         "properties": {"offset": {"type": "integer",
                                                                   "minimum": 0}}},
                                        "The offset."), **upload_errors},
            },
            "post": {
                "operationId": "appendUpload", "tags": ["upload"],
                "summary": "Append bytes to an upload session",
                "description": "The body holds the file from `Offset` on (chunked or with a "
                "length); `Offset` other than the bytes held is U2 (412). The same session "
                f"always gives the same handle (spec §8.2, §8.3). {user_token}",
                "parameters": [
                    key,
                    _param("header", "Offset", {"type": "string", "pattern": "^[0-9]{1,19}$"},
                           "Where the body starts in the file; missing = 0.", "0"),
                    _param("header", "X-Entity-Name", {"type": "string"},
                           "The session key again (ignored).", "img.jpg"),
                    _param("header", "X-Entity-Type", {"type": "string"},
                           "Media type of the file (ignored).", "image/jpeg"),
                    _param("header", "X-Entity-Length", {"type": "string"},
                           "Size of the whole file (ignored).", "1024"),
                ],
                "requestBody": {"required": False, "content": {"application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"}}}},
                "responses": {"200": ok({"type": "object", "required": ["h"],
                                         "additionalProperties": False,
                                         "properties": {"h": {"type": "string"}}},
                                        "The file handle."), **upload_errors},
            },
        },
        "/finish_upload": {"post": {
            "operationId": "finishUpload", "tags": ["upload"],
            "summary": "Queue the processing of an upload",
            "description": "Answers at once with a cluster id; idempotent per handle. "
            f"Errors use the Graph envelope (E24–E26; spec §8.4). {user_token}",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _ref("FinishUpload")}}},
            "responses": {"200": ok({"type": "object", "required": ["cluster_id"],
                                     "additionalProperties": False,
                                     "properties": {"cluster_id": {"type": "string",
                                                                   "pattern": _ID_PATTERN}}},
                                    "The cluster id."),
                          **_errors(*_GRAPH_ERRORS)},
        }},
        "/logging": {"post": {
            "operationId": "logEvent", "tags": ["upload"], "summary": "A client event",
            "description": "mapillary_tools' upload events: accepted and dropped (§8.1).",
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": _ref("LoggingEvent")}}},
            "responses": {"200": ok({"type": "object", "maxProperties": 0}, "Always `{}`."),
                          **_errors(*_GRAPH_ERRORS)},
        }},
    }


def _meta_paths() -> Json:
    public = {"security": [], "tags": ["meta"]}
    return {
        "/healthz": {"get": {
            "operationId": "getHealth", "summary": "Liveness", **public,
            "description": "200 while the server answers; no token, not counted.",
            "responses": {"200": {"description": "Alive.", "content": {"application/json": {
                "schema": {"type": "object", "required": ["status"],
                           "properties": {"status": {"const": "ok"}}}}}}},
        }},
        "/openapi.json": {"get": {
            "operationId": "getOpenApi", "summary": "This document", **public,
            "description": "The OpenAPI 3.1 document of this server; no token.",
            "responses": {"200": {"description": "The document.", "content": {
                "application/json": {"schema": {"type": "object"}}}}},
        }},
    }


def _export_paths() -> Json:
    """Users' data exports (issue #17, docs/export.md): a user token with `write`."""
    export: Json = {"type": "object", "required": ["id", "state", "progress", "total",
                                                   "created_at"],
                    "additionalProperties": False, "properties": {
                        "id": {"type": "string", "pattern": _ID_PATTERN},
                        "state": {"enum": ["queued", "running", "done", "failed", "expired"]},
                        "progress": {**_INTEGER, "description": "Images written so far."},
                        "total": {**_INTEGER, "description": "Images to write."},
                        "size": {**_INTEGER, "description": "Bytes of the zip (when done)."},
                        "created_at": _ISO_TIME, "finished_at": _ISO_TIME,
                        "expires_at": _ISO_TIME, "error": _STRING, "download_url": _URL}}
    one = {"description": "The export.", "content": {"application/json": {"schema": export}}}
    many = {"description": "The caller's exports, newest first.", "content": {
        "application/json": {"schema": {"type": "object", "required": ["data"], "properties": {
            "data": {"type": "array", "items": export}}}}}}
    export_id = _path("id", {"type": "string", "pattern": "^[0-9]{1,16}$"},
                      "An export id (another user's answers E7).", "1")
    note = " Needs a user token with the `write` scope (an export holds unblurred originals)."
    return {
        "/me/exports": {
            "get": _graph_op("listExports", "Your data exports", "Newest first." + note, [],
                             many, tag="export"),
            "post": _graph_op("createExport", "Export all your data", "Queues a zip of your "
                              "originals, metadata and detections (E9 while "
                              "`export.max_concurrent_per_user` are under way)." + note, [],
                              one, tag="export"),
        },
        "/me/exports/{id}": {"get": _graph_op(
            "getExport", "One data export", "State, progress, size, expiry and, when done, "
            "`download_url`." + note, [export_id], one, tag="export")},
        "/me/exports/{id}/download": {"get": _graph_op(
            "downloadExport", "Download a data export", "The zip of a done export (E9 "
            "before it is done or once it expired)." + note, [export_id],
            _binary("application/zip", "The zip."), tag="export")},
    }


def _reblur_paths() -> Json:
    """Re-blurring (issue #17, docs/reblur.md): the image's managers and moderators."""
    unit = {"type": "number", "minimum": 0, "maximum": 1}
    box = {"type": "array", "items": unit, "minItems": 4, "maxItems": 4,
           "description": "[u0, v0, u1, v1], normalised (origin top-left)."}
    shape = {"type": "object", "required": ["type"], "properties": {
        "type": {"enum": ["rect", "polygon"]}, "box": box,
        "points": {"type": "array", "minItems": 3, "items": {
            "type": "array", "items": unit, "minItems": 2, "maxItems": 2}}}}
    state: Json = {"type": "object", "required": [
        "id", "width", "height", "version", "revision", "state", "automatic", "added",
        "removed"], "properties": {
        "id": {"type": "string", "pattern": _ID_PATTERN},
        "width": _INTEGER, "height": _INTEGER,
        "version": {**_INTEGER, "description": "The media version served now."},
        "revision": {**_INTEGER, "description": "The version the newest edit is served as."},
        "state": {"enum": ["live", "rendering", "failed"]},
        "error": {"type": ["string", "null"]},
        "automatic": {"type": "array", "items": {"type": "object", "properties": {
            "id": _STRING, "kind": _STRING, "box": box}}},
        "added": {"type": "array", "items": shape},
        "removed": {"type": "array", "items": _STRING},
        "thumb_1024_url": _URL}}
    ok = {"description": "The edit is saved; `version` is served once rendered.", "content": {
        "application/json": {"schema": {"type": "object", "required": ["success", "version"],
                                        "properties": {"success": {"const": True},
                                                       "version": _INTEGER}}}}}
    who = (" The image's owner, an admin of its organization, an instance admin or a "
           "moderator; anyone else gets E7, as for an unknown id. See docs/reblur.md.")
    post = _graph_op("editBlurs", "Change the blurring of an image", "Replaces the added "
                     "regions (`add`) and the removed automatic ones (`remove`), then renders "
                     "every derivative again as a new media version (new URLs). A user token "
                     "with the `write` scope." + who, [_id_path("An image id.")], ok,
                     tag="reblur")
    post["requestBody"] = {"content": {"application/json": {"schema": {
        "type": "object", "properties": {"add": {"type": "array", "items": shape},
                                         "remove": {"type": "array", "items": _STRING}}}}}}
    return {"/{id}/blurs": {
        "get": _graph_op("getBlurs", "The blur regions of an image", "The blurrer's regions, "
                         "those people added and removed, and the state of the newest edit."
                         + who, [_id_path("An image id.")],
                         {"description": "The regions.",
                          "content": {"application/json": {"schema": state}}}, tag="reblur"),
        "post": post}}


def _governance_paths() -> Json:
    """Deleting sequences and accounts' images, organizations, reports and the audit log
    (issue #17; docs/deleting.md, docs/organizations.md, docs/moderation.md)."""
    obj: Json = {"type": "object"}
    data = {"description": "Rows, newest first.", "content": {"application/json": {
        "schema": {"type": "object", "required": ["data"], "properties": {
            "data": {"type": "array", "items": obj}}}}}}
    one = {"description": "The stored row.", "content": {"application/json": {"schema": obj}}}
    success = _json("Success", "`{\"success\": true}`.")
    seq = _path("sequence_id", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                "A sequence key.", "7nfcwfvjdtphz7yj6zat6a")
    org = _id_path("An organization id.")
    user_id = _path("user_id", {"type": "string", "pattern": _ID_PATTERN}, "A user id.",
                    "4000000000001002")
    report_id = _path("report_id", {"type": "string", "pattern": "^[0-9]{1,16}$"},
                      "A report id.", "1")
    before = _query("before", {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    "Only rows with a smaller id (the next page).", "120")
    limit = _query("limit", {"type": "integer", "minimum": 1, "maximum": 500},
                   "At most this many rows (default 100).", 50)
    write = " A user token with the `write` scope."

    def op(op_id: str, summary: str, description: str, params: list[Json], ok: Json,
           tag: str, body: Json | None = None) -> Json:
        out = _graph_op(op_id, summary, description, params, ok, tag=tag)
        if body is not None:
            out["requestBody"] = {"content": {t: {"schema": {
                "type": "object", "properties": body}} for t in (
                "application/x-www-form-urlencoded", "application/json")}}
        return out

    return {
        "/sequences/{sequence_id}": {"delete": op(
            "deleteSequence", "Delete a sequence", "Every image of the sequence, if the "
            "caller may delete each (owner, organization admin, instance admin); else E7."
            + write, [seq], success, "graph")},
        "/me/images": {"delete": op(
            "deleteMyImages", "Delete every image you uploaded", "Answers the number of "
            "images deleted; the account stays." + write, [],
            {"description": "Done.", "content": {"application/json": {"schema": obj}}},
            "graph")},
        "/{id}/images": {"delete": op(
            "deleteUserImages", "Delete every image of a user", "The user themself or an "
            "instance admin; anyone else gets E7." + write, [_id_path("A user id.")],
            {"description": "Done.", "content": {"application/json": {"schema": obj}}},
            "graph")},
        "/organizations": {"post": op(
            "createOrganization", "Create an organization", "You become its admin." + write,
            [], one, "organizations",
            {"slug": _STRING, "name": _STRING, "description": _STRING})},
        "/me/organizations": {"get": op(
            "listMyOrganizations", "Your organizations and invitations", "A user token.",
            [], data, "organizations")},
        "/{id}/members": {
            "get": op("listMembers", "An organization's members and invitations",
                      "For its members and instance admins (403 otherwise).", [org], data,
                      "organizations"),
            "post": op("inviteMember", "Invite a member or change a role",
                       "Admins of the organization." + write, [org], one, "organizations",
                       {"username": _STRING, "role": {"enum": ["member", "admin"]}})},
        "/{id}/join": {"post": op(
            "joinOrganization", "Accept an invitation", "E7 without an invitation." + write,
            [org], one, "organizations")},
        "/{id}/members/{user_id}": {"delete": op(
            "removeMember", "Remove a member, withdraw an invitation, leave or decline",
            "Admins remove anyone; anyone removes themself; the last admin stays." + write,
            [org, user_id], success, "organizations")},
        "/{id}/reports": {"post": op(
            "reportImage", "Report an image", "Any signed-in user." + write,
            [_id_path("An image id.")], one, "moderation",
            {"reason": {"enum": ["privacy", "offensive", "wrong_location", "other"]},
             "comment": _STRING})},
        "/reports": {"get": op(
            "listReports", "The moderation queue", "Instance moderators and admins see "
            "every report, organization admins their organization's; others get 403.",
            [_query("status", {"enum": ["open", "resolved", "all"]}, "Which reports "
                    "(default open).", "open"), before, limit], data, "moderation")},
        "/reports/{report_id}": {"post": op(
            "resolveReport", "Resolve a report", "`dismiss` keeps the image, `hide` hides "
            "it, `delete` deletes it; hiding or deleting resolves all its reports." + write,
            [report_id], one, "moderation",
            {"action": {"enum": ["dismiss", "hide", "delete"]}, "note": _STRING})},
        "/{id}/hide": {"post": op(
            "hideImage", "Hide an image", "Moderators: out of every tile and every answer "
            "except to its owner and moderators." + write, [_id_path("An image id.")], one,
            "moderation", {"reason": _STRING})},
        "/{id}/unhide": {"post": op(
            "unhideImage", "Show a hidden image again", "Moderators." + write,
            [_id_path("An image id.")], one, "moderation")},
        "/hidden_images": {"get": op(
            "listHiddenImages", "Hidden images", "Those a moderator may show again, most "
            "recently hidden first.", [limit], data, "moderation")},
        "/audit_log": {"get": op(
            "getAuditLog", "Who did what, when", "Instance admins and moderators read "
            "everything, organization admins their organizations' entries, others their "
            "own actions.",
            [_query("actor", {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    "Only this user's actions.", "4000000000001002"),
             _query("target_kind", _STRING, "With target_id: only this target.", "image"),
             _query("target_id", _STRING, "With target_kind: only this target.",
                    "4000000000001001"), before, limit], data, "moderation")},
    }


def _build(base_url: str, upload_prefix: str, ids_max: int, image_ids_max: int) -> Json:
    error_responses = {
        "GraphError": _json("GraphError", "An error in the Graph envelope (spec §1.8)."),
        "UploadError": _json("UploadError", "An error in the upload envelope (spec §8.6)."),
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "wayview",
            "version": __version__,
            "summary": "A self-hostable Mapillary API v4 server.",
            "description": "The Graph API, vector tiles, media URLs and the upload service "
            "of wayview, compatible with the Mapillary API v4. Tokens travel as "
            "`Authorization: OAuth <token>` (or `Bearer`) or as `?access_token=`; the header "
            "wins. Every response carries CORS headers and `x-fb-trace-id`; Graph responses "
            "carry `x-app-usage`. Unknown query parameters are ignored.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": base_url}],
        "security": [{"OAuthHeader": []}, {"AccessTokenQuery": []}],
        "tags": [
            {"name": "graph", "description": "Nodes by id (spec §3)."},
            {"name": "search", "description": "Searches and collections (spec §3.9–3.11)."},
            {"name": "tiles", "description": "Vector tiles (spec §4)."},
            {"name": "media", "description": "Public assets, no token (spec §6)."},
            {"name": "upload", "description": "The upload service of mapillary_tools (§8)."},
            {"name": "meta", "description": "About the server."},
            {"name": "export", "description": "Users' data exports (docs/export.md)."},
            {"name": "organizations", "description": "Organizations and their members "
             "(docs/organizations.md)."},
            {"name": "reblur", "description": "Changing the blurring of an image "
             "(docs/reblur.md)."},
            {"name": "moderation", "description": "Reports, moderation and the audit log "
             "(docs/moderation.md)."},
        ],
        "paths": {**_graph_paths(ids_max, image_ids_max), **_tile_paths(), **_media_paths(),
                  **_upload_paths(upload_prefix), **_meta_paths(),
                  **_export_paths(), **_governance_paths(), **_reblur_paths()},
        "components": {
            "schemas": _schemas(),
            "responses": error_responses,
            "securitySchemes": {
                "OAuthHeader": {"type": "apiKey", "in": "header", "name": "Authorization",
                                "description": "`OAuth <token>` (also `Bearer <token>`)."},
                "AccessTokenQuery": {"type": "apiKey", "in": "query", "name": "access_token",
                                     "description": "The token, percent-decoded once."},
            },
        },
    }


def openapi_document(settings: Settings) -> Json:
    """The OpenAPI 3.1 document for this server's settings (a fresh copy, safe to change)."""
    document: Json = orjson.loads(_document_bytes(settings))
    return document


def _document_bytes(settings: Settings) -> bytes:
    return _cached(settings.base_url, settings.upload.path_prefix,
                   settings.ids.max_per_request, settings.image_ids.max_per_request)


@lru_cache(maxsize=8)
def _cached(base_url: str, upload_prefix: str, ids_max: int, image_ids_max: int) -> bytes:
    return orjson.dumps(_build(base_url, upload_prefix, ids_max, image_ids_max))


async def serve_openapi(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /openapi.json: the OpenAPI document (no token, not counted)."""
    return Response(_document_bytes(ctx.settings), media_type=JSON_TYPE)
