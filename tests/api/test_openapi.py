"""The OpenAPI 3.1 document at GET /openapi.json stays true (issue #14).

- it validates as OpenAPI 3.1 (openapi-spec-validator);
- every API route of `_routes()` (Graph, tiles, media, upload) is a documented path and every
  documented path reaches the route it describes, with the same methods;
- every query parameter a handler reads is documented for that operation, and every documented
  one is read (recorded by wrapping starlette's QueryParams while requests run);
- the node schemas name exactly the fields of the field registry;
- answers of the app (200s with rich selections, and errors) validate against the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
import starlette.requests
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from starlette.datastructures import Headers, QueryParams
from tests.fuzz.conformance import DocValidator, envelope_problems

from wayview.api import (
    edits,
    export,
    graph,
    media,
    moderation,
    openapi,
    organizations,
    reblur,
    tiles,
    upload,
)
from wayview.api.app import Route, _routes, normalise_path
from wayview.api.openapi import openapi_document
from wayview.model.fields import NODE_TYPES
from wayview.settings import Settings
from wayview.testing import BASE_URL, Seeded

#: Route handlers of the API the document covers; the account pages, OAuth, /embed and /app
#: are out of its scope.
API_MODULES = {m.__name__ for m in (graph, tiles, media, upload, openapi, export, edits,
                                    organizations, moderation, reblur)}
#: API routes that no path stands for: the catch-all under /maps/vtp answers E15 to anything
#: that is not a tile URL (said in the tile operation's description).
UNDOCUMENTED = {tiles.not_a_tile,
                # The owner's web pages of api/edits.py (session and CSRF, not tokens).
                edits.sequences_page, edits.sequence_page,
                # The re-blur page of api/reblur.py (session and CSRF, not tokens).
                reblur.blur_page, reblur.blur_page_data}
#: Operations not called by the parameter test: closing the seeded user's account would end
#: the session every later call uses (tests/api/test_governance.py covers it; it reads no
#: query parameter).
DESTRUCTIVE = {"closeAccount"}
#: Query keys read outside the operation's parameters: the token transport (a security scheme).
SECURITY_QUERY = {"access_token"}
#: Headers read by the app's wrapper or the HTTP layer rather than as operation parameters.
TRANSPORT_HEADERS = {"authorization", "content-length", "content-type", "transfer-encoding",
                     "host", "origin", "access-control-request-headers"}


def _settings(prefix: str = "/upload") -> Settings:
    return Settings(_env_file=None, public_base_url="http://mly.test",  # type: ignore[call-arg]
                    upload={"path_prefix": prefix})


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for template, item in document["paths"].items():
        for method, op in item.items():
            yield template, method, op


def _example_path(template: str, op: dict[str, Any]) -> str:
    path = template
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = param["example"]
            text = ",".join(value) if isinstance(value, list) else str(value)
            path = path.replace("{" + param["name"] + "}", quote(text, safe=",|"))
    assert "{" not in path, f"{template}: a path parameter without an example"
    return path


def _route_of(routes: list[Route], path: str, method: str = "GET") -> Route | None:
    """The route the app dispatches `method path` to: the first full match serving the
    method, else the first full match (as WayviewApp does)."""
    path = normalise_path(path)
    matches = [r for r in routes if r.pattern.fullmatch(path)]
    return next((r for r in matches if method in r.methods), matches[0] if matches else None)


# -- the document itself ---------------------------------------------------------------------


def test_openapi_validates_as_openapi_3_1():
    document = openapi_document(_settings())
    validate(document, cls=OpenAPIV31SpecValidator)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "http://mly.test"}]


def test_openapi_validator_rejects_a_broken_document():
    """The validation above can fail: a path parameter that is not required is an error."""
    document = openapi_document(_settings())
    document["paths"]["/{id}"]["get"]["parameters"][0]["required"] = False
    with pytest.raises(Exception, match="required"):
        validate(document, cls=OpenAPIV31SpecValidator)


def test_openapi_operation_ids_are_unique_and_every_parameter_has_an_example():
    document = openapi_document(_settings())
    ids = [op["operationId"] for _, _, op in _operations(document)]
    assert len(ids) == len(set(ids))
    for template, method, op in _operations(document):
        for param in op.get("parameters", []):
            assert "example" in param, f"{method} {template}: {param['name']}"


@pytest.mark.parametrize("prefix", ["/upload", "/rupload/v2"])
def test_openapi_paths_and_api_routes_match_both_ways(prefix):
    document = openapi_document(_settings(prefix))
    routes = _routes(prefix)
    api_routes = [r for r in routes if r.handler.__module__ in API_MODULES
                  and r.handler not in UNDOCUMENTED]
    documented: dict[int, set[str]] = {}
    for template, method, op in _operations(document):
        route = _route_of(routes, _example_path(template, op), method.upper())
        assert route is not None and route in api_routes, (
            f"{method.upper()} {template} does not reach an API route")
        assert method.upper() in route.methods, f"{method.upper()} {template}"
        documented.setdefault(id(route), set()).add(method.upper())
    for route in api_routes:
        assert id(route) in documented, f"route {route.pattern.pattern} is not documented"
        assert documented[id(route)] == set(route.methods) - {"HEAD"}, route.pattern.pattern


def test_openapi_node_schemas_name_exactly_the_registry_fields():
    schemas = openapi_document(_settings())["components"]["schemas"]
    for name, spec in NODE_TYPES.items():
        assert set(schemas[name]["properties"]) == set(spec.scalars) | set(spec.refs), name


def test_openapi_error_schema_requires_the_four_envelope_keys():
    error = openapi_document(_settings())["components"]["schemas"]["GraphError"]
    assert set(error["properties"]["error"]["required"]) == {
        "message", "type", "code", "fbtrace_id"}


# -- served by the app -----------------------------------------------------------------------


async def test_openapi_served_without_a_token(client: httpx.AsyncClient, settings: Settings):
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["access-control-allow-origin"] == "*"
    document = r.json()
    assert document["servers"] == [{"url": BASE_URL}]
    assert document == openapi_document(settings)


class _RecordingQuery(QueryParams):
    seen: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.seen.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.seen.add(str(key))
        return super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return super().get(key, default)

    def getlist(self, key: str) -> list[str]:
        self.seen.add(key)
        return super().getlist(key)


class _RecordingHeaders(Headers):
    seen: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.seen.add(key.lower())
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        self.seen.add(str(key).lower())
        return super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key.lower())
        return super().get(key, default)

    def getlist(self, key: str) -> list[str]:
        self.seen.add(key.lower())
        return super().getlist(key)


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> tuple[set[str], set[str]]:
    """(query keys, header names) the handlers look at while the test's requests run."""
    queries: set[str] = set()
    headers: set[str] = set()
    monkeypatch.setattr(_RecordingQuery, "seen", queries)
    monkeypatch.setattr(_RecordingHeaders, "seen", headers)
    monkeypatch.setattr(starlette.requests, "QueryParams", _RecordingQuery)
    monkeypatch.setattr(starlette.requests, "Headers", _RecordingHeaders)
    return queries, headers


def _query_value(param: dict[str, Any]) -> str:
    value = param["example"]
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


async def _call(client: httpx.AsyncClient, method: str, template: str, op: dict[str, Any],
                query: dict[str, str], token: str) -> httpx.Response:
    headers = {"Authorization": f"OAuth {token}"}
    for param in op.get("parameters", []):
        if param["in"] == "header":
            headers[param["name"]] = _query_value(param)
    target = _example_path(template, op) + (f"?{urlencode(query)}" if query else "")
    if method == "post":
        body = op.get("requestBody", {}).get("content", {})
        if "application/json" in body:
            return await client.post(target, headers=headers, json={})
        return await client.post(target, headers=headers, content=b"")
    if method == "delete":
        return await client.delete(target, headers=headers)
    return await client.get(target, headers=headers)


async def test_openapi_documents_every_query_parameter_the_handlers_read(
        client: httpx.AsyncClient, seeded: Seeded, recording: tuple[set[str], set[str]]):
    """Each operation is called once with its required parameters and once more per optional
    one (values: the document's examples); the query keys the app looks at are recorded."""
    queries, headers = recording
    document = openapi_document(_settings())
    validator = DocValidator(document)
    for template, method, op in _operations(document):
        if op["operationId"] in DESTRUCTIVE:
            continue
        params = [p for p in op.get("parameters", []) if p["in"] == "query"]
        required = {p["name"]: _query_value(p) for p in params if p.get("required")}
        documented = {p["name"] for p in params}
        header_params = {p["name"].lower() for p in op.get("parameters", [])
                         if p["in"] == "header"}
        user_ops = {"upload", "export", "organizations", "moderation"}
        token = seeded.user_token if user_ops & set(op.get("tags", [])) or template == "/me" \
            else seeded.client_token
        queries.clear()
        headers.clear()
        variants = [required] + [{**required, p["name"]: _query_value(p)} for p in params
                                 if not p.get("required")]
        for query in variants:
            r = await _call(client, method, template, op, query, token)
            assert r.status_code < 500, f"{method} {template} {query}: {r.text}"
            assert not validator.problems(method, template, r.status_code,
                                          r.headers.get("content-type", ""), r.content), (
                method, template, query, r.status_code, r.text[:300])
        where = f"{method.upper()} {template}"
        assert queries - SECURITY_QUERY <= documented, (
            f"{where} reads undocumented query parameters {queries - documented}")
        assert documented <= queries, f"{where} documents {documented - queries}, never read"
        unread_headers = headers - TRANSPORT_HEADERS - header_params
        assert not unread_headers, f"{where} reads undocumented headers {unread_headers}"


# -- answers validate against the document ---------------------------------------------------


def _all_fields(node_type: str) -> str:
    spec = NODE_TYPES[node_type]
    return ",".join(sorted(spec.scalars) + sorted(spec.refs))


async def test_openapi_answers_of_the_app_validate_against_the_document(
        client: httpx.AsyncClient, seeded: Seeded):
    document = openapi_document(_settings())
    validator = DocValidator(document)
    image = seeded.sequences[next(iter(seeded.sequences))][0]
    pano = next(ims[0] for ims in seeded.sequences.values() if ims[0].is_pano)
    feature, detection = seeded.features[0], seeded.detections[0]
    bbox = "13.40,52.51,13.41,52.53"
    client_auth = {"Authorization": f"OAuth {seeded.client_token}"}
    user_auth = {"Authorization": f"OAuth {seeded.user_token}"}
    calls: list[tuple[str, str, str, dict[str, str], int]] = [
        ("get", "/{id}", f"/{image.id}?fields={_all_fields('Image')}", client_auth, 200),
        ("get", "/{id}", f"/{pano.id}?fields={_all_fields('Image')}", client_auth, 200),
        ("get", "/{id}", f"/{image.id}?fields=creator{{username}},detections{{value,image"
         "{geometry}},organization{name,slug}", client_auth, 200),
        ("get", "/{id}", f"/{feature.id}?fields={_all_fields('MapFeature')}", client_auth, 200),
        ("get", "/{id}", f"/{detection.id}?fields={_all_fields('Detection')}", client_auth, 200),
        ("get", "/{id}", f"/{seeded.org.id}?fields={_all_fields('Organization')}", client_auth,
         200),
        ("get", "/{id}", f"/{seeded.bob.id}?fields={_all_fields('User')}", client_auth, 200),
        ("get", "/{id}", "/1?fields=id", client_auth, 400),
        ("get", "/{id}", f"/{image.id}?fields=nope", client_auth, 400),
        ("get", "/{id}", f"/{image.id}", {}, 401),
        ("get", "/me", "/me?fields=id,username", user_auth, 200),
        ("get", "/me", "/me", client_auth, 401),
        ("get", "/", f"/?ids={image.id},{feature.id},{seeded.alice.id}&fields=id", client_auth,
         200),
        ("get", "/ids={ids}", f"/ids={image.id},{detection.id}", client_auth, 200),
        ("get", "/{id}/detections", f"/{image.id}/detections?fields=value,geometry,created_at",
         client_auth, 200),
        ("get", "/{id}/detections", f"/{feature.id}/detections?fields=id,image", client_auth,
         200),
        ("get", "/{id}/tiles", f"/{image.id}/tiles?z=11", client_auth, 200),
        ("get", "/{id}/tiles", f"/{image.id}/tiles?z=99", client_auth, 400),
        ("get", "/images", f"/images?bbox={bbox}&limit=2&fields={_all_fields('Image')}",
         client_auth, 200),
        ("get", "/images", "/images", client_auth, 400),
        ("get", "/image_ids", f"/image_ids?sequence_id={image.sequence_id}", client_auth, 200),
        ("get", "/map_features", f"/map_features?bbox={bbox}&limit=1&fields="
         f"{_all_fields('MapFeature')}", client_auth, 200),
        ("get", "/detections", f"/detections?bbox={bbox}&limit=1&fields="
         f"{_all_fields('Detection')}", client_auth, 200),
        ("get", "/maps/vtp/{tileset}/{version}/{z}/{x}/{y}", "/maps/vtp/mly1_public/2/0/0/0",
         client_auth, 200),
        ("get", "/maps/vtp/{tileset}/{version}/{z}/{x}/{y}", "/maps/vtp/mly1_public/2/15/0/0",
         client_auth, 404),
        ("get", "/media/images/{id}/{variant}.jpg", f"/media/images/{image.id}/thumb_256.jpg",
         {}, 404),
        ("get", "/upload/{session_key}", "/upload/abc.jpg", user_auth, 200),
        ("get", "/upload/{session_key}", "/upload/abc.jpg", client_auth, 401),
        ("post", "/upload/{session_key}", "/upload/abc.jpg", user_auth, 200),
        ("post", "/finish_upload", "/finish_upload", user_auth, 400),
        ("post", "/logging", "/logging", client_auth, 200),
        ("get", "/healthz", "/healthz", {}, 200),
        ("get", "/openapi.json", "/openapi.json", {}, 200),
    ]
    for method, template, target, headers, status in calls:
        if method == "post":
            r = await client.post(target, headers=headers, content=b"x" if "upload/" in target
                                  else b"{}")
        else:
            r = await client.get(target, headers=headers)
        assert r.status_code == status, (target, r.status_code, r.text[:300])
        problems = validator.problems(method, template, r.status_code,
                                      r.headers.get("content-type", ""), r.content)
        assert not problems, (target, problems)
        if status >= 400:
            upload = re.fullmatch(r"/upload/[^/]+", target) is not None
            assert not envelope_problems(r.content, upload=upload), (target, r.text)


async def test_openapi_validation_catches_an_undocumented_field(client, seeded: Seeded):
    """The check above can fail: a body with a field the schema does not know is refused."""
    validator = DocValidator(openapi_document(_settings()))
    body = b'{"id": "1", "captured_at": 1, "haunted": true}'
    assert validator.problems("get", "/{id}", 200, "application/json", body)
