"""wayview.auth.accounts: web accounts — sign-up, sign-in with throttling, sessions, CSRF.

Sessions: the cookie holds `<session id>.<signature>`; the id is 256 random bits, the signature
an HMAC of it under the server secret (forged cookies are rejected without a database read), and
the store keeps only the SHA-256 of the id, so a database dump cannot be replayed as cookies.

CSRF: every form carries a token that is an HMAC of a random per-browser value kept in its own
HttpOnly cookie (signed double submit); a POST whose token does not match its cookie is refused.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import secrets
import time
from dataclasses import dataclass

from wayview import metrics
from wayview.auth.secret import derive
from wayview.auth.tokens import hash_password, hash_token, tokens_equal, verify_password
from wayview.errors import (
    Conflict,
    InvalidCredentials,
    InvalidInput,
    InviteRequired,
    TooManyAttempts,
)
from wayview.model.entities import User, WebSession
from wayview.ratelimit.base import RateLimiter
from wayview.settings import Settings
from wayview.store.base import Store

_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{1,39}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s.]{2,63}")


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the login names nobody, so both paths cost one argon2 check."""
    return hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just started: the cookie value to set and its lifetime."""

    cookie: str
    max_age_s: int


class Accounts:
    """Account use-cases for the web pages and `/login`."""

    def __init__(self, store: Store, settings: Settings, limiter: RateLimiter,
                 server_secret: bytes) -> None:
        self.store = store
        self.settings = settings
        self.limiter = limiter
        self._secret = server_secret

    # -- sign-up and passwords ------------------------------------------------------------
    def check_password_rules(self, password: str) -> None:
        """Raise InvalidInput unless the password is acceptable."""
        minimum = self.settings.accounts.min_password_length
        if len(password) < minimum:
            raise InvalidInput(f"The password must have at least {minimum} characters.")
        if len(password) > 1024:
            raise InvalidInput("The password is too long.")

    async def sign_up(self, username: str, email: str, password: str, address: str,
                      invite: str | None = None) -> User:
        """Create an account; InvalidInput/Conflict explain what to fix.

        Raises InviteRequired on an invite-only server without a valid invitation for this
        e-mail, TooManyAttempts when `address` has created its share of accounts.
        """
        username, email = username.strip(), email.strip()
        if not _USERNAME.fullmatch(username):
            raise InvalidInput("Usernames have 2–40 characters: letters, digits, '.', '_', '-', "
                               "starting with a letter or digit.")
        if not _EMAIL.fullmatch(email):
            raise InvalidInput("Enter a valid e-mail address.")
        if self.settings.accounts.signup_invite_only:
            invited = self.invited_email(invite) if invite else None
            if invited is None or invited.lower() != email.lower():
                raise InviteRequired()
        self.check_password_rules(password)
        acc = self.settings.accounts
        decision = await self.limiter.hit(f"signup:addr:{address}", acc.signups_per_address,
                                          acc.signup_window_s)
        if not decision.allowed:
            metrics.rate_limit_refused("signup")
            raise TooManyAttempts(decision.retry_after_s)
        password_hash = await asyncio.to_thread(hash_password, password)
        try:
            return await self.store.create_user(username, email=email,
                                                password_hash=password_hash)
        except Conflict as exc:
            raise InvalidInput(f"That {'username' if 'username' in exc.message else 'e-mail'}"
                               " is already registered.") from None

    # -- invitations ------------------------------------------------------------------------
    def invite(self, email: str, *, now_s: float | None = None) -> str:
        """An invitation token for one account with `email` (`/signup?invite=…`).

        >>> from wayview.settings import Settings
        >>> accounts = Accounts(None, Settings(_env_file=None), None, b"k" * 32)  # type: ignore
        >>> token = accounts.invite("Ann@example.org")
        >>> accounts.invited_email(token), accounts.invited_email(token[:-1] + "x")
        ('Ann@example.org', None)
        """
        email = email.strip()
        if not _EMAIL.fullmatch(email):
            raise InvalidInput("Enter a valid e-mail address.")
        expires = int((time.time() if now_s is None else now_s)
                      + self.settings.accounts.invite_ttl_s)
        body = base64.urlsafe_b64encode(f"{expires}:{email}".encode()).decode().rstrip("=")
        return f"{body}.{self._sign(body, 'invite')}"

    def invited_email(self, token: str) -> str | None:
        """The e-mail an unexpired, untampered invitation is for, else None."""
        body, _, sig = token.strip().partition(".")
        if not body or len(token) > 800 or not tokens_equal(sig, self._sign(body, "invite")):
            return None
        try:
            expires, _, email = base64.urlsafe_b64decode(
                body + "=" * (-len(body) % 4)).decode().partition(":")
            if int(expires) < time.time():
                return None
        except (ValueError, UnicodeDecodeError):
            return None
        return email

    async def change_password(self, user: User, current: str, new: str,
                              keep_cookie: str | None) -> None:
        """Replace the password after checking the current one; other sessions end."""
        creds = await self.store.get_credentials(user.username)
        if creds is None or creds.password_hash is None or not await asyncio.to_thread(
            verify_password, creds.password_hash, current
        ):
            raise InvalidInput("The current password is not correct.")
        self.check_password_rules(new)
        await self.store.set_password(user.id, await asyncio.to_thread(hash_password, new))
        keep = self._session_hash(keep_cookie) if keep_cookie else None
        await self.store.delete_web_sessions(user.id, keep=keep)

    # -- sign-in ----------------------------------------------------------------------------
    async def sign_in(self, login: str, password: str, address: str) -> User:
        """The user whose email/username and password these are.

        Every attempt first reserves one try, atomically (in Redis when configured, so all
        processes share the counts): per account *and* address, and per address. The account
        is the one the login names, whether typed as username or e-mail. A wrong password
        keeps the try, a right one gives it back. So parallel guesses cannot overrun the
        limit, and a guesser elsewhere exhausts only their own address's tries: the owner
        signing in from another address is never locked out.

        Raises TooManyAttempts when a budget is spent (`retry_after_s` until the window
        ends), InvalidCredentials otherwise (never telling which part was wrong).
        """
        acc = self.settings.accounts
        window = acc.login_throttle_window_s
        login = login.strip()[:320]
        creds = await self.store.get_credentials(login) if login else None
        account = f"user:{creds.user.id}" if creds is not None else f"name:{login.lower()}"
        keys = [(f"login:acct:{account}:addr:{address}", acc.login_failures_per_account),
                (f"login:addr:{address}", acc.login_failures_per_address)]
        taken: list[str] = []
        for key, limit in keys:
            decision = await self.limiter.hit(key, limit, window)
            if not decision.allowed:
                metrics.rate_limit_refused("signin")
                await self._give_back(taken, window)
                raise TooManyAttempts(decision.retry_after_s)
            if limit > 0:
                taken.append(key)
        stored = creds.password_hash if creds is not None else None
        ok = await asyncio.to_thread(verify_password, stored or _dummy_hash(), password)
        if creds is None or stored is None or not ok:
            raise InvalidCredentials()
        await self._give_back(taken, window)
        return creds.user

    async def _give_back(self, keys: list[str], window: int) -> None:
        for key in keys:
            await self.limiter.release(key, window)

    # -- sessions ---------------------------------------------------------------------------
    def _sign(self, value: str, purpose: str) -> str:
        return derive(self._secret, f"{purpose}:{value}", 43)

    def _session_hash(self, cookie: str) -> str | None:
        sid, _, sig = cookie.partition(".")
        if not sid or not tokens_equal(sig, self._sign(sid, "session")):
            return None
        return hash_token(sid)

    async def start_session(self, user: User) -> NewSession:
        """A new session for a signed-in user."""
        sid = secrets.token_urlsafe(32)
        ttl = self.settings.accounts.session_ttl_s
        await self.store.create_web_session(hash_token(sid), user.id,
                                            int((time.time() + ttl) * 1000))
        return NewSession(cookie=f"{sid}.{self._sign(sid, 'session')}", max_age_s=ttl)

    async def session(self, cookie: str | None) -> WebSession | None:
        """The live session behind a cookie value, or None."""
        if not cookie or len(cookie) > 200:
            return None
        key = self._session_hash(cookie)
        if key is None:
            return None
        found = await self.store.get_web_session(key)
        if found is None or found.expires_at_ms <= time.time() * 1000:
            return None
        return found

    async def end_session(self, cookie: str | None) -> None:
        """Sign out (a no-op for an unknown cookie)."""
        key = self._session_hash(cookie) if cookie else None
        if key is not None:
            await self.store.delete_web_session(key)

    # -- CSRF -------------------------------------------------------------------------------
    @staticmethod
    def new_csrf_cookie() -> str:
        """A fresh per-browser CSRF value (its own cookie)."""
        return secrets.token_urlsafe(24)

    def csrf_token(self, csrf_cookie: str) -> str:
        """The form token matching a browser's CSRF cookie."""
        return self._sign(csrf_cookie, "csrf")

    def csrf_ok(self, csrf_cookie: str | None, token: str | None) -> bool:
        """Whether a submitted form token belongs to this browser."""
        if not csrf_cookie or not token or len(csrf_cookie) > 100:
            return False
        return tokens_equal(token, self.csrf_token(csrf_cookie))
