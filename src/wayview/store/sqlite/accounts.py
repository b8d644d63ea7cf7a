"""wayview.store.sqlite.accounts: the SQLite implementation of AccountsStore."""

from __future__ import annotations

import sqlite3
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
from wayview.store.sqlite.connection import Database

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


class AccountsMixin:
    """AccountsStore on SQLite; `self.db` is the store's Database."""

    db: Database

    async def _claim_id(self, kind: str, node_id: int) -> None:  # implemented by SqliteStore
        raise NotImplementedError

    async def node_kinds(self, ids: list[int]) -> dict[int, str]:  # implemented by SqliteStore
        raise NotImplementedError

    # -- apps -------------------------------------------------------------------------------
    async def create_app(
        self, app: App, *, client_token_hash: str, client_secret_hash: str
    ) -> App:
        """Store an app and its client token (hashes only)."""
        kinds = await self.node_kinds([app.id])
        if app.id not in kinds:
            await self._claim_id("app", app.id)
        elif kinds[app.id] != "app":
            raise Conflict(f"id {app.id} is already used by a {kinds[app.id]}")
        now = _now_ms()

        def run(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM apps WHERE id = ?", (app.id,)).fetchone():
                raise Conflict(f"app {app.id} already exists")
            if app.builtin and conn.execute("SELECT 1 FROM apps WHERE builtin = 1").fetchone():
                raise Conflict("the built-in app already exists")
            conn.execute(
                "INSERT INTO apps (id, name, owner_id, scopes, redirect_uris, client_secret_hash,"
                " builtin, disabled, token_gen, secret_gen, public_client, created_at_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (app.id, app.name, app.owner_id, ",".join(app.scopes),
                 "\n".join(app.redirect_uris), client_secret_hash, int(app.builtin),
                 int(app.disabled), app.token_gen, app.secret_gen, int(app.public_client), now),
            )
            conn.execute(
                "INSERT INTO tokens (token_hash, kind, app_id, user_id, scopes, created_at_ms)"
                " VALUES (?, 'client', ?, NULL, 'read', ?)",
                (client_token_hash, app.id, now),
            )

        await self.db.write(run)
        return App(**{**{f: getattr(app, f) for f in App.__dataclass_fields__},
                      "created_at_ms": now})

    async def get_app(self, app_id: int) -> App | None:
        """An app by id, unless deleted."""
        row = await self.db.read(
            lambda c: c.execute(f"{_APP_SQL} WHERE id = ? AND {_LIVE}", (app_id,)).fetchone()
        )
        return _app_from_row(row) if row else None

    async def get_builtin_app(self) -> App | None:
        """The built-in app, if created."""
        row = await self.db.read(
            lambda c: c.execute(f"{_APP_SQL} WHERE builtin = 1 AND {_LIVE}").fetchone()
        )
        return _app_from_row(row) if row else None

    async def apps_of_owner(self, owner_id: int) -> list[App]:
        """A user's live apps, oldest first."""
        rows = await self.db.read(
            lambda c: c.execute(
                f"{_APP_SQL} WHERE owner_id = ? AND {_LIVE} ORDER BY created_at_ms, id",
                (owner_id,),
            ).fetchall()
        )
        return [_app_from_row(r) for r in rows]

    async def app_secret_hash(self, app_id: int) -> str | None:
        """The client secret's hash of a live app."""
        row = await self.db.read(
            lambda c: c.execute(
                f"SELECT client_secret_hash FROM apps WHERE id = ? AND {_LIVE}", (app_id,)
            ).fetchone()
        )
        return str(row[0]) if row else None

    async def set_app_secret(self, app_id: int, secret_hash: str, secret_gen: int | None) -> None:
        """Replace the client secret's hash."""
        await self.db.write(
            lambda c: c.execute(
                f"UPDATE apps SET client_secret_hash = ?, secret_gen = ? WHERE id = ? AND {_LIVE}",
                (secret_hash, secret_gen, app_id),
            )
        )

    async def delete_app(self, app_id: int) -> None:
        """Soft-delete: the row stays (tokens must keep answering E4), hidden from lookups."""
        now = _now_ms()

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE apps SET deleted_at_ms = ?, disabled = 1 WHERE id = ? AND {_LIVE}",
                (now, app_id),
            )
            conn.execute(
                "UPDATE tokens SET revoked_at_ms = ? WHERE app_id = ? AND revoked_at_ms IS NULL",
                (now, app_id),
            )

        await self.db.write(run)

    # -- tokens -----------------------------------------------------------------------------
    async def create_token(self, token_hash: str, token: Token) -> None:
        """Store a token by hash."""
        await self.db.write(
            lambda c: c.execute(
                "INSERT INTO tokens (token_hash, kind, app_id, user_id, scopes, expires_at_ms,"
                " code_hash, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token_hash, token.kind, token.app_id, token.user_id, ",".join(token.scopes),
                 token.expires_at_ms, token.code_hash, _now_ms()),
            )
        )

    async def get_token(self, token_hash: str) -> Token | None:
        """A token by hash, with its app's disabled flag."""
        row = await self.db.read_point(
            lambda c: c.execute(
                "SELECT t.app_id, t.kind, t.scopes, t.user_id, t.expires_at_ms,"
                " t.revoked_at_ms, a.disabled, t.code_hash FROM tokens t"
                " JOIN apps a ON a.id = t.app_id WHERE t.token_hash = ?",
                (token_hash,),
            ).fetchone()
        )
        if row is None:
            return None
        return Token(
            app_id=row[0], kind=row[1], scopes=_scopes(row[2]), user_id=row[3],
            expires_at_ms=row[4], revoked=row[5] is not None, app_disabled=bool(row[6]),
            code_hash=row[7],
        )

    async def revoke_token(self, token_hash: str) -> bool:
        """Mark a token revoked."""
        cur = await self.db.write(
            lambda c: c.execute(
                "UPDATE tokens SET revoked_at_ms = ?"
                " WHERE token_hash = ? AND revoked_at_ms IS NULL",
                (_now_ms(), token_hash),
            )
        )
        return bool(cur.rowcount)

    async def retire_token(self, token_hash: str, expires_at_ms: int,
                           previous_expires_at_ms: int | None) -> bool:
        """Compare-and-set a token's expiry to `expires_at_ms` (see the protocol)."""
        cur = await self.db.write(
            lambda c: c.execute(
                "UPDATE tokens SET expires_at_ms = ? WHERE token_hash = ?"
                " AND expires_at_ms IS ? AND (expires_at_ms IS NULL OR expires_at_ms > ?)",
                (expires_at_ms, token_hash, previous_expires_at_ms, expires_at_ms),
            )
        )
        return bool(cur.rowcount)

    async def revoke_tokens_of_code(self, code_hash: str) -> list[str]:
        """Revoke the tokens issued from a code (and refreshed from those)."""
        return await self._revoke_where("code_hash = ?", (code_hash,))

    async def revoke_user_app(self, user_id: int, app_id: int) -> list[str]:
        """Revoke a user's tokens of one app."""
        return await self._revoke_where("user_id = ? AND app_id = ?", (user_id, app_id))

    async def _revoke_where(self, where: str, params: tuple[Any, ...]) -> list[str]:
        now = _now_ms()

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                f"SELECT token_hash FROM tokens WHERE {where} AND revoked_at_ms IS NULL", params
            ).fetchall()
            conn.execute(
                f"UPDATE tokens SET revoked_at_ms = ? WHERE {where} AND revoked_at_ms IS NULL",
                (now, *params),
            )
            return [str(r[0]) for r in rows]

        return await self.db.write(run)

    async def authorized_apps(self, user_id: int) -> list[AuthorizedApp]:
        """Apps with live tokens of the user (not the built-in CLI app)."""
        now = _now_ms()

        def run(conn: sqlite3.Connection) -> list[AuthorizedApp]:
            rows = conn.execute(
                "SELECT t.app_id, group_concat(t.scopes, ','), MIN(t.created_at_ms) FROM tokens t"
                " WHERE t.user_id = ? AND t.kind = 'user' AND t.revoked_at_ms IS NULL"
                " AND (t.expires_at_ms IS NULL OR t.expires_at_ms > ?) GROUP BY t.app_id",
                (user_id, now),
            ).fetchall()
            out = []
            for app_id, scopes, since in rows:
                row = conn.execute(f"{_APP_SQL} WHERE id = ? AND {_LIVE} AND builtin = 0",
                                   (app_id,)).fetchone()
                if row is None:
                    continue
                granted = set(_scopes(scopes))
                out.append(AuthorizedApp(
                    app=_app_from_row(row),
                    scopes=tuple(s for s in ("read", "write", "upload") if s in granted),
                    authorized_at_ms=since,
                ))
            out.sort(key=lambda a: (a.app.name.lower(), a.app.id))
            return out

        return await self.db.read(run)

    # -- credentials and sessions -----------------------------------------------------------
    async def get_credentials(self, login: str) -> Credentials | None:
        """By email first, then by username (both case-insensitive)."""

        def run(conn: sqlite3.Connection) -> Credentials | None:
            row = None
            sql = "SELECT id, username, email, created_at_ms, password_hash FROM users WHERE "
            if "@" in login:
                row = conn.execute(sql + "email = ? COLLATE NOCASE", (login,)).fetchone()
            if row is None:
                row = conn.execute(sql + "username = ? COLLATE NOCASE", (login,)).fetchone()
            if row is None:
                return None
            user = User(id=row[0], username=row[1], email=row[2], created_at_ms=row[3])
            return Credentials(user=user, password_hash=row[4])

        return await self.db.read(run)

    async def set_password(self, user_id: int, password_hash: str) -> None:
        """Store a new password hash."""
        await self.db.write(
            lambda c: c.execute("UPDATE users SET password_hash = ? WHERE id = ?",
                                (password_hash, user_id))
        )

    async def create_web_session(self, session_hash: str, user_id: int,
                                 expires_at_ms: int) -> None:
        """Store a session; expired sessions of anyone are swept on the way."""
        now = _now_ms()

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM web_sessions WHERE expires_at_ms <= ?", (now,))
            conn.execute(
                "INSERT INTO web_sessions (session_hash, user_id, created_at_ms, expires_at_ms)"
                " VALUES (?, ?, ?, ?)",
                (session_hash, user_id, now, expires_at_ms),
            )

        await self.db.write(run)

    async def get_web_session(self, session_hash: str) -> WebSession | None:
        """A session with its user."""
        row = await self.db.read_point(
            lambda c: c.execute(
                "SELECT u.id, u.username, u.email, u.created_at_ms, s.created_at_ms,"
                " s.expires_at_ms FROM web_sessions s JOIN users u ON u.id = s.user_id"
                " WHERE s.session_hash = ?",
                (session_hash,),
            ).fetchone()
        )
        if row is None:
            return None
        user = User(id=row[0], username=row[1], email=row[2], created_at_ms=row[3])
        return WebSession(user=user, created_at_ms=row[4], expires_at_ms=row[5])

    async def delete_web_sessions(self, user_id: int, *, keep: str | None = None) -> None:
        """End every session of a user but `keep`."""
        await self.db.write(
            lambda c: c.execute(
                "DELETE FROM web_sessions WHERE user_id = ? AND session_hash <> ?",
                (user_id, keep or ""),
            )
        )

    async def delete_web_session(self, session_hash: str) -> None:
        """End one session."""
        await self.db.write(
            lambda c: c.execute("DELETE FROM web_sessions WHERE session_hash = ?",
                                (session_hash,))
        )

    # -- authorization codes ----------------------------------------------------------------
    async def create_oauth_code(self, code_hash: str, code: OAuthCode) -> None:
        """Store a code; expired codes are swept on the way."""
        now = _now_ms()

        def run(conn: sqlite3.Connection) -> None:
            # Used codes are kept a day past expiry so a late replay still revokes its tokens.
            conn.execute("DELETE FROM oauth_codes WHERE expires_at_ms <= ?", (now - 86_400_000,))
            conn.execute(
                "INSERT INTO oauth_codes (code_hash, app_id, user_id, scopes, redirect_uri,"
                " code_challenge, expires_at_ms, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (code_hash, code.app_id, code.user_id, ",".join(code.scopes), code.redirect_uri,
                 code.code_challenge, code.expires_at_ms, now),
            )

        await self.db.write(run)

    async def redeem_oauth_code(self, code_hash: str) -> OAuthCode | None:
        """Mark used (atomically, on the single writer) and return the code as it was."""
        now = _now_ms()

        def run(conn: sqlite3.Connection) -> OAuthCode | None:
            row = conn.execute(
                "SELECT app_id, user_id, scopes, redirect_uri, expires_at_ms, code_challenge,"
                " used_at_ms FROM oauth_codes WHERE code_hash = ?",
                (code_hash,),
            ).fetchone()
            if row is None:
                return None
            if row[6] is None:
                conn.execute("UPDATE oauth_codes SET used_at_ms = ? WHERE code_hash = ?",
                             (now, code_hash))
            return OAuthCode(app_id=row[0], user_id=row[1], scopes=_scopes(row[2]),
                             redirect_uri=row[3], expires_at_ms=row[4], code_challenge=row[5],
                             used=row[6] is not None)

        return await self.db.write(run)
