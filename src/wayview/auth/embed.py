"""wayview.auth.embed: the embed token, the client token of a built-in read-only app that the
`/embed` page and the `/app` explorer hand to the browser (no user login needed; issue #6).

The app and its token are derived from the server secret, so every process of a deployment
finds the same token without coordination: the app id and the token text are HMACs of the
secret, only the token's SHA-256 is stored (like any client token), the app has the `read`
scope only, and its requests count against its own budget like any app's. An operator who
deletes or disables the app turns embedding off (`EmbedDisabled`).
"""

from __future__ import annotations

from wayview.auth.secret import derive
from wayview.auth.service import Authenticator
from wayview.auth.tokens import create_app
from wayview.errors import AppNotAuthorized, Conflict, TokenExpired, Unauthenticated, WayviewError
from wayview.ids import ID_MAX, ID_MIN
from wayview.store.base import Store

EMBED_APP_NAME = "wayview embed"
EMBED_SCOPES = ("read",)


class EmbedDisabled(WayviewError):
    """The embed app was deleted or disabled by an operator: the pages cannot get data."""

    message = "Embedding is disabled on this server"


def embed_app_id(server_secret: bytes) -> int:
    """The embed app's id: stable for one server secret, inside the node id range.

    >>> ID_MIN <= embed_app_id(b"k" * 32) <= ID_MAX
    True
    >>> embed_app_id(b"k" * 32) == embed_app_id(b"k" * 32)
    True
    """
    return ID_MIN + int(derive(server_secret, "embed-app-id", 16), 16) % (ID_MAX - ID_MIN + 1)


def embed_token_text(server_secret: bytes) -> str:
    """The embed app's client token, `MLY|<app id>|<32 hex>` (spec §7.4).

    >>> embed_token_text(b"k" * 32).startswith(f"MLY|{embed_app_id(b'k' * 32)}|")
    True
    """
    return f"MLY|{embed_app_id(server_secret)}|{derive(server_secret, 'embed-token')}"


async def embed_token(store: Store, authenticator: Authenticator, server_secret: bytes) -> str:
    """The embed token, creating its app on first use; raises EmbedDisabled when the app was
    deleted or disabled. Called by GET /embed and GET /app."""
    text = embed_token_text(server_secret)
    try:
        await authenticator.authenticate(text)
        return text
    except (AppNotAuthorized, TokenExpired) as exc:
        raise EmbedDisabled() from exc
    except Unauthenticated:
        pass  # never created
    try:
        await create_app(store, EMBED_APP_NAME, owner=None, scopes=EMBED_SCOPES,
                         client_token=text)
    except Conflict:
        pass  # another process created it a moment ago, or an operator deleted it
    try:
        await authenticator.authenticate(text)
    except Unauthenticated as exc:
        raise EmbedDisabled() from exc
    return text
