"""wayview.api.upload: the upload service mapillary_tools talks to (spec §8).

    GET  {upload.path_prefix}/{session_key}   → {"offset": <bytes held>}
    POST {upload.path_prefix}/{session_key}   → {"h": "<file handle>"}   (body from `Offset`)
    POST /finish_upload                       → {"cluster_id": "<digits>"}
    POST /logging                             → {}

The session endpoints answer errors in the upload service's own envelope (spec §8.6,
`error_response`); `/finish_upload` and `/logging` are Graph endpoints with the Graph envelope.
Bodies are streamed to the staged file as they arrive (wayview.ingest.upload_sessions).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from wayview.api.errors import INTERNAL_MESSAGE, shape_of
from wayview.api.responses import JSON_TYPE, json_response
from wayview.errors import (
    InvalidParameter,
    MissingScope,
    OffsetInvalid,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
    UploadInterrupted,
    UploadTooLarge,
    UserTokenRequired,
    WayviewError,
)
from wayview.ingest import upload_job  # noqa: F401  (registers the ingest.upload job handler)
from wayview.ingest.upload_finish import finish_upload, parse_finish_request
from wayview.ingest.upload_sessions import (
    MAX_SESSION_KEY,
    QuotaExceeded,
    StorageFull,
    UploadSessions,
)

if TYPE_CHECKING:
    from wayview.api.app import Context

log = logging.getLogger("wayview.upload")

#: Most bytes of a refused upload body read away so the client sees the answer.
MAX_DRAIN_BYTES = 64 * 1024 * 1024
#: Seconds a client is asked to wait when the disk is below `upload.min_free_disk_bytes`.
STORAGE_FULL_RETRY_S = 60
#: Largest JSON body of `/finish_upload` and `/logging`.
MAX_JSON_BODY = 1024 * 1024
_DIGITS = re.compile(r"[0-9]{1,19}")


def _uploader(ctx: Context) -> int:
    """The calling user's id; client tokens are refused (U1 / E5)."""
    assert ctx.principal is not None
    if ctx.principal.user_id is None:
        raise UserTokenRequired()
    return ctx.principal.user_id


def _session_key(match: re.Match[str]) -> str:
    key = match["session_key"]
    if len(key) > MAX_SESSION_KEY:
        raise InvalidParameter("session_key", f"longer than {MAX_SESSION_KEY} characters")
    return key


def _offset(value: str | None) -> int:
    """The `Offset` header; missing counts as 0 (spec §8.2), anything else invalid is U2."""
    if value is None or not value.strip():
        return 0
    if _DIGITS.fullmatch(value.strip()) is None:
        raise OffsetInvalid()
    return int(value.strip())


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise UploadInterrupted() from None


async def _json_body(request: Request) -> Any:
    """The JSON body (at most `MAX_JSON_BODY` bytes); a body that breaks off (the client went
    away, or a malformed chunked encoding the server gave up on) is a 400, never a 500."""
    data = bytearray()
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_JSON_BODY:
                raise InvalidParameter("body", f"larger than {MAX_JSON_BODY} bytes")
    except ClientDisconnect:
        raise InvalidParameter("body", "the request body is incomplete or malformed") from None
    if not data.strip():
        return {}
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidParameter("body", "not valid JSON") from None


async def offset(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET {UPLOAD}/{session_key}: bytes held, 0 for an unknown session."""
    held = await UploadSessions(ctx.settings, ctx.store).offset(_uploader(ctx),
                                                                _session_key(match))
    return json_response({"offset": held})


async def append(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST {UPLOAD}/{session_key}: append the body at `Offset`; the file handle."""
    try:
        user_id, key = _uploader(ctx), _session_key(match)
        start = _offset(request.headers.get("offset"))
        length_header = request.headers.get("content-length", "")
        length = int(length_header) if length_header.isascii() and length_header.isdigit() \
            else None
        handle = await UploadSessions(ctx.settings, ctx.store).append(
            user_id, key, start, _body(request), length=length)
    except (UploadTooLarge, UploadInterrupted):
        raise  # too large to read away, or the body is gone already
    except WayviewError:
        # Refused before the body was read (412 offset, 400 header, 403 token kind): read it
        # away (bounded) so the client gets the answer instead of a connection closed under it.
        await _drain(request, MAX_DRAIN_BYTES)
        raise
    return json_response({"h": handle})


async def _drain(request: Request, limit: int) -> None:
    """Read and drop up to `limit` bytes of what is left of the body (no error if it breaks
    off, or if it was read to its end already: starlette then raises RuntimeError)."""
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                return
    except (ClientDisconnect, RuntimeError):
        return


async def finish(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /finish_upload: queue a finished upload's processing; its cluster id."""
    user_id = _uploader(ctx)
    finish_request = parse_finish_request(await _json_body(request))
    cluster_id = await finish_upload(ctx.settings, ctx.store, user_id, finish_request)
    return json_response({"cluster_id": str(cluster_id)})


async def logging_event(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /logging: mapillary_tools' upload events; logged at debug level, then dropped."""
    event = await _json_body(request)
    if isinstance(event, dict):
        log.debug("client event %s", str(event.get("action_type"))[:100])
    return json_response({})


def _upload_error(status: int, kind: str, message: str, retriable: bool,
                  headers: dict[str, str] | None = None, **extra: Any) -> Response:
    body = {"debug_info": {"retriable": retriable, "type": kind, "message": message}, **extra}
    return Response(orjson.dumps(body), status_code=status, media_type=JSON_TYPE,
                    headers=headers)


def error_response(exc: Exception) -> Response:
    """An error of the session endpoints in the upload envelope (spec §8.6, U1–U5)."""
    if isinstance(exc, Unauthenticated):
        return _upload_error(401, "NotAuthorizedError", exc.message, False,
                             {"WWW-Authenticate": 'OAuth error="invalid_token"'})
    if isinstance(exc, MissingScope):
        return _upload_error(403, "NotAuthorizedError", exc.message, False)
    if isinstance(exc, OffsetInvalid):
        return _upload_error(412, "OffsetInvalidError", exc.message, True)
    if isinstance(exc, RateLimited):
        return _upload_error(429, "RequestRateLimitedError",
                             "Request rate limit has been exceeded", True,
                             {"Retry-After": str(exc.retry_after_s)},
                             backoff=exc.retry_after_s * 1000)
    if isinstance(exc, QuotaExceeded):
        return _upload_error(413, "QuotaExceededError", exc.message, False)
    if isinstance(exc, UploadTooLarge):
        return _upload_error(413, "FileTooLargeError", exc.message, False)
    if isinstance(exc, StorageFull):
        return _upload_error(507, "InsufficientStorageError", exc.message, True,
                             {"Retry-After": str(STORAGE_FULL_RETRY_S)},
                             backoff=STORAGE_FULL_RETRY_S * 1000)
    if isinstance(exc, ServiceUnavailable):  # the store, the blob store, a fail-closed limiter
        return _upload_error(503, "InternalError", INTERNAL_MESSAGE, True,
                             {"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, UploadInterrupted):
        return _upload_error(400, "InvalidRequestError", exc.message, True)
    if isinstance(exc, WayviewError) and shape_of(exc).status < 500:
        return _upload_error(shape_of(exc).status, "InvalidRequestError", exc.message, False)
    log.error("upload request failed", exc_info=exc)
    return _upload_error(500, "InternalError", INTERNAL_MESSAGE, True)


async def session(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """{UPLOAD}/{session_key}: GET reads the offset, POST appends."""
    if request.method == "POST":
        return await append(ctx, request, match)
    return await offset(ctx, request, match)
