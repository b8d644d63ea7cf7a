"""wayview.api.app: create_app() builds the ASGI application; the wrapper applies the global rules.

Per request, in the order of spec §1.9: OPTIONS → preflight; path normalisation (repeated and
trailing slashes, never a redirect); route; authentication (graph routes); handler; errors → the
Graph envelope. CORS headers and `x-fb-trace-id` go on every response, errors included.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from wayview import logs, metrics
from wayview.api import accounts as account_routes
from wayview.api import edits as edit_routes
from wayview.api import export as export_routes
from wayview.api import (
    governance_pages,
    media,
    moderation,
    openapi,
    organizations,
    profiles,
    reblur,
    upload_page,
)
from wayview.api import graph as graph_routes
from wayview.api import metrics as metric_routes
from wayview.api import tiles as tile_routes
from wayview.api import upload as upload_routes
from wayview.api import web as web_routes
from wayview.api.errors import envelope, shape_of, usage_header
from wayview.api.proxy import forwarded_scope
from wayview.api.routing import Route
from wayview.auth.accounts import Accounts
from wayview.auth.secret import server_secret
from wayview.auth.service import Authenticator
from wayview.blobs import BlobStore, image_blob_key, open_blobs
from wayview.errors import (
    Forbidden,
    InvalidParameter,
    MissingScope,
    NodeNotFound,
    RateLimited,
    ServiceUnavailable,
    UserTokenRequired,
)
from wayview.graph.render import AssetUrl
from wayview.graph.service import Graph
from wayview.kv import open_tile_cache
from wayview.model.entities import Principal
from wayview.networks import parse_networks
from wayview.ratelimit import RateLimiter, open_limiter
from wayview.settings import Settings
from wayview.store import Store, call_deadline_s, open_store
from wayview.tiles.service import TileService

log = logging.getLogger("wayview")
access_log = logs.access_log

_SLASHES = re.compile(r"/{2,}")
_AUTH_SCHEMES = ("oauth ", "bearer ")
#: Errors of exhausted resources (deep recursion, huge numbers, memory) that hostile input may
#: still provoke past the limits: answered with E9, never with a 500 and a traceback.
RESOURCE_ERRORS = (RecursionError, OverflowError, MemoryError)


@dataclass(slots=True)
class Context:
    """What a handler needs: services, settings and the caller."""

    settings: Settings
    store: Store
    blobs: BlobStore
    graph: Graph
    tiles: TileService
    accounts: Accounts
    authenticator: Authenticator
    limiter: RateLimiter
    server_secret: bytes
    principal: Principal | None = None


def _routes(upload_prefix: str = "/upload", *, metrics_enabled: bool = False) -> list[Route]:
    get = frozenset({"GET", "HEAD"})
    post = frozenset({"POST"})
    page = frozenset({"GET", "HEAD", "POST"})
    r = re.compile
    # Prometheus (issue #19): without `metrics.enabled` the path does not exist at all.
    operator = [Route(r(r"/metrics"), get, metric_routes.scrape, auth=False, budget=None)
                ] if metrics_enabled else []
    return [
        *operator,
        # Accounts and OAuth (spec §7): not counted against app budgets.
        Route(r(r"/signup"), page, account_routes.signup, auth=False, budget=None),
        Route(r(r"/signin"), page, account_routes.signin, auth=False, budget=None),
        Route(r(r"/signout"), post, account_routes.signout, auth=False, budget=None),
        Route(r(r"/account"), get, account_routes.account, auth=False, budget=None),
        Route(r(r"/account/password"), post, account_routes.change_password, auth=False,
              budget=None),
        Route(r(r"/account/apps/(?P<app_id>[0-9]{1,16})/revoke"), post,
              account_routes.revoke_app, auth=False, budget=None),
        Route(r(r"/dashboard/developers"), page, account_routes.developers, auth=False,
              budget=None),
        Route(r(r"/dashboard/developers/(?P<app_id>[0-9]{1,16})"), get,
              account_routes.developer_app, auth=False, budget=None),
        Route(r(r"/dashboard/developers/(?P<app_id>[0-9]{1,16})/(?P<action>rotate-secret|delete)"),
              post, account_routes.developer_app, auth=False, budget=None),
        Route(r(r"/connect"), page, account_routes.connect, auth=False, budget=None),
        Route(r(r"/token"), post, account_routes.token, auth=False, budget=None),
        Route(r(r"/login"), post, account_routes.password_login, auth=False, budget=None),
        Route(r(r"/media/images/(?P<id>[0-9]{1,16})/(?:v(?P<version>[1-9][0-9]{0,8})/)?"
                r"(?P<variant>[a-z0-9_]+)\.(?P<ext>jpg|pbf)"),
              get, media.image_variant, auth=False, budget=None),
        Route(r(r"/media/sequences/(?P<sequence>[A-Za-z0-9_-]{1,64})/cluster\.json\.z"), get,
              media.sequence_cluster, auth=False, budget=None),
        Route(r(r"/healthz"), get, graph_routes.healthz, auth=False, budget=None),
        Route(r(r"/openapi\.json"), get, openapi.serve_openapi, auth=False, budget=None),
        # The /embed page and /app explorer (issue #6): no login, they carry the embed token.
        Route(r(r"/embed"), get, web_routes.embed, auth=False, budget=None),
        Route(r(r"/app"), get, web_routes.explorer, auth=False, budget=None),
        Route(r(r"/static/(?P<path>.+)"), get, web_routes.static, auth=False, budget=None),
        Route(r(r"/favicon\.ico"), get, web_routes.favicon, auth=False, budget=None),
        Route(r(r"/maps/vtp/(?P<tileset>[^/]+)/(?P<version>[^/]+)/(?P<z>[^/]+)/(?P<x>[^/]+)"
                r"/(?P<y>[^/]+)"), get, tile_routes.tile, budget="tiles"),
        Route(r(r"/maps/vtp(/.*)?"), get, tile_routes.not_a_tile, budget="tiles"),
        # Upload service (spec §8): user tokens with the `upload` scope.
        Route(r(re.escape(upload_prefix) + r"/(?P<session_key>[^/]+)"), page,
              upload_routes.session, scope="upload", budget="upload",
              on_error=upload_routes.error_response),
        Route(r(r"/finish_upload"), post, upload_routes.finish, scope="upload"),
        Route(r(r"/logging"), post, upload_routes.logging_event, budget=None),
        # Owners' control of their data (issue #17): editing, export, organizations, reports.
        *edit_routes.ROUTES,
        *export_routes.ROUTES,
        *organizations.ROUTES,
        *moderation.ROUTES,
        *governance_pages.ROUTES,
        *reblur.ROUTES,
        # The web app (issue #18): upload from the browser, public profiles.
        *upload_page.ROUTES,
        *profiles.ROUTES,
        Route(r(r"/sequences/(?P<sequence>[A-Za-z0-9_-]{1,64})"), frozenset({"DELETE"}),
              graph_routes.delete_sequence, scope="write"),
        Route(r(r"/me/images"), frozenset({"DELETE"}), graph_routes.delete_user_images,
              scope="write"),
        Route(r(r"/(?P<id>[0-9]+)/images"), frozenset({"DELETE"}),
              graph_routes.delete_user_images, scope="write"),
        Route(r(r"/me"), frozenset({"DELETE"}), graph_routes.delete_me, scope="write"),
        Route(r(r"/me"), get, graph_routes.me),
        Route(r(r"/images"), get, graph_routes.images, budget="search"),
        Route(r(r"/image_ids"), get, graph_routes.image_ids, budget="search"),
        Route(r(r"/map_features"), get, graph_routes.map_features, budget="search"),
        Route(r(r"/detections"), get, graph_routes.detections, budget="search"),
        Route(r(r"/"), get, graph_routes.many),
        Route(r(r"/ids=(?P<ids>[^/]*)"), get, graph_routes.many),
        Route(r(r"/(?P<id>[0-9]+)/detections"), get, graph_routes.detections_of),
        Route(r(r"/(?P<id>[0-9]+)/tiles"), get, graph_routes.image_tiles),
        # Open to every token like GET /{id}; the handler answers E7 to client tokens.
        Route(r(r"/(?P<id>[0-9]+)"), frozenset({"DELETE"}), graph_routes.delete_node),
        Route(r(r"/(?P<id>[0-9]+)"), get, graph_routes.node),
    ]


#: When each kind of ServiceUnavailable not logged by its component was last logged.
_UNAVAILABLE_LOGGED: dict[type[BaseException], float] = {}
#: Seconds between two lines about the same kind of untracked 503.
_UNAVAILABLE_LOG_EVERY_S = 60.0


def _log_unavailable(exc: ServiceUnavailable) -> None:
    """One line (no traceback) for a 503 whose component did not log the outage itself,
    at most once a minute per kind (issue #22: not a traceback per request)."""
    if exc.logged:
        return
    now = time.monotonic()
    if now - _UNAVAILABLE_LOGGED.get(type(exc), -_UNAVAILABLE_LOG_EVERY_S) \
            >= _UNAVAILABLE_LOG_EVERY_S:
        _UNAVAILABLE_LOGGED[type(exc)] = now
        log.error("answering 503: %s: %s", type(exc).__name__, exc.message)


def route_name(route: Route) -> str:
    """The `route` label of a route's requests in metrics and logs: its handler's module and
    name (`graph.node`), never the path (which holds ids).

    >>> route_name(_routes()[-1])
    'graph.node'
    """
    return f"{route.handler.__module__.rsplit('.', 1)[-1]}.{route.handler.__name__}"


def direct_asset_url(blobs: BlobStore) -> AssetUrl | None:
    """Thumbnail URLs straight from object storage when it serves them (public bucket or
    presigned URLs); None when wayview serves `/media/…` itself."""
    if getattr(blobs, "serve", "proxy") == "proxy":
        return None

    def url(image_id: int, variant: str, version: int = 0) -> str:
        # The key carries the media version (issue #17, re-blur): a new version has new URLs.
        found = blobs.url_for(image_blob_key(image_id, variant, version))
        assert found is not None
        return found

    return url


def normalise_path(path: str) -> str:
    """Collapse repeated slashes and drop a trailing one (spec §1.6).

    >>> normalise_path("//123/detections/"), normalise_path("/")
    ('/123/detections', '/')
    """
    path = _SLASHES.sub("/", path)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


def token_from(request: Request) -> str | None:
    """The token of a request: the `Authorization` header wins over `?access_token=`."""
    header = request.headers.get("authorization")
    if header:
        lowered = header[:7].lower()
        for scheme in _AUTH_SCHEMES:
            if lowered.startswith(scheme):
                return header[len(scheme):].strip() or None
        return header.strip() or None
    return request.query_params.get("access_token") or None


_trace_random = random.Random(secrets.randbits(128))


def new_trace_id() -> str:
    """A fresh 23-character base64url id for `fbtrace_id` / `x-fb-trace-id`.

    Trace ids are not secrets (they only correlate a response with the log), so a seeded
    non-cryptographic generator is enough and avoids a system call per request.
    """
    raw = _trace_random.getrandbits(144).to_bytes(18, "big")
    return base64.urlsafe_b64encode(raw).decode("ascii")[:23]


class WayviewApp:
    """The ASGI application: global rules around a small regex router."""

    def __init__(
        self, settings: Settings, store: Store | None, blobs: BlobStore | None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self._owns_store = store is None
        self.store: Store = store if store is not None else open_store(settings)
        self.blobs: BlobStore = blobs if blobs is not None else open_blobs(settings)
        self.graph = Graph(self.store, settings, asset_url=direct_asset_url(self.blobs))
        self.tiles = TileService(self.store, cache_max_bytes=settings.tiles.cache_max_bytes,
                                 shared=open_tile_cache(settings.redis_url,
                                                       settings.redis_timeout_s),
                                 line_tile_max_bytes=settings.tiles.max_line_tile_bytes)
        self.auth = Authenticator(self.store, cache_s=settings.auth.token_cache_s)
        self.limiter: RateLimiter = limiter if limiter is not None else open_limiter(
            settings.redis_url, fail_open=settings.rate_limit_fail_open,
            timeout_s=settings.redis_timeout_s)
        self.server_secret = server_secret(settings)
        self.accounts = Accounts(self.store, settings, self.limiter, self.server_secret)
        limits = settings.rate_limit
        search = limits.search_per_minute
        #: budget name → (key prefix, requests per window, window in seconds)
        self._budgets: dict[str, tuple[str, int, int]] = {
            "graph": ("graph", limits.graph_per_minute, 60),
            "search": ("search", search, 60) if search else ("graph", limits.graph_per_minute, 60),
            "tiles": ("tiles", limits.tiles_per_day, 86_400),
            "upload": ("upload", limits.upload_per_minute, 60),
        }
        self.routes = _routes(settings.upload.path_prefix,
                              metrics_enabled=settings.metrics.enabled)
        if settings.metrics.enabled:
            metrics.activate()
        self._route_names = {id(route): route_name(route) for route in self.routes}
        # Routes sharing their path with a later route (one per method: DELETE /{id} before
        # GET /{id}): a method they do not serve goes on to the later ones.
        self._shadowed = {id(route) for n, route in enumerate(self.routes)
                          if any(later.pattern.pattern == route.pattern.pattern
                                 for later in self.routes[n + 1:])}
        self.jobs: Any = None  # the JobRunner started in lifespan (`jobs.serve_workers`)
        self._jobs_task: asyncio.Task[None] | None = None
        self._trusted_proxies = parse_networks(settings.trusted_proxies)
        origins = settings.cors.allowed_origins.strip()
        self._allowed_origins = None if origins == "*" else {
            o.strip() for o in origins.split(",") if o.strip()
        }
        self._expose = (b"access-control-expose-headers",
                        b"x-app-usage, Retry-After, x-fb-trace-id")

    # -- ASGI --------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] == "http":
            if self._trusted_proxies:  # the client and scheme the reverse proxy saw
                scope = forwarded_scope(scope, self._trusted_proxies)
            outer = logs.log_context.set(None)  # _http sets the request's own
            deadline = call_deadline_s.set(self.settings.database_request_timeout_s)
            try:
                await self._http(scope, receive, send)
            finally:
                call_deadline_s.reset(deadline)
                logs.log_context.reset(outer)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._owns_store:
                        await self.store.open()
                    self._start_jobs()
                    scrape = self.settings.metrics
                    if scrape.enabled and not (scrape.bearer_token or scrape.allow_from):
                        log.warning("/metrics answers any client: set metrics.bearer_token "
                                    "or metrics.allow_from (docs/monitoring.md)")
                except Exception as exc:  # report start-up failure to the server
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop_jobs()
                await self.limiter.close()
                if self.tiles.shared is not None:
                    await self.tiles.shared.close()
                if self._owns_store:
                    await self.store.close()
                logs.flush_access_log()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _start_jobs(self) -> None:
        """Run background jobs in this process (`jobs.serve_workers` at once; 0 = none)."""
        count = self.settings.jobs.serve_workers
        if count <= 0:
            return
        from wayview.pipeline.worker import JobRunner

        self.jobs = JobRunner(self.settings, self.store, self.blobs, concurrency=count)
        self._jobs_task = asyncio.create_task(self.jobs.run_forever())

    async def _stop_jobs(self) -> None:
        """Let running jobs finish their current step; an unfinished job's lease expires and
        another worker (or the next start) takes it over."""
        if self._jobs_task is None or self.jobs is None:
            return
        self.jobs.stop()
        self._jobs_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._jobs_task
        self._jobs_task = None

    def _cors_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        if self._allowed_origins is None:
            return [(b"access-control-allow-origin", b"*"), self._expose]
        origin = next((v for k, v in scope["headers"] if k == b"origin"), b"").decode("latin-1")
        if origin in self._allowed_origins:
            return [(b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"vary", b"Origin"), self._expose]
        return [(b"vary", b"Origin")]

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        trace_id = new_trace_id()
        logs.log_context.set({"trace_id": trace_id})  # records logged while handling it
        extra = self._cors_headers(scope)
        extra.append((b"x-fb-trace-id", trace_id.encode()))
        status_seen = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status_seen
            if message["type"] == "http.response.start":
                status_seen = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        method = scope["method"]
        if method == "OPTIONS":
            scope = {**scope, "wayview.route": "preflight"}
            await self._preflight(scope, send_with_headers)
        else:
            path = normalise_path(scope["path"])
            scope = {**scope, "path": path, "wayview.route": "unmatched"}
            try:
                response = await self._dispatch(scope, receive, method, path, extra)
            except Forbidden as exc:
                response = account_routes.forbidden_page(
                    self._context(), Request(scope, receive), exc)
            except Exception as exc:
                if isinstance(exc, RESOURCE_ERRORS):
                    # A class of hostile input no limit caught: refuse it, don't crash (E9).
                    log.warning("request refused as too complex [trace %s]: %s", trace_id,
                                type(exc).__name__)
                    exc = InvalidParameter("request", "too complex to answer within this "
                                           "server's limits")
                if isinstance(exc, ServiceUnavailable):
                    _log_unavailable(exc)  # the outage, once: not a traceback per request
                elif shape_of(exc).status >= 500:
                    log.error("request failed [trace %s]", trace_id, exc_info=exc)
                status, body, headers = envelope(exc, trace_id)
                response = Response(body, status_code=status,
                                    media_type="application/json; charset=UTF-8")
                for k, v in headers:
                    response.headers.append(k.decode(), v.decode())
            await response(scope, receive, send_with_headers)
        seconds = time.perf_counter() - started
        route = scope["wayview.route"]
        metrics.request_done(route, method, status_seen, seconds)
        if access_log.isEnabledFor(logging.INFO):
            query = logs.loggable_query(scope.get("query_string", b""))
            safe_method, safe_path = logs.escape(method, 16), logs.escape(scope["path"])
            access_log.info("%s %s%s %d %.1fms trace=%s", safe_method, safe_path,
                            f"?{query}" if query else "", status_seen, seconds * 1000, trace_id,
                            extra={"fields": {
                                "method": safe_method, "route": route, "path": safe_path,
                                "query": query, "status": status_seen,
                                "duration_ms": round(seconds * 1000, 3),
                                "app_id": scope.get("wayview.app_id")}})

    async def _preflight(self, scope: Scope, send: Send) -> None:
        requested = next(
            (v for k, v in scope["headers"] if k == b"access-control-request-headers"), b""
        )
        allow_headers = requested or b"Authorization, Content-Type, Accept"
        headers = [
            (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            (b"access-control-allow-headers", allow_headers),
            (b"access-control-max-age", b"86400"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    def _context(self) -> Context:
        return Context(settings=self.settings, store=self.store, blobs=self.blobs,
                       graph=self.graph, tiles=self.tiles, accounts=self.accounts,
                       authenticator=self.auth, limiter=self.limiter,
                       server_secret=self.server_secret)

    async def _spend(self, budget: str | None, app_id: int,
                     extra: list[tuple[bytes, bytes]]) -> None:
        """Count a request against its app's budget (spec §9); E14 when it is spent. Graph
        responses carry the budget's use in `x-app-usage`."""
        if budget is None:
            return
        prefix, limit, window = self._budgets[budget]
        decision = await self.limiter.hit(f"{prefix}:{app_id}", limit, window)
        if not decision.allowed:
            metrics.rate_limit_refused(budget)
            raise RateLimited(decision.retry_after_s, decision.usage_percent)
        if prefix in ("graph", "search"):
            extra.append((b"x-app-usage", usage_header(decision.usage_percent)))

    async def _dispatch(self, scope: Scope, receive: Receive, method: str, path: str,
                        extra: list[tuple[bytes, bytes]]) -> Response:
        request = Request(scope, receive)
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if method not in route.methods and id(route) in self._shadowed:
                continue  # a later route serves this path (and answers other methods)
            scope["wayview.route"] = self._route_names[id(route)]
            ctx = self._context()
            try:
                if route.auth:
                    ctx.principal = await self.auth.authenticate(token_from(request))
                    scope["wayview.app_id"] = ctx.principal.app_id
                    await self._spend(route.budget, ctx.principal.app_id, extra)
                    if route.scope != "read" and ctx.principal.user_id is None:
                        raise UserTokenRequired()  # client tokens read public data only (§7.4)
                    if route.scope not in ctx.principal.scopes:
                        raise MissingScope(route.scope)
                if method not in route.methods:
                    raise NodeNotFound(path.strip("/").split("/")[0], method.lower())
                return await route.handler(ctx, request, match)
            except Exception as exc:
                if route.on_error is None:
                    raise
                return route.on_error(exc)
        # Unknown path: authenticate first so a probe cannot tell paths apart (spec §1.9).
        principal = await self.auth.authenticate(token_from(request))
        await self._spend("graph", principal.app_id, extra)
        if "read" not in principal.scopes:
            raise MissingScope("read")
        raise NodeNotFound(path.strip("/").split("/")[0], method.lower())


def create_app(
    settings: Settings, *, store: Store | None = None, blobs: BlobStore | None = None,
    limiter: RateLimiter | None = None,
) -> WayviewApp:
    """Build the ASGI app. Anything not injected is opened in lifespan from `settings`."""
    return WayviewApp(settings, store, blobs, limiter)


def app_from_env() -> Any:
    """Factory for the ASGI server (`serve`): settings from `WAYVIEW_SERVER_SETTINGS` or env."""
    import os

    from wayview.server import die_with_server

    die_with_server()  # no orphan serving on when `serve` is killed
    raw = os.environ.get("WAYVIEW_SERVER_SETTINGS")
    settings = Settings.model_validate_json(raw) if raw else Settings()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings)
