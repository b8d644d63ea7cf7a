"""wayview.auth.oauth: the authorization-code flow, `/token` grants and `/login` (spec §7).

Mapillary's flavour of OAuth 2.0: the refresh token *is* the current access token, the client
authenticates with `Authorization: OAuth <client secret>`, and errors use the Graph envelope
(E18–E22). Stock clients are met half-way: the secret is also accepted as HTTP Basic or a
`client_secret` parameter, and public clients (no secret) use PKCE with S256.

A code is bound to the callback `/connect` redirected to. At `/token` a `redirect_uri` that is
sent must equal the one `/connect` was given; it may be left out (spec §7.2, as OAuth 2.1 does:
JOSM's Mapillary plugin sends only `grant_type`, `client_id` and `code`). Leaving it out does
not weaken the exchange: `/connect` only ever redirects to a registered callback, and the code
is still redeemed only by its own client with its secret or its PKCE verifier.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from wayview.auth.tokens import (
    IssuedToken,
    hash_token,
    issue_user_token,
    parse_scopes,
    tokens_equal,
)
from wayview.errors import (
    AppNotAuthorized,
    InvalidAuthorizationCode,
    InvalidClientSecret,
    InvalidInput,
    InvalidOAuthParameter,
    TokenExpired,
)
from wayview.ids import parse_id
from wayview.model.entities import App, OAuthCode, User
from wayview.settings import Settings
from wayview.store.base import Store

#: The four error codes of the v4 documentation's redirects.
REDIRECT_ERRORS = ("user_denied", "invalid_request", "invalid_scope", "server_error")


class ReusedAuthorizationCode(InvalidAuthorizationCode):
    """A code redeemed twice (E19); the tokens issued from it have just been revoked."""

    def __init__(self, revoked_hashes: list[str]) -> None:
        super().__init__()
        self.revoked_hashes = revoked_hashes


class AuthorizePageError(Exception):
    """A `/connect` request that must not redirect anywhere (unknown app, unregistered URI)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthorizeRedirectError(Exception):
    """A `/connect` request answered by redirecting to the app with `error=`."""

    def __init__(self, redirect_uri: str, error: str, state: str | None) -> None:
        super().__init__(error)
        self.location = with_query(redirect_uri, {"error": error, "state": state})


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """A valid `/connect` request."""

    app: App
    redirect_uri: str
    redirect_uri_sent: bool
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str | None


def with_query(url: str, params: Mapping[str, str | None]) -> str:
    """`url` with `params` appended to its query (None values left out).

    >>> with_query("https://app.example/cb?x=1", {"code": "AQ", "state": None})
    'https://app.example/cb?x=1&code=AQ'
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a verifier (RFC 7636 appendix B).

    >>> s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'
    """
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


async def check_authorize(store: Store, params: Mapping[str, str]) -> AuthorizeRequest:
    """Validate `/connect` parameters in the order of spec §7.1."""
    app_id = parse_id(params.get("client_id", ""))
    app = await store.get_app(app_id) if app_id is not None else None
    if app is None or app.disabled or app.builtin:
        raise AuthorizePageError("This application is not registered on this server.")
    sent = params.get("redirect_uri")
    if sent is not None:
        if sent not in app.redirect_uris:
            raise AuthorizePageError("The redirect URI is not registered for this application.")
        redirect_uri = sent
    elif app.redirect_uris:
        redirect_uri = app.redirect_uris[0]
    else:
        raise AuthorizePageError("This application has no registered callback URL.")
    state = params.get("state")
    response_type = params.get("response_type")
    if response_type is not None and response_type != "code":
        raise AuthorizeRedirectError(redirect_uri, "invalid_request", state)
    try:
        wanted = parse_scopes(params.get("scope")) if params.get("scope") else app.scopes
    except InvalidInput:
        raise AuthorizeRedirectError(redirect_uri, "invalid_scope", state) from None
    if any(s not in app.scopes for s in wanted):
        raise AuthorizeRedirectError(redirect_uri, "invalid_scope", state)
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is not None:
        if (method or "plain") != "S256" or not 43 <= len(challenge) <= 128:
            raise AuthorizeRedirectError(redirect_uri, "invalid_request", state)
    elif app.public_client or method is not None:
        raise AuthorizeRedirectError(redirect_uri, "invalid_request", state)
    return AuthorizeRequest(app=app, redirect_uri=redirect_uri, redirect_uri_sent=sent is not None,
                            scopes=wanted, state=state, code_challenge=challenge)


async def grant_code(store: Store, settings: Settings, req: AuthorizeRequest, user: User) -> str:
    """Mint an authorization code for an approved request; the callback URL to redirect to."""
    code = "AQ" + secrets.token_urlsafe(32)
    await store.create_oauth_code(hash_token(code), OAuthCode(
        app_id=req.app.id, user_id=user.id, scopes=req.scopes,
        redirect_uri=req.redirect_uri if req.redirect_uri_sent else None,
        expires_at_ms=int((time.time() + settings.oauth.code_ttl_s) * 1000),
        code_challenge=req.code_challenge,
    ))
    return with_query(req.redirect_uri, {"code": code, "state": req.state})


def client_credentials(
    authorization: str | None, params: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """The client id and secret of a `/token` call. The secret comes from
    `Authorization: OAuth <secret>` (Mapillary), HTTP Basic (`client_id:secret`, which also
    names the client) or a `client_secret` parameter; the id from `client_id` or Basic.

    >>> client_credentials("OAuth MLY|1|ab", {"client_id": "1"})
    ('1', 'MLY|1|ab')
    >>> client_credentials("Basic " + base64.b64encode(b"7:s3").decode(), {})
    ('7', 's3')
    """
    client_id = params.get("client_id") or None
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "oauth" and value.strip():
            return client_id, value.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return client_id, None
            basic_id, _, secret = decoded.partition(":")
            return client_id or basic_id or None, secret or None
    return client_id, params.get("client_secret") or None


async def exchange(
    store: Store, settings: Settings, params: Mapping[str, str], authorization: str | None
) -> IssuedToken:
    """Run a `/token` grant and return the new access token (E18–E21 on failure)."""
    grant = params.get("grant_type")
    if not grant:
        raise InvalidOAuthParameter("grant_type", "missing")
    if grant not in ("authorization_code", "refresh_token"):
        raise InvalidOAuthParameter("grant_type", f"unsupported value {grant[:40]!r}")
    raw_id, secret = client_credentials(authorization, params)
    if not raw_id:
        raise InvalidOAuthParameter("client_id", "missing")
    app_id = parse_id(raw_id)
    app = await store.get_app(app_id) if app_id is not None else None
    if app is None or app.builtin:
        raise InvalidOAuthParameter("client_id", "unknown application")
    authenticated = False
    if secret is not None:
        stored = await store.app_secret_hash(app.id)
        if stored is None or not tokens_equal(stored, hash_token(secret)):
            raise InvalidClientSecret()
        authenticated = True
    if not authenticated and not app.public_client:  # before a code is spent
        raise InvalidClientSecret()
    if grant == "authorization_code":
        return await _code_grant(store, settings, app, params, authenticated)
    return await _refresh_grant(store, settings, app, params)


async def _code_grant(
    store: Store, settings: Settings, app: App, params: Mapping[str, str], authenticated: bool
) -> IssuedToken:
    code_text = params.get("code")
    if not code_text:
        raise InvalidOAuthParameter("code", "missing")
    code_hash = hash_token(code_text)
    code = await store.redeem_oauth_code(code_hash)
    if code is None:
        raise InvalidAuthorizationCode()
    if code.used:  # replay: whoever holds the tokens of this code loses them
        raise ReusedAuthorizationCode(await store.revoke_tokens_of_code(code_hash))
    if code.app_id != app.id or code.expires_at_ms <= time.time() * 1000:
        raise InvalidAuthorizationCode()
    sent_uri = params.get("redirect_uri")
    if sent_uri is not None and code.redirect_uri is not None and sent_uri != code.redirect_uri:
        raise InvalidAuthorizationCode()
    if code.code_challenge is not None:
        verifier = params.get("code_verifier")
        if not verifier:
            raise InvalidOAuthParameter("code_verifier", "missing")
        if not tokens_equal(s256(verifier), code.code_challenge):
            raise InvalidAuthorizationCode()
    elif not authenticated:
        raise InvalidClientSecret()
    users = await store.get_users([code.user_id])
    if code.user_id not in users:
        raise InvalidAuthorizationCode()
    issued = await issue_user_token(store, users[code.user_id], app=app, scopes=code.scopes,
                                    ttl_s=settings.oauth.token_ttl_s, code_hash=code_hash)
    return issued


async def _refresh_grant(
    store: Store, settings: Settings, app: App, params: Mapping[str, str]
) -> IssuedToken:
    text = params.get("refresh_token")
    if not text:
        raise InvalidOAuthParameter("refresh_token", "missing")
    old_hash = hash_token(text)
    token = await store.get_token(old_hash)
    if token is None or token.kind != "user" or token.user_id is None:
        raise InvalidOAuthParameter("refresh_token", "not a user access token of this server")
    if token.app_id != app.id:
        raise InvalidOAuthParameter("refresh_token", "issued to another application")
    if token.revoked or token.app_disabled:
        raise AppNotAuthorized(app.id)
    now_ms = int(time.time() * 1000)
    if token.expires_at_ms is not None and token.expires_at_ms <= now_ms:
        raise TokenExpired()
    users = await store.get_users([token.user_id])
    if token.user_id not in users:
        raise InvalidOAuthParameter("refresh_token", "its user no longer exists")
    # Claim the refresh first, atomically: of parallel refreshes of one token only one gets a
    # new token; the old one keeps working for the grace period but cannot be refreshed again.
    grace_ms = max(settings.oauth.refresh_grace_s * 1000, 1)
    if not await store.retire_token(old_hash, now_ms + grace_ms, token.expires_at_ms):
        raise InvalidOAuthParameter(
            "refresh_token", "already used: a refresh token gives one new token")
    return await issue_user_token(store, users[token.user_id], app=app, scopes=token.scopes,
                                  ttl_s=settings.oauth.token_ttl_s, code_hash=token.code_hash)
