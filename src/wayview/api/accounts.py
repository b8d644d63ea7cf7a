"""wayview.api.accounts: server-rendered account pages and the OAuth endpoints (spec §7).

Pages: /signup, /signin, /signout, /account (password, authorized apps), the developer
dashboard /dashboard/developers, and the consent page /connect. JSON: POST /token and
POST /login. Every form is CSRF-checked; pages are never framed and never cached.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from wayview.api.responses import json_response
from wayview.auth.oauth import (
    AuthorizePageError,
    AuthorizeRedirectError,
    ReusedAuthorizationCode,
    check_authorize,
    exchange,
    grant_code,
    with_query,
)
from wayview.auth.tokens import (
    SCOPES,
    create_app,
    issue_user_token,
    rotate_secret,
    shown_credentials,
)
from wayview.errors import (
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    InvalidOAuthParameter,
    InviteRequired,
    PasswordLoginDisabled,
    TooManyAttempts,
)
from wayview.ids import parse_id
from wayview.model.entities import App, WebSession

if TYPE_CHECKING:
    from wayview.api.app import Context

SESSION_COOKIE = "wv_session"
CSRF_COOKIE = "wv_csrf"
MAX_FORM_BYTES = 64 * 1024
SCOPE_TEXT = {
    "read": "read public imagery, map features and your profile",
    "write": "change data on your behalf",
    "upload": "upload imagery in your name",
}
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_templates = Environment(
    loader=PackageLoader("wayview.api", "templates"),
    autoescape=select_autoescape(default=True),
    auto_reload=False,
)
_CUSTOM_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*\.[a-z0-9+.-]+")


# -- helpers --------------------------------------------------------------------------------
class _Page:
    """Per-request page state: the session, the CSRF cookie, cookies to set."""

    def __init__(self, ctx: Context, request: Request, session: WebSession | None) -> None:
        self.ctx = ctx
        self.request = request
        self.session = session
        existing = request.cookies.get(CSRF_COOKIE)
        self.new_csrf = existing is None or len(existing) > 100
        self.csrf_cookie = ctx.accounts.new_csrf_cookie() if self.new_csrf else str(existing)

    def render(self, template: str, title: str, status: int = 200, *,
               folder: str = "accounts", **values: Any) -> Response:
        """A page from `templates/{folder}/{template}` (they extend accounts/base.html)."""
        html = _templates.get_template(f"{folder}/{template}").render(
            title=title, user=self.session.user if self.session else None,
            csrf_token=self.ctx.accounts.csrf_token(self.csrf_cookie),
            signup_enabled=self.ctx.settings.accounts.signup_enabled,
            min_password_length=self.ctx.settings.accounts.min_password_length,
            **values,
        )
        return self.finish(HTMLResponse(html, status_code=status))

    def finish(self, response: Response) -> Response:
        for k, v in _PAGE_HEADERS.items():
            response.headers[k] = v
        if self.new_csrf:
            _set_cookie(self.ctx, response, CSRF_COOKIE, self.csrf_cookie, None)
        return response

    def redirect(self, location: str) -> Response:
        return self.finish(RedirectResponse(location, status_code=303))


def _secure(ctx: Context) -> bool:
    return ctx.settings.base_url.startswith("https://")


def _set_cookie(ctx: Context, response: Response, name: str, value: str,
                max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="lax", secure=_secure(ctx))


async def _page(ctx: Context, request: Request) -> _Page:
    return _Page(ctx, request, await ctx.accounts.session(request.cookies.get(SESSION_COOKIE)))


async def _body(request: Request) -> bytes:
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise InvalidInput("request body too large")
    except ClientDisconnect:  # the body ended early or its chunked framing is broken
        raise InvalidInput("the request body ended early or is not well framed") from None
    return bytes(body)


def _pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise InvalidInput("the form is not UTF-8") from None


async def read_params(request: Request) -> dict[str, str]:
    """Query parameters overlaid with a form or JSON-object body (first value wins per key):
    `/token` and `/login` accept all three (spec §7.2)."""
    params = dict(request.query_params)
    body = await _body(request)
    if not body.strip():
        return params
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or body.lstrip()[:1] == b"{":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidOAuthParameter("body", "not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidOAuthParameter("body", "expected a JSON object")
        params.update({str(k): str(v) for k, v in data.items()
                       if isinstance(v, str | int) and not isinstance(v, bool)})
        return params
    form: dict[str, str] = {}
    for k, v in _pairs(body):
        form.setdefault(k, v)
    params.update(form)
    return params


class _Form:
    """A posted urlencoded form."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self.first: dict[str, str] = {}
        for k, v in pairs:
            self.first.setdefault(k, v)

    def get(self, key: str, default: str = "") -> str:
        return self.first.get(key, default)

    def getall(self, key: str) -> list[str]:
        return [v for k, v in self.pairs if k == key]

    def __contains__(self, key: str) -> bool:
        return key in self.first


async def _form(page: _Page) -> _Form:
    """The posted form of a page, after the CSRF check (403 without a valid token)."""
    form = _Form(_pairs(await _body(page.request)))
    if not page.ctx.accounts.csrf_ok(page.request.cookies.get(CSRF_COOKIE),
                                     form.first.get("csrf_token")):
        raise Forbidden("The form has expired or did not come from this site. "
                        "Reload the page and try again.")
    return form


def _safe_next(value: str | None, default: str = "/account") -> str:
    """A same-site path to continue to (never another host).

    >>> _safe_next("/connect?client_id=1"), _safe_next("//evil.example"), _safe_next(None)
    ('/connect?client_id=1', '/account', '/account')
    """
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if any(c in value for c in "\r\n\t") or len(value) > 4000:
        return default
    return value


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def forbidden_page(ctx: Context, request: Request, exc: Forbidden) -> Response:
    """The 403 page for a form without a valid CSRF token."""
    page = _Page(ctx, request, None)
    return page.render("message.html", "Request refused", status=403, message=exc.message)


# -- sign-up, sign-in, sign-out -------------------------------------------------------------
async def signup(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET/POST /signup (`?invite=` on invite-only servers)."""
    page = await _page(ctx, request)
    settings = ctx.settings.accounts
    if not settings.signup_enabled:
        return page.render("message.html", "Sign-up is closed", status=403,
                           message="This server does not accept new accounts.")
    nxt = _safe_next(request.query_params.get("next"))
    if request.method != "POST":
        invite = request.query_params.get("invite", "")
        email = ctx.accounts.invited_email(invite) if invite else None
        if settings.signup_invite_only and email is None:
            return page.render("message.html", "Invitation needed", status=403,
                               message=InviteRequired.message)
        return page.render("signup.html", "Create an account", next=nxt, username="",
                           email=email or "", invite=invite if email else "")
    form = await _form(page)
    nxt = _safe_next(form.get("next"))
    values = {"next": nxt, "username": form.get("username", ""),
              "email": form.get("email", ""), "invite": form.get("invite", "")}
    try:
        user = await ctx.accounts.sign_up(form.get("username", ""), form.get("email", ""),
                                          form.get("password", ""), _client_address(request),
                                          invite=form.get("invite") or None)
    except (InvalidInput, InviteRequired) as exc:
        status = 403 if isinstance(exc, InviteRequired) else 400
        return page.render("signup.html", "Create an account", status=status,
                           error=exc.message, **values)
    except TooManyAttempts as exc:
        response = page.render("signup.html", "Create an account", status=429,
                               error="Too many new accounts from your address; try again "
                               f"in {exc.retry_after_s} s.", **values)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    return await _signed_in(page, ctx, user, nxt)


async def _signed_in(page: _Page, ctx: Context, user: Any, nxt: str) -> Response:
    new = await ctx.accounts.start_session(user)
    response = page.redirect(nxt)
    _set_cookie(ctx, response, SESSION_COOKIE, new.cookie, new.max_age_s)
    return response


async def signin(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET/POST /signin (with `next` to continue to, e.g. back to /connect)."""
    page = await _page(ctx, request)
    nxt = _safe_next(request.query_params.get("next"))
    if request.method != "POST":
        if page.session is not None:
            return page.redirect(nxt)
        return page.render("signin.html", "Sign in", next=nxt, login="")
    form = await _form(page)
    nxt = _safe_next(form.get("next"))
    login = form.get("login", "")
    try:
        user = await ctx.accounts.sign_in(login, form.get("password", ""),
                                          _client_address(request))
    except TooManyAttempts as exc:
        response = page.render("signin.html", "Sign in", status=429, error=exc.message,
                               next=nxt, login=login)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except InvalidCredentials:
        return page.render("signin.html", "Sign in", status=401, next=nxt, login=login,
                           error="Wrong e-mail/username or password.")
    return await _signed_in(page, ctx, user, nxt)


async def signout(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /signout."""
    page = await _page(ctx, request)
    await _form(page)
    await ctx.accounts.end_session(request.cookies.get(SESSION_COOKIE))
    response = page.redirect("/signin")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=_secure(ctx))
    return response


# -- account page ---------------------------------------------------------------------------
def _date(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d")


async def _signed_in_page(ctx: Context, request: Request) -> tuple[_Page, Response | None]:
    page = await _page(ctx, request)
    if page.session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return page, page.redirect("/signin?" + urlencode({"next": target}))
    return page, None


async def account(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /account: profile, authorized apps, password change."""
    page, away = await _signed_in_page(ctx, request)
    if away is not None:
        return away
    return await _account_page(page, ctx, notice=_NOTICES.get(request.query_params.get("done", "")))


_NOTICES = {"password": "Your password was changed; other sessions were signed out.",
            "revoked": "Access revoked: that application's tokens no longer work."}


async def _account_page(page: _Page, ctx: Context, status: int = 200, **values: Any) -> Response:
    assert page.session is not None
    authorized = [
        {"app": a.app, "scopes": a.scopes, "since": _date(a.authorized_at_ms)}
        for a in await ctx.store.authorized_apps(page.session.user.id)
    ]
    return page.render("account.html", "Your account", status=status, authorized=authorized,
                       **values)


async def change_password(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /account/password."""
    page, away = await _signed_in_page(ctx, request)
    if away is not None:
        return away
    form = await _form(page)
    assert page.session is not None
    try:
        await ctx.accounts.change_password(page.session.user, form.get("current_password", ""),
                                           form.get("new_password", ""),
                                           request.cookies.get(SESSION_COOKIE))
    except InvalidInput as exc:
        return await _account_page(page, ctx, status=400, error=exc.message)
    return page.redirect("/account?done=password")


async def revoke_app(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /account/apps/{app_id}/revoke: the app's tokens of this user get E4 from now on."""
    page, away = await _signed_in_page(ctx, request)
    if away is not None:
        return away
    await _form(page)
    assert page.session is not None
    revoked = await ctx.store.revoke_user_app(page.session.user.id, int(match["app_id"]))
    ctx.authenticator.forget_hashes(revoked)
    return page.redirect("/account?done=revoked")


# -- developer dashboard --------------------------------------------------------------------
def check_redirect_uri(uri: str) -> str:
    """A callback URL an app may register: https, http on loopback, or a private-use scheme
    of a native app (RFC 8252 §7.1); never with a fragment.

    >>> check_redirect_uri("https://app.example/cb")
    'https://app.example/cb'
    >>> check_redirect_uri("javascript:alert(1)")
    Traceback (most recent call last):
    wayview.errors.InvalidInput: Callback URL not allowed: javascript:alert(1)
    """
    parts = urlsplit(uri)
    ok = False
    if parts.fragment or len(uri) > 2000 or any(c.isspace() for c in uri):
        ok = False
    elif parts.scheme == "https" and parts.netloc:
        ok = True
    elif parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1"):
        ok = True
    elif _CUSTOM_SCHEME.fullmatch(parts.scheme or ""):
        ok = True
    if not ok:
        raise InvalidInput(f"Callback URL not allowed: {uri[:200]}")
    return uri


async def developers(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /dashboard/developers (list + register form), POST registers an app."""
    page, away = await _signed_in_page(ctx, request)
    if away is not None:
        return away
    assert page.session is not None
    user = page.session.user
    empty = {"name": "", "redirect_uris": "", "scopes": ("read",), "public_client": False}
    if request.method != "POST":
        return page.render("developers.html", "Developer dashboard", form=empty,
                           all_scopes=SCOPES, apps=await ctx.store.apps_of_owner(user.id))
    form = await _form(page)
    scopes = tuple(s for s in SCOPES if s in form.getall("scope"))
    values = {"name": form.get("name", "").strip(), "redirect_uris": form.get("redirect_uris", ""),
              "scopes": scopes, "public_client": form.get("public_client") == "1"}
    try:
        if not values["name"] or len(str(values["name"])) > 100:
            raise InvalidInput("Give the application a name (up to 100 characters).")
        if not scopes:
            raise InvalidInput("Choose at least one scope.")
        uris = tuple(check_redirect_uri(u.strip())
                     for u in str(values["redirect_uris"]).splitlines() if u.strip())
        if len(uris) > 10:
            raise InvalidInput("At most 10 callback URLs.")
    except InvalidInput as exc:
        return page.render("developers.html", "Developer dashboard", status=400,
                           error=exc.message, form=values, all_scopes=SCOPES,
                           apps=await ctx.store.apps_of_owner(user.id))
    new = await create_app(ctx.store, str(values["name"]), owner=user, redirect_uris=uris,
                           scopes=scopes, server_secret=ctx.server_secret,
                           public_client=bool(values["public_client"]))
    return page.redirect(f"/dashboard/developers/{new.app.id}")


async def _owned_app(ctx: Context, page: _Page, raw_id: str) -> App | None:
    assert page.session is not None
    app_id = parse_id(raw_id)
    app = await ctx.store.get_app(app_id) if app_id is not None else None
    if app is None or app.owner_id != page.session.user.id:
        return None
    return app


async def developer_app(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /dashboard/developers/{app_id}; POST …/rotate-secret and …/delete."""
    page, away = await _signed_in_page(ctx, request)
    if away is not None:
        return away
    app = await _owned_app(ctx, page, match["app_id"])
    if app is None:
        return page.render("message.html", "Application not found", status=404,
                           message="You have no application with that id.")
    action = match.groupdict().get("action")
    if request.method == "POST":
        await _form(page)
        if action == "rotate-secret" and not app.public_client:
            await rotate_secret(ctx.store, ctx.server_secret, app)
            return page.redirect(f"/dashboard/developers/{app.id}?done=rotated")
        if action == "delete":
            await ctx.store.delete_app(app.id)
            ctx.authenticator.forget_all()
            return page.redirect("/dashboard/developers")
        return page.render("message.html", "Not supported", status=400,
                           message="That action is not available for this application.")
    creds = await shown_credentials(ctx.store, ctx.server_secret, app)
    notice = ("The client secret was rotated; the previous one no longer works."
              if request.query_params.get("done") == "rotated" else None)
    return page.render("app.html", app.name, app=app, creds=creds, notice=notice,
                       base_url=ctx.settings.base_url)


# -- OAuth: /connect, /token, /login --------------------------------------------------------
_CONNECT_KEYS = ("client_id", "redirect_uri", "response_type", "scope", "state",
                 "code_challenge", "code_challenge_method")


async def connect(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /connect shows the consent page (after sign-in); POST records the decision."""
    page = await _page(ctx, request)
    if request.method == "POST":
        form = await _form(page)
        params = {k: form.get(k) for k in _CONNECT_KEYS if k in form}
    else:
        params = {k: v for k, v in request.query_params.items() if k in _CONNECT_KEYS}
    try:
        req = await check_authorize(ctx.store, params)
    except AuthorizePageError as exc:
        return page.render("message.html", "Cannot authorize", status=400, message=exc.message)
    except AuthorizeRedirectError as exc:
        return page.redirect(exc.location)
    if page.session is None:
        if request.method == "POST":  # the session ended between consent page and decision
            return page.redirect(with_query(req.redirect_uri, {"error": "invalid_request",
                                                               "state": req.state}))
        return page.redirect("/signin?" + urlencode({"next": "/connect?" + urlencode(params)}))
    if request.method != "POST":
        host = urlsplit(req.redirect_uri).netloc or urlsplit(req.redirect_uri).scheme
        return page.render("consent.html", f"Authorize {req.app.name}", app=req.app,
                           scopes=req.scopes, scope_text=SCOPE_TEXT, redirect_host=host,
                           params=sorted(params.items()))
    if form.get("decision") != "approve":
        return page.redirect(with_query(req.redirect_uri, {"error": "user_denied",
                                                           "state": req.state}))
    try:
        location = await grant_code(ctx.store, ctx.settings, req, page.session.user)
    except Exception:  # the app gets told rather than the user stranded on an error page
        return page.redirect(with_query(req.redirect_uri, {"error": "server_error",
                                                           "state": req.state}))
    return page.redirect(location)


async def token(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /token: authorization_code and refresh_token grants (JSON, form or query)."""
    params = await read_params(request)
    try:
        issued = await exchange(ctx.store, ctx.settings, params,
                                request.headers.get("authorization"))
    except ReusedAuthorizationCode as exc:
        ctx.authenticator.forget_hashes(exc.revoked_hashes)
        raise
    response = json_response({"access_token": issued.access_token, "token_type": "bearer",
                              "expires_in": issued.expires_in})
    response.headers["Cache-Control"] = "no-store"
    return response


async def password_login(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /login (mapillary_tools): email + password with a client token → user token."""
    from wayview.api.app import token_from

    if not ctx.settings.auth.password_login:
        raise PasswordLoginDisabled()
    principal = await ctx.authenticator.authenticate(token_from(request))
    app = await ctx.store.get_app(principal.app_id)
    if app is None:
        raise InvalidCredentials()
    params = await read_params(request)
    try:
        user = await ctx.accounts.sign_in(params.get("email", ""), params.get("password", ""),
                                          _client_address(request))
    except TooManyAttempts as exc:
        raise InvalidCredentials(f"{exc.message} (retry in {exc.retry_after_s} s)") from None
    issued = await issue_user_token(ctx.store, user, app=app, scopes=app.scopes,
                                    ttl_s=ctx.settings.oauth.token_ttl_s)
    response = json_response({"access_token": issued.access_token, "user_id": str(user.id)})
    response.headers["Cache-Control"] = "no-store"
    return response
