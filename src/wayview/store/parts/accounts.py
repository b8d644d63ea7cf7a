"""wayview.store.parts.accounts: apps, tokens, web sessions and OAuth codes (Store protocol part).

Secrets never reach the store in clear: token, code and session texts arrive as SHA-256 hashes.
"""

from __future__ import annotations

from typing import Protocol

from wayview.model.entities import (
    App,
    AuthorizedApp,
    Credentials,
    OAuthCode,
    Token,
    WebSession,
)


class AccountsStore(Protocol):
    """Persistence for apps, tokens, browser sessions and authorization codes."""

    # -- apps -------------------------------------------------------------------------------
    async def create_app(
        self, app: App, *, client_token_hash: str, client_secret_hash: str
    ) -> App:
        """Store an app with the hashes of its client token and secret (its id is reserved
        with reserve_ids, or given by the operator). Raises Conflict if the id is taken."""

    async def get_app(self, app_id: int) -> App | None:
        """An app by id (deleted apps: None). Called by /connect, /token and the dashboard."""

    async def get_builtin_app(self) -> App | None:
        """The app that CLI-issued tokens belong to, if created."""

    async def apps_of_owner(self, owner_id: int) -> list[App]:
        """A user's registered apps, oldest first. Called by the developer dashboard."""

    async def app_secret_hash(self, app_id: int) -> str | None:
        """The hash of an app's client secret (None: unknown or deleted app). Called by /token."""

    async def set_app_secret(self, app_id: int, secret_hash: str, secret_gen: int | None) -> None:
        """Replace an app's client secret (rotation)."""

    async def delete_app(self, app_id: int) -> None:
        """Delete an app: it disappears from lookups and every token of it is revoked, so its
        tokens get E4 from then on."""

    # -- tokens -----------------------------------------------------------------------------
    async def create_token(self, token_hash: str, token: Token) -> None:
        """Store a token by the hash of its text."""

    async def get_token(self, token_hash: str) -> Token | None:
        """A token by the hash of its text. Called for every authenticated request."""

    async def revoke_token(self, token_hash: str) -> bool:
        """Revoke a token; False if unknown or already revoked."""

    async def retire_token(self, token_hash: str, expires_at_ms: int,
                           previous_expires_at_ms: int | None) -> bool:
        """Let a token expire at `expires_at_ms` (refresh grace), in one atomic
        compare-and-set: only if its expiry is still `previous_expires_at_ms` (what the caller
        read) and later than the new one. False (nothing changed) otherwise: another refresh
        got there first, it was retired before (a refresh token is good for one refresh), or
        its own lifetime ends sooner."""

    async def revoke_tokens_of_code(self, code_hash: str) -> list[str]:
        """Revoke every token descending from an authorization code; their hashes."""

    async def authorized_apps(self, user_id: int) -> list[AuthorizedApp]:
        """Apps holding live (unrevoked, unexpired) tokens of a user, the built-in app excluded.
        Called by the account page."""

    async def revoke_user_app(self, user_id: int, app_id: int) -> list[str]:
        """Revoke all of a user's tokens of one app; the hashes revoked."""

    # -- users' credentials and browser sessions -------------------------------------------
    async def get_credentials(self, login: str) -> Credentials | None:
        """A user and password hash by email or username (case-insensitive). Called by sign-in."""

    async def set_password(self, user_id: int, password_hash: str) -> None:
        """Replace a user's password hash."""

    async def create_web_session(self, session_hash: str, user_id: int,
                                 expires_at_ms: int) -> None:
        """Store a browser session by the hash of its id."""

    async def get_web_session(self, session_hash: str) -> WebSession | None:
        """A live or expired session with its user (the caller checks expiry)."""

    async def delete_web_sessions(self, user_id: int, *, keep: str | None = None) -> None:
        """End a user's sessions except `keep` (after a password change)."""

    async def delete_web_session(self, session_hash: str) -> None:
        """End one session (sign-out)."""

    # -- authorization codes ----------------------------------------------------------------
    async def create_oauth_code(self, code_hash: str, code: OAuthCode) -> None:
        """Store an authorization code by hash."""

    async def redeem_oauth_code(self, code_hash: str) -> OAuthCode | None:
        """Mark a code used and return it as it was (`used` True if it had been redeemed
        before: the caller then revokes its tokens). None if unknown."""
