"""wayview.errors: the domain exception tree (no HTTP here; api/errors.py maps it to statuses).

    WayviewError
    ├── Unauthenticated          no / unknown token (E1, E2)
    │   ├── TokenExpired         E3
    │   ├── AppNotAuthorized     E4
    │   └── UserTokenRequired    E5
    ├── MissingScope             E6
    ├── NodeNotFound             E7 (also unsupported operation / unknown path / wrong method)
    ├── UnknownField             E8
    ├── InvalidParameter         E9, E11, E12
    ├── MissingParameter         E10
    ├── TileNotFound             E15 (unknown tileset/version, z/x/y out of range)
    ├── Conflict                 a write that collides with stored data (CLI only)
    ├── ServiceUnavailable       a dependency cannot be used right now (E17, 503, transient)
    │   ├── StoreUnavailable     the database
    │   ├── BlobsUnavailable     the blob store (S3 or the blob folder)
    │   └── LimiterUnavailable   the shared rate limiter (Redis), with rate_limit fail-closed
    ├── InvalidInput             bad input to a service (CLI / import), never reaches HTTP as 500
    ├── NotOrganizationMember    E26
    └── OffsetInvalid, UploadTooLarge, UploadInterrupted   upload service (U2, U4)
"""

from __future__ import annotations

import errno


class WayviewError(Exception):
    """Base of every error raised on purpose."""

    message: str = "An unknown error has occurred."

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class Unauthenticated(WayviewError):
    """No token, or a token that matches nothing (E1/E2)."""

    message = "Invalid OAuth 2.0 Access Token"


class TokenExpired(Unauthenticated):
    """The user token has expired (E3)."""

    message = "Error validating access token: Session has expired."


class AppNotAuthorized(Unauthenticated):
    """The token was revoked or its app disabled (E4)."""

    def __init__(self, app_id: int) -> None:
        super().__init__(
            "Error validating access token: The user has not authorized application "
            f"{app_id}."
        )


class UserTokenRequired(Unauthenticated):
    """A client token was used where a user token is needed (E5)."""

    message = "Error validating access token: A user access token is required for this request."


class MissingScope(WayviewError):
    """The token lacks a scope (E6)."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"Permissions error: the access token does not have the '{scope}' scope.")
        self.scope = scope


class NodeNotFound(WayviewError):
    """Unknown id, invisible node, unsupported operation or path (E7)."""

    def __init__(self, node_id: str, method: str = "get") -> None:
        super().__init__(
            f"Unsupported {method} request. Object with ID '{node_id}' does not exist, "
            "cannot be loaded due to missing permissions, or does not support this operation"
        )
        self.node_id = node_id


class UnknownField(WayviewError):
    """A requested field does not exist on the node type (E8)."""

    def __init__(self, field: str, node_type: str) -> None:
        super().__init__(f"Tried accessing nonexisting field ({field}) on node type ({node_type})")
        self.field = field
        self.node_type = node_type


class InvalidParameter(WayviewError):
    """A parameter value is malformed or out of range (E9, E11, E12)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"Invalid parameter {name}: {reason}")
        self.name = name
        self.reason = reason


class MissingParameter(WayviewError):
    """A required parameter is absent (E10)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Missing required parameter {name}")
        self.name = name


class Conflict(WayviewError):
    """A write collides with stored data (a duplicate name, an id already taken)."""


class InvalidInput(WayviewError):
    """Input to a service (CLI, import) that cannot be used."""


class ServiceUnavailable(WayviewError):
    """A service a request needs does not answer right now (E17: 503, `is_transient`,
    `Retry-After: retry_after_s`). The component that saw it logs the outage once."""

    retry_after_s: int = 5
    #: True when the component that raised it has logged the outage (`wayview.logs.Outage`).
    logged: bool = False


class StoreUnavailable(ServiceUnavailable):
    """The database could not be used (locked too long, disk error, unreachable) (E17)."""


class BlobsUnavailable(ServiceUnavailable):
    """The blob store (S3, the blob folder) did not answer in time (E17)."""


class LimiterUnavailable(ServiceUnavailable):
    """The shared rate limiter (Redis) cannot count and `rate_limit_fail_open` is off (E17):
    an outage is not a spent quota (issue #22)."""

    retry_after_s = 2
    logged = True


class TileNotFound(WayviewError):
    """A tile request outside the contract (E15)."""

    message = "Unsupported tile request"


class RateLimited(WayviewError):
    """An app spent its request budget (E14); `retry_after_s` until budget is available."""

    message = "Application request limit reached"

    def __init__(self, retry_after_s: int, usage_percent: int = 100) -> None:
        super().__init__()
        self.retry_after_s = max(1, retry_after_s)
        self.usage_percent = usage_percent


class OAuthError(WayviewError):
    """Base of the `/token` and `/login` errors (OAuthException type, spec §7)."""


class InvalidClientSecret(OAuthError):
    """`/token` without the app's client secret (E18)."""

    message = "Error validating client secret."


class InvalidAuthorizationCode(OAuthError):
    """Unknown, expired, reused or foreign authorization code, or redirect mismatch (E19)."""

    message = "Invalid authorization code."


class InvalidOAuthParameter(OAuthError):
    """A bad or missing `/token` parameter (E20)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"Invalid parameter {name}: {reason}")
        self.name = name


class InvalidCredentials(OAuthError):
    """`/login` with a wrong email or password, or throttled (E22)."""

    message = "Invalid credentials"
    user_title = "Wrong email or password"
    user_msg = "The email or password you entered is incorrect."


class PasswordLoginDisabled(WayviewError):
    """`/login` while `auth.password_login` is off (E23)."""

    message = "Password login is disabled on this server; authenticate with a token."


class Forbidden(WayviewError):
    """A web form without a valid CSRF token, or an action on something not the caller's."""

    message = "Forbidden"


class InviteRequired(WayviewError):
    """Sign-up on an invite-only server without a valid invitation for that e-mail."""

    message = ("This server accepts new accounts by invitation only: open the invitation "
               "link you received, with the e-mail address it was sent to.")


class TooManyAttempts(WayviewError):
    """Sign-in throttled for this account or address; `retry_after_s` until the next try."""

    message = "Too many sign-in attempts. Try again later."

    def __init__(self, retry_after_s: int) -> None:
        super().__init__()
        self.retry_after_s = max(1, retry_after_s)


class OffsetInvalid(WayviewError):
    """An upload POST whose `Offset` is not the number of bytes held (U2)."""

    message = "Request starting offset is invalid"


class UploadTooLarge(WayviewError):
    """An upload that would exceed `upload.max_session_bytes` (U4)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"Upload exceeds the maximum size of {limit} bytes")
        self.limit = limit


class UploadInterrupted(WayviewError):
    """The client went away in the middle of an upload body (what arrived is kept)."""

    message = "The upload body ended early"


class NotOrganizationMember(WayviewError):
    """`finish_upload` for an organization the caller does not belong to (E26)."""

    def __init__(self, organization_id: int | str) -> None:
        super().__init__(f"Permission denied: not a member of organization {organization_id}")


class PermissionDenied(WayviewError):
    """The caller may see the target but not do this to it (an organization's members, the
    moderation queue, another user's role)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"Permission denied: {what}")


_TRANSIENT_ERRNOS = frozenset({
    errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ECONNREFUSED, errno.ECONNRESET,
    errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH,
    errno.ENETDOWN, errno.EAGAIN, errno.EPIPE,
})


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` says a service or the disk is unavailable for now (retry later) rather
    than that the request or job is wrong (E17; a job retries it later).

    >>> is_transient(OSError(errno.ENOSPC, "No space left on device"))
    True
    >>> is_transient(FileNotFoundError(errno.ENOENT, "gone")), is_transient(KeyError("x"))
    (False, False)
    """
    if isinstance(exc, (ServiceUnavailable, ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS
