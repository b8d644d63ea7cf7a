"""wayview.auth.service: resolve a token text to a Principal (with a short in-process cache)."""

from __future__ import annotations

import time

from wayview.auth.tokens import hash_token
from wayview.errors import AppNotAuthorized, TokenExpired, Unauthenticated
from wayview.model.entities import Principal, Token
from wayview.store.base import Store

_CACHE_MAX = 10_000


class Authenticator:
    """Validates tokens against the store; remembers valid ones for `cache_s` seconds."""

    def __init__(self, store: Store, *, cache_s: float = 5.0) -> None:
        self.store = store
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Token, Principal]] = {}

    async def authenticate(self, token_text: str | None) -> Principal:
        """The principal behind a token; raises E1–E4 errors."""
        if not token_text:
            raise Unauthenticated()
        key = hash_token(token_text)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            token, principal = cached[1], cached[2]
        else:
            found = await self.store.get_token(key)
            if found is None:
                raise Unauthenticated()
            token = found
            principal = Principal(app_id=token.app_id, scopes=frozenset(token.scopes),
                                  user_id=token.user_id)
            if self.cache_s > 0:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
                self._cache[key] = (now + self.cache_s, token, principal)
        if token.revoked or token.app_disabled:
            raise AppNotAuthorized(token.app_id)
        if token.expires_at_ms is not None and token.expires_at_ms <= time.time() * 1000:
            raise TokenExpired()
        return principal

    def forget(self, token_text: str) -> None:
        """Drop a token from the cache (after a revocation in this process)."""
        self._cache.pop(hash_token(token_text), None)

    def forget_hashes(self, token_hashes: list[str]) -> None:
        """Drop tokens by hash (after revoking them in this process)."""
        for key in token_hashes:
            self._cache.pop(key, None)

    def forget_all(self) -> None:
        """Empty the cache (after deleting an app)."""
        self._cache.clear()
