"""wayview.store.postgres.accounts: the PostgreSQL implementation of AccountsStore.

Secrets never reach the store in clear: token, code and session texts arrive as SHA-256 hashes.
"""

from __future__ import annotations

import time
from typing import Any

from wayview.errors import Conflict
from wayview.model.entities import (
    App,
    AuthorizedApp,
    Credentials,
    OAuthCode,
    Token,
    User,
    WebSession,
)
from wayview.store.postgres.connection import Conn, Queries

_APP_SQL = (
    "SELECT id, name, owner_id, scopes, redirect_uris, builtin, disabled, token_gen,"
    " secret_gen, public_client, created_at_ms FROM apps"
)
_LIVE = "deleted_at_ms IS NULL"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _scopes(text: str) -> tuple[str, ...]:
    return tuple(s for s in text.split(",") if s)


def _app_from_row(r: tuple[Any, ...]) -> App:
    return App(
        id=r[0], name=r[1], owner_id=r[2], scopes=_scopes(r[3]),
        redirect_uris=tuple(u for u in r[4].split("\n") if u), builtin=bool(r[5]),
        disabled=bool(r[6]), token_gen=r[7], secret_gen=r[8], public_client=bool(r[9]),
        created_at_ms=r[10],
    )


class AccountsMixin(Queries):
    """AccountsStore on PostgreSQL; `self.db` is the store's Database."""

    async def _claim_id(self, conn: Conn, kind: str, node_id: int) -> None:
        raise NotImplementedError  # implemented by PostgresStore

    # -- apps -------------------------------------------------------------------------------
    async def create_app(
        self, app: App, *, client_token_hash: str, client_secret_hash: str
    ) -> App:
        """Store an app and its client token (hashes only), its id claimed in the same
        transaction."""
        now = _now_ms()
        async with self.db.transaction() as conn:
            await self._claim_id(conn, "app", app.id)
            cur = await conn.execute("SELECT 1 FROM apps WHERE id = %s", (app.id,))
            if await cur.fetchone():
                raise Conflict(f"app {app.id} already exists")
            if app.builtin:
                cur = await conn.execute("SELECT 1 FROM apps WHERE builtin")
                if await cur.fetchone():
                    raise Conflict("the built-in app already exists")
            await conn.execute(
                "INSERT INTO apps (id, name, owner_id, scopes, redirect_uris, client_secret_hash,"
                " builtin, disabled, token_gen, secret_gen, public_client, created_at_ms)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (app.id, app.name, app.owner_id, ",".join(app.scopes),
                 "\n".join(app.redirect_uris), client_secret_hash, app.builtin, app.disabled,
                 app.token_gen, app.secret_gen, app.public_client, now),
            )
            await conn.execute(
                "INSERT INTO tokens (token_hash, kind, app_id, user_id, scopes, created_at_ms)"
                " VALUES (%s, 'client', %s, NULL, 'read', %s)",
                (client_token_hash, app.id, now),
            )
        return App(**{**{f: getattr(app, f) for f in App.__dataclass_fields__},
                      "created_at_ms": now})

    async def get_app(self, app_id: int) -> App | None:
        """An app by id, unless deleted."""
        row = await self._one(f"{_APP_SQL} WHERE id = %s AND {_LIVE}", (app_id,))
        return _app_from_row(row) if row else None

    async def get_builtin_app(self) -> App | None:
        """The built-in app, if created."""
        row = await self._one(f"{_APP_SQL} WHERE builtin AND {_LIVE}")
        return _app_from_row(row) if row else None

    async def apps_of_owner(self, owner_id: int) -> list[App]:
        """A user's live apps, oldest first."""
        rows = await self._all(
            f"{_APP_SQL} WHERE owner_id = %s AND {_LIVE} ORDER BY created_at_ms, id", (owner_id,))
        return [_app_from_row(r) for r in rows]

    async def app_secret_hash(self, app_id: int) -> str | None:
        """The client secret's hash of a live app."""
        row = await self._one(
            f"SELECT client_secret_hash FROM apps WHERE id = %s AND {_LIVE}", (app_id,))
        return str(row[0]) if row else None

    async def set_app_secret(self, app_id: int, secret_hash: str, secret_gen: int | None) -> None:
        """Replace the client secret's hash."""
        await self._run(
            f"UPDATE apps SET client_secret_hash = %s, secret_gen = %s WHERE id = %s"
            f" AND {_LIVE}", (secret_hash, secret_gen, app_id))

    async def delete_app(self, app_id: int) -> None:
        """Soft-delete: the row stays (tokens must keep answering E4), hidden from lookups."""
        now = _now_ms()
        async with self.db.transaction() as conn:
            await conn.execute(
                f"UPDATE apps SET deleted_at_ms = %s, disabled = true WHERE id = %s AND {_LIVE}",
                (now, app_id))
            await conn.execute(
                "UPDATE tokens SET revoked_at_ms = %s WHERE app_id = %s"
                " AND revoked_at_ms IS NULL", (now, app_id))

    # -- tokens -----------------------------------------------------------------------------
    async def create_token(self, token_hash: str, token: Token) -> None:
        """Store a token by hash."""
        await self._run(
            "INSERT INTO tokens (token_hash, kind, app_id, user_id, scopes, expires_at_ms,"
            " code_hash, created_at_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (token_hash, token.kind, token.app_id, token.user_id, ",".join(token.scopes),
             token.expires_at_ms, token.code_hash, _now_ms()))

    async def get_token(self, token_hash: str) -> Token | None:
        """A token by hash, with its app's disabled flag."""
        row = await self._one(
            "SELECT t.app_id, t.kind, t.scopes, t.user_id, t.expires_at_ms,"
            " t.revoked_at_ms, a.disabled, t.code_hash FROM tokens t"
            " JOIN apps a ON a.id = t.app_id WHERE t.token_hash = %s", (token_hash,))
        if row is None:
            return None
        return Token(
            app_id=row[0], kind=row[1], scopes=_scopes(row[2]), user_id=row[3],
            expires_at_ms=row[4], revoked=row[5] is not None, app_disabled=bool(row[6]),
            code_hash=row[7],
        )

    async def revoke_token(self, token_hash: str) -> bool:
        """Mark a token revoked."""
        return bool(await self._run(
            "UPDATE tokens SET revoked_at_ms = %s"
            " WHERE token_hash = %s AND revoked_at_ms IS NULL", (_now_ms(), token_hash)))

    async def retire_token(self, token_hash: str, expires_at_ms: int,
                           previous_expires_at_ms: int | None) -> bool:
        """Compare-and-set a token's expiry to `expires_at_ms` (see the protocol). A
        concurrent UPDATE waits for the row lock and re-checks against the new row, so of
        parallel refreshes exactly one wins."""
        return 0 < await self._run(
            "UPDATE tokens SET expires_at_ms = %s WHERE token_hash = %s"
            " AND expires_at_ms IS NOT DISTINCT FROM %s"
            " AND (expires_at_ms IS NULL OR expires_at_ms > %s)",
            (expires_at_ms, token_hash, previous_expires_at_ms, expires_at_ms))

    async def revoke_tokens_of_code(self, code_hash: str) -> list[str]:
        """Revoke the tokens issued from a code (and refreshed from those)."""
        return await self._revoke_where("code_hash = %s", (code_hash,))

    async def revoke_user_app(self, user_id: int, app_id: int) -> list[str]:
        """Revoke a user's tokens of one app."""
        return await self._revoke_where("user_id = %s AND app_id = %s", (user_id, app_id))

    async def _revoke_where(self, where: str, params: tuple[Any, ...]) -> list[str]:
        """Revoke the live tokens matching `where` (a fixed SQL fragment); their hashes."""
        rows = await self._all(
            f"UPDATE tokens SET revoked_at_ms = %s WHERE {where} AND revoked_at_ms IS NULL"
            " RETURNING token_hash", (_now_ms(), *params))
        return [str(r[0]) for r in rows]

    async def authorized_apps(self, user_id: int) -> list[AuthorizedApp]:
        """Apps with live tokens of the user (not the built-in CLI app)."""
        rows = await self._all(
            "SELECT a.id, a.name, a.owner_id, a.scopes, a.redirect_uris, a.builtin,"
            " a.disabled, a.token_gen, a.secret_gen, a.public_client, a.created_at_ms,"
            " t.scopes, t.since FROM (SELECT app_id, string_agg(scopes, ',') AS scopes,"
            " MIN(created_at_ms) AS since FROM tokens WHERE user_id = %s AND kind = 'user'"
            " AND revoked_at_ms IS NULL AND (expires_at_ms IS NULL OR expires_at_ms > %s)"
            " GROUP BY app_id) t JOIN apps a ON a.id = t.app_id"
            " WHERE a.deleted_at_ms IS NULL AND NOT a.builtin", (user_id, _now_ms()))
        out = []
        for r in rows:
            granted = set(_scopes(r[11]))
            out.append(AuthorizedApp(
                app=_app_from_row(r[:11]),
                scopes=tuple(s for s in ("read", "write", "upload") if s in granted),
                authorized_at_ms=r[12],
            ))
        out.sort(key=lambda a: (a.app.name.lower(), a.app.id))
        return out

    # -- credentials and sessions -----------------------------------------------------------
    async def get_credentials(self, login: str) -> Credentials | None:
        """By email first, then by username (both case-insensitive)."""
        sql = "SELECT id, username, email, created_at_ms, password_hash FROM users WHERE "
        row = None
        if "@" in login:
            row = await self._one(sql + "lower(email) = lower(%s)", (login,))
        if row is None:
            row = await self._one(sql + "lower(username) = lower(%s)", (login,))
        if row is None:
            return None
        user = User(id=row[0], username=row[1], email=row[2], created_at_ms=row[3])
        return Credentials(user=user, password_hash=row[4])

    async def set_password(self, user_id: int, password_hash: str) -> None:
        """Store a new password hash."""
        await self._run("UPDATE users SET password_hash = %s WHERE id = %s",
                        (password_hash, user_id))

    async def create_web_session(self, session_hash: str, user_id: int,
                                 expires_at_ms: int) -> None:
        """Store a session; expired sessions of anyone are swept on the way."""
        now = _now_ms()
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM web_sessions WHERE expires_at_ms <= %s", (now,))
            await conn.execute(
                "INSERT INTO web_sessions (session_hash, user_id, created_at_ms, expires_at_ms)"
                " VALUES (%s, %s, %s, %s)", (session_hash, user_id, now, expires_at_ms))

    async def get_web_session(self, session_hash: str) -> WebSession | None:
        """A session with its user."""
        row = await self._one(
            "SELECT u.id, u.username, u.email, u.created_at_ms, s.created_at_ms,"
            " s.expires_at_ms FROM web_sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.session_hash = %s", (session_hash,))
        if row is None:
            return None
        user = User(id=row[0], username=row[1], email=row[2], created_at_ms=row[3])
        return WebSession(user=user, created_at_ms=row[4], expires_at_ms=row[5])

    async def delete_web_sessions(self, user_id: int, *, keep: str | None = None) -> None:
        """End every session of a user but `keep`."""
        await self._run(
            "DELETE FROM web_sessions WHERE user_id = %s AND session_hash <> %s",
            (user_id, keep or ""))

    async def delete_web_session(self, session_hash: str) -> None:
        """End one session."""
        await self._run("DELETE FROM web_sessions WHERE session_hash = %s", (session_hash,))

    # -- authorization codes ----------------------------------------------------------------
    async def create_oauth_code(self, code_hash: str, code: OAuthCode) -> None:
        """Store a code; expired codes are swept on the way."""
        now = _now_ms()
        async with self.db.transaction() as conn:
            # Used codes are kept a day past expiry so a late replay still revokes its tokens.
            await conn.execute("DELETE FROM oauth_codes WHERE expires_at_ms <= %s",
                               (now - 86_400_000,))
            await conn.execute(
                "INSERT INTO oauth_codes (code_hash, app_id, user_id, scopes, redirect_uri,"
                " code_challenge, expires_at_ms, created_at_ms)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (code_hash, code.app_id, code.user_id, ",".join(code.scopes), code.redirect_uri,
                 code.code_challenge, code.expires_at_ms, now))

    async def redeem_oauth_code(self, code_hash: str) -> OAuthCode | None:
        """Mark used and return the code as it was. The row lock (FOR UPDATE) makes two
        concurrent redemptions of one code see it unused exactly once."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "SELECT app_id, user_id, scopes, redirect_uri, expires_at_ms, code_challenge,"
                " used_at_ms FROM oauth_codes WHERE code_hash = %s FOR UPDATE", (code_hash,))
            row = await cur.fetchone()
            if row is None:
                return None
            if row[6] is None:
                await conn.execute("UPDATE oauth_codes SET used_at_ms = %s WHERE code_hash = %s",
                                   (_now_ms(), code_hash))
        return OAuthCode(app_id=row[0], user_id=row[1], scopes=_scopes(row[2]),
                         redirect_uri=row[3], expires_at_ms=row[4], code_challenge=row[5],
                         used=row[6] is not None)
