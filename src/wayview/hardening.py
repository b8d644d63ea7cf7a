"""wayview.hardening: what in the settings is open or risky on a server others can reach.

The defaults suit a laptop and a demo (sign-up open, CORS `*`, embeds anywhere, plain HTTP on
127.0.0.1). On a public server some of them are risks; `wayview check` lists them with the fix,
and `serve` logs the warnings when it listens on a public address (docs/production.md has the
whole checklist).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from wayview.settings import Settings

__all__ = ["Finding", "findings", "is_exposed"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One risk: `warning` (fix it before going public) or `note` (a choice to make knowingly)."""

    level: Literal["warning", "note"]
    setting: str
    problem: str
    fix: str

    def line(self) -> str:
        return f"{self.level}: {self.setting}: {self.problem} (fix: {self.fix})"


def _loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_exposed(settings: Settings) -> bool:
    """Whether others can reach the server: it listens beyond loopback, or its public URL names
    another host (a reverse proxy in front)."""
    public_host = urlsplit(settings.base_url).hostname or ""
    return not _loopback(settings.host) or not _loopback(public_host)


def findings(settings: Settings) -> list[Finding]:
    """The risks of these settings on an exposed server (none when it is not exposed, but the
    secret's)."""
    out: list[Finding] = []
    if settings.secret_key and len(settings.secret_key) < 32:
        out.append(Finding("warning", "secret_key", "shorter than 32 characters",
                           "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"))
    if settings.database_url and not settings.secret_key:
        out.append(Finding(
            "warning", "secret_key", "scale-out without a shared secret: each host makes its "
            "own, so sessions and the embed token of one host fail on another",
            "set secret_key to the same 32+ random characters on every host"))
    if not is_exposed(settings):
        return out
    base = urlsplit(settings.base_url)
    if base.scheme != "https":
        out.append(Finding(
            "warning", "public_base_url", f"clients reach it over plain HTTP "
            f"({settings.base_url}): tokens, passwords and session cookies cross the network "
            "unencrypted",
            "put a TLS reverse proxy in front (docs/deploy/nginx.conf or Caddyfile) and set "
            "public_base_url to its https:// address"))
    if _loopback(settings.host) and not settings.trusted_proxies:
        out.append(Finding(
            "warning", "trusted_proxies", "behind a reverse proxy every request comes from "
            "the proxy's address, so the sign-in and sign-up throttles count all clients as "
            "one", "trusted_proxies=127.0.0.1/32 (the proxy's address)"))
    if settings.accounts.signup_enabled and not settings.accounts.signup_invite_only:
        out.append(Finding(
            "note", "accounts.signup_enabled", "anyone can create an account and upload",
            "accounts.signup_invite_only=true (invitations from `wayview users invite`) or "
            "accounts.signup_enabled=false, unless an open community is the point"))
    if settings.cors.allowed_origins.strip() == "*":
        out.append(Finding(
            "note", "cors.allowed_origins", "any web page may call the API from its visitors' "
            "browsers with a token it holds (as Mapillary's API allows)",
            "list the origins of your own web apps"))
    if settings.embed.frame_ancestors.strip() == "*":
        out.append(Finding(
            "note", "embed.frame_ancestors", "any site may embed /embed in an iframe",
            "list the sites that may, e.g. `'self' https://example.org`"))
    metrics = settings.metrics
    if metrics.enabled and not (metrics.bearer_token or metrics.allow_from):
        out.append(Finding(
            "warning", "metrics.enabled", "/metrics answers anyone",
            "set metrics.bearer_token or metrics.allow_from"))
    if settings.log_level.lower() == "debug":
        out.append(Finding("note", "log_level", "debug logs are verbose", "log_level=info"))
    if settings.workers > 1 and not settings.redis_url:
        out.append(Finding(
            "note", "redis_url", "each server process counts rate limits for itself (the "
            "budgets are per process)", "set redis_url to share them"))
    return out
