"""wayview.auth.tokens: mint, hash and verify client tokens, secrets, user tokens and passwords."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from wayview.auth.secret import derive
from wayview.errors import InvalidInput
from wayview.ids import parse_id
from wayview.model.entities import App, Token, User
from wayview.store.base import Store

SCOPES = ("read", "write", "upload")
BUILTIN_APP_NAME = "wayview"
_CLIENT_TOKEN_PREFIX = "MLY|"


def hash_token(text: str) -> str:
    """SHA-256 hex of a token text: tokens are high-entropy, so a fast hash is safe at rest."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def new_client_token(app_id: int) -> str:
    """`MLY|<app_id>|<32 lower-case hex>` (spec §7.4); also the client secret's shape."""
    return f"{_CLIENT_TOKEN_PREFIX}{app_id}|{secrets.token_hex(16)}"


def new_user_token() -> str:
    """`MLY` + 48 base64url characters, no `|` (spec §7.4)."""
    return "MLY" + secrets.token_urlsafe(36)


def parse_client_token(text: str) -> int:
    """The app id inside a client token given by an operator; raises InvalidInput if malformed.

    >>> parse_client_token("MLY|4100327730013843|5bb78b81720791946a9a7b956c57b7cf")
    4100327730013843
    """
    parts = text.split("|")
    if len(parts) != 3 or parts[0] != "MLY" or not parts[2] or parse_id(parts[1]) is None:
        raise InvalidInput("a client token looks like MLY|<app id>|<secret>")
    if not all(c.isalnum() or c in "_-" for c in parts[2]):
        raise InvalidInput("the secret part of a client token must be [A-Za-z0-9_-]")
    return int(parts[1])


def parse_scopes(text: str | None) -> tuple[str, ...]:
    """Scopes from a comma/space/plus list; all scopes when empty.

    >>> parse_scopes("read,upload"), parse_scopes(None)
    (('read', 'upload'), ('read', 'write', 'upload'))
    """
    if not text:
        return SCOPES
    wanted = [s for s in text.replace("+", ",").replace(" ", ",").split(",") if s]
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise InvalidInput(f"unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in wanted)


_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """Argon2id hash of a password."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Check a password against its argon2 hash (constant time inside argon2)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class NewApp:
    """An app just created, with its secrets shown once."""

    app: App
    client_token: str
    client_secret: str


def derived_client_token(server_secret: bytes, app_id: int, generation: int) -> str:
    """The client token of an app derived from the server secret (shown on the dashboard
    again later; the database holds only its hash).

    >>> derived_client_token(b"k" * 32, 7, 0).startswith("MLY|7|")
    True
    """
    part = derive(server_secret, f"client-token:{app_id}:{generation}")
    return f"{_CLIENT_TOKEN_PREFIX}{app_id}|{part}"


def derived_client_secret(server_secret: bytes, app_id: int, generation: int) -> str:
    """The client secret of an app derived from the server secret (see derived_client_token)."""
    part = derive(server_secret, f"client-secret:{app_id}:{generation}")
    return f"{_CLIENT_TOKEN_PREFIX}{app_id}|{part}"


async def create_app(
    store: Store,
    name: str,
    *,
    owner: User | None,
    redirect_uris: tuple[str, ...] = (),
    scopes: tuple[str, ...] = SCOPES,
    client_token: str | None = None,
    builtin: bool = False,
    server_secret: bytes | None = None,
    public_client: bool = False,
) -> NewApp:
    """Register an app; `client_token` pins a hard-coded token (iD, mapillary_tools).

    With `server_secret` the token (unless pinned) and the secret are derived from it, so the
    dashboard can show them again; without, they are random and shown only now.
    """
    token_gen: int | None = None
    secret_gen: int | None = None
    if client_token is not None:
        app_id = parse_client_token(client_token)
    else:
        (app_id,) = await store.reserve_ids("app", 1)
        if server_secret is not None:
            token_gen = 0
            client_token = derived_client_token(server_secret, app_id, token_gen)
        else:
            client_token = new_client_token(app_id)
    if server_secret is not None:
        secret_gen = 0
        secret = derived_client_secret(server_secret, app_id, secret_gen)
    else:
        secret = new_client_token(app_id)
    app = App(
        id=app_id, name=name, owner_id=owner.id if owner else None, scopes=scopes,
        redirect_uris=redirect_uris, builtin=builtin, token_gen=token_gen, secret_gen=secret_gen,
        public_client=public_client,
    )
    app = await store.create_app(
        app, client_token_hash=hash_token(client_token), client_secret_hash=hash_token(secret)
    )
    return NewApp(app=app, client_token=client_token, client_secret=secret)


@dataclass(frozen=True, slots=True)
class ShownCredentials:
    """What the dashboard may show of an app's credentials (None: not recoverable)."""

    client_token: str | None
    client_secret: str | None


async def shown_credentials(store: Store, server_secret: bytes, app: App) -> ShownCredentials:
    """Re-derive an app's token and secret and check them against the stored hashes (a changed
    server secret, or an operator-pinned token, makes them unrecoverable)."""
    token = secret = None
    if app.token_gen is not None:
        candidate = derived_client_token(server_secret, app.id, app.token_gen)
        found = await store.get_token(hash_token(candidate))
        if found is not None and found.kind == "client" and found.app_id == app.id:
            token = candidate
    if app.secret_gen is not None:
        candidate = derived_client_secret(server_secret, app.id, app.secret_gen)
        stored = await store.app_secret_hash(app.id)
        if stored is not None and tokens_equal(stored, hash_token(candidate)):
            secret = candidate
    return ShownCredentials(client_token=token, client_secret=secret)


async def rotate_secret(store: Store, server_secret: bytes, app: App) -> str:
    """Give an app a new client secret (the old one stops working at once); the new text."""
    generation = (app.secret_gen if app.secret_gen is not None else -1) + 1
    secret = derived_client_secret(server_secret, app.id, generation)
    await store.set_app_secret(app.id, hash_token(secret), generation)
    return secret


async def builtin_app(store: Store) -> App:
    """The app CLI-issued user tokens belong to, created on first use."""
    app = await store.get_builtin_app()
    if app is None:
        app = (await create_app(store, BUILTIN_APP_NAME, owner=None, builtin=True)).app
    return app


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A user access token just issued (its text is shown once)."""

    access_token: str
    expires_in: int
    app_id: int
    scopes: tuple[str, ...]


async def issue_user_token(
    store: Store,
    user: User,
    *,
    app: App | None = None,
    scopes: tuple[str, ...] = SCOPES,
    ttl_s: int = 5_184_000,
    code_hash: str | None = None,
) -> IssuedToken:
    """Issue a user access token for `app` (the built-in app when None)."""
    if app is None:
        app = await builtin_app(store)
    outside = [s for s in scopes if s not in app.scopes]
    if outside:
        raise InvalidInput(f"app {app.id} does not allow the scope {outside[0]!r}")
    text = new_user_token()
    expires_at_ms = int(time.time() * 1000) + ttl_s * 1000
    await store.create_token(
        hash_token(text),
        Token(app_id=app.id, kind="user", scopes=scopes, user_id=user.id,
              expires_at_ms=expires_at_ms, code_hash=code_hash),
    )
    return IssuedToken(access_token=text, expires_in=ttl_s, app_id=app.id, scopes=scopes)


async def ensure_demo_token(store: Store) -> str:
    """Create a read-only demo app and return its client token (persist it: shown once)."""
    return (await create_app(store, "wayview demo", owner=None, scopes=("read",))).client_token
