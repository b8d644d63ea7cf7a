"""wayview.api.errors: the one table mapping domain errors to HTTP, and the Graph error envelope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from wayview.errors import (
    Conflict,
    InvalidAuthorizationCode,
    InvalidClientSecret,
    InvalidCredentials,
    InvalidInput,
    InvalidOAuthParameter,
    InvalidParameter,
    MissingParameter,
    MissingScope,
    NodeNotFound,
    NotOrganizationMember,
    PasswordLoginDisabled,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    TileNotFound,
    Unauthenticated,
    UnknownField,
    WayviewError,
)


class AssetNotFound(WayviewError):
    """A media URL that names nothing stored."""

    message = "Asset not found"


@dataclass(frozen=True, slots=True)
class ErrorShape:
    """How one error class looks on the wire (spec §2)."""

    status: int
    type: str
    code: int
    subcode: int | None = None
    transient: bool = False


#: The only place HTTP statuses of domain errors live (STYLE rule 6). Most specific first.
EXCEPTION_SHAPES: list[tuple[type[Exception], ErrorShape]] = [
    (Unauthenticated, ErrorShape(401, "OAuthException", 190)),          # E1–E5, E21
    (RateLimited, ErrorShape(429, "MLYApiException", 4, transient=True)),  # E14
    (InvalidClientSecret, ErrorShape(401, "OAuthException", 190)),      # E18
    (InvalidAuthorizationCode, ErrorShape(400, "OAuthException", 100)),  # E19
    (InvalidOAuthParameter, ErrorShape(400, "OAuthException", 100)),    # E20
    (InvalidCredentials, ErrorShape(401, "OAuthException", 1, 1348028)),  # E22
    (PasswordLoginDisabled, ErrorShape(400, "MLYApiException", 100)),   # E23
    (MissingScope, ErrorShape(403, "OAuthException", 200)),              # E6
    (NotOrganizationMember, ErrorShape(403, "MLYApiException", 10)),     # E26
    (PermissionDenied, ErrorShape(403, "MLYApiException", 10)),
    (NodeNotFound, ErrorShape(400, "MLYApiException", 100, 33)),         # E7
    (UnknownField, ErrorShape(400, "MLYApiException", 100)),             # E8
    (InvalidParameter, ErrorShape(400, "MLYApiException", 100)),         # E9, E11, E12
    (MissingParameter, ErrorShape(400, "MLYApiException", 100)),         # E10
    (TileNotFound, ErrorShape(404, "MLYApiException", 100)),            # E15
    (AssetNotFound, ErrorShape(404, "MLYApiException", 100)),
    (Conflict, ErrorShape(400, "MLYApiException", 100)),
    (InvalidInput, ErrorShape(400, "MLYApiException", 100)),
    (ServiceUnavailable, ErrorShape(503, "MLYApiException", 2, transient=True)),  # E17
]
INTERNAL = ErrorShape(500, "MLYApiException", 1, transient=True)  # E16
INTERNAL_MESSAGE = "An unknown error has occurred."
UNAVAILABLE_MESSAGE = "Service temporarily unavailable"


def shape_of(exc: BaseException) -> ErrorShape:
    """The wire shape of an exception (E16 for anything unexpected)."""
    for cls, shape in EXCEPTION_SHAPES:
        if isinstance(exc, cls):
            return shape
    return INTERNAL


def envelope(exc: BaseException, trace_id: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, body and extra headers of the Graph error envelope for `exc` (spec §1.8)."""
    shape = shape_of(exc)
    if shape is INTERNAL:
        message = INTERNAL_MESSAGE
    elif isinstance(exc, ServiceUnavailable):
        message = UNAVAILABLE_MESSAGE
    else:
        message = exc.message if isinstance(exc, WayviewError) else str(exc)
    error: dict[str, Any] = {"message": message, "type": shape.type, "code": shape.code}
    if shape.subcode is not None:
        error["error_subcode"] = shape.subcode
    if shape.transient:
        error["is_transient"] = True
    if isinstance(exc, InvalidCredentials):
        error["error_user_title"] = exc.user_title
        error["error_user_msg"] = exc.user_msg
    error["fbtrace_id"] = trace_id
    headers: list[tuple[bytes, bytes]] = []
    if isinstance(exc, RateLimited):
        headers.append((b"retry-after", str(exc.retry_after_s).encode()))
        headers.append((b"x-app-usage", usage_header(exc.usage_percent)))
    if shape.status == 401:
        headers.append((b"www-authenticate", b'OAuth error="invalid_token"'))
    if isinstance(exc, ServiceUnavailable):
        headers.append((b"retry-after", str(exc.retry_after_s).encode()))
    elif shape.status == 503:
        headers.append((b"retry-after", b"5"))
    return shape.status, orjson.dumps({"error": error}), headers


_USAGE = [b'{"call_count":%d,"total_cputime":%d,"total_time":%d}' % (p, p, p)
          for p in range(101)]


def usage_header(percent: int) -> bytes:
    """The `x-app-usage` value (spec §9): the three shares, all equal, integers 0–100.

    >>> usage_header(7)
    b'{"call_count":7,"total_cputime":7,"total_time":7}'
    """
    return _USAGE[min(100, max(0, int(percent)))]
