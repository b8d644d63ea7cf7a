"""Helpers for driving the server-rendered account pages with an HTTP client, as a browser
would: read the page, take the CSRF token from its form, post the form back."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import httpx

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SECRET = re.compile(r'<span class="secret">([^<]+)</span>')
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def csrf_of(page: str) -> str:
    """The CSRF token of the first form on a page."""
    match = _CSRF.search(page)
    assert match, "no CSRF token on the page"
    return html.unescape(match.group(1))


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden inputs of a page (the consent form carries the request in them)."""
    return {html.unescape(k): html.unescape(v) for k, v in _HIDDEN.findall(page)}


async def post_form(client: httpx.AsyncClient | httpx.Client, page_path: str, action: str,
                    data: dict[str, Any]) -> httpx.Response:
    """GET a page for its CSRF token, then POST `data` to `action` like its form does."""
    page = client.get(page_path)
    if not isinstance(page, httpx.Response):
        page = await page
    r = client.post(action, data={"csrf_token": csrf_of(page.text), **data})
    return r if isinstance(r, httpx.Response) else await r


async def sign_up(client: httpx.AsyncClient, username: str, password: str = "correct horse 1",
                  email: str | None = None) -> httpx.Response:
    """Create an account through /signup (leaves the client signed in)."""
    return await post_form(client, "/signup", "/signup", {
        "username": username, "email": email or f"{username}@example.org", "password": password,
    })


async def sign_in(client: httpx.AsyncClient, login: str, password: str,
                  next_path: str = "") -> httpx.Response:
    """Sign in through /signin."""
    return await post_form(client, "/signin", "/signin",
                           {"login": login, "password": password, "next": next_path})


@dataclass
class RegisteredApp:
    """An app registered on the developer dashboard, as its page shows it."""

    id: int
    client_token: str
    client_secret: str | None


async def register_app(client: httpx.AsyncClient, name: str, redirect_uris: list[str],
                       scopes: tuple[str, ...] = ("read",), public: bool = False
                       ) -> RegisteredApp:
    """Register an app on /dashboard/developers and read its credentials off its page."""
    data: dict[str, Any] = {"name": name, "redirect_uris": "\n".join(redirect_uris),
                            "scope": list(scopes)}
    if public:
        data["public_client"] = "1"
    r = await post_form(client, "/dashboard/developers", "/dashboard/developers", data)
    assert r.status_code == 303, r.text
    page = await client.get(r.headers["location"])
    assert page.status_code == 200
    secrets = _SECRET.findall(page.text)
    app_id = int(r.headers["location"].rsplit("/", 1)[1])
    return RegisteredApp(id=app_id, client_token=html.unescape(secrets[0]),
                         client_secret=html.unescape(secrets[1]) if len(secrets) > 1 else None)
