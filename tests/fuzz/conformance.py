"""tests.fuzz.conformance: check one HTTP answer against the OpenAPI document and the house rules.

Used by the fuzzing run (tests/fuzz/driver.py) and by tests/api/test_openapi.py:
- `DocValidator.problems(method, template, status, content_type, body)`: the status is documented
  for the operation, the media type is the documented one and a JSON body validates against the
  documented schema (JSON Schema 2020-12, the dialect of OpenAPI 3.1);
- `envelope_problems(body, upload=...)`: an error body is the Graph envelope (spec §1.8) or, on
  the upload session routes, the upload envelope (spec §8.6);
- `traceback_in(body)`: Python traceback text leaked into a body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs

_TEXT_MARKERS = (b"Traceback", b'File "')
_BINARY_MARKERS = (b"Traceback (most recent call last)",)


def traceback_in(body: bytes, content_type: str = "") -> bool:
    """Whether a response body shows Python traceback text (binary media types, where any
    byte sequence may occur, only by the traceback header line)."""
    media = content_type.split(";")[0].strip().lower()
    textual = not media or media.startswith("text/") or media.endswith(("json", "html", "xml"))
    return any(marker in body for marker in (_TEXT_MARKERS if textual else _BINARY_MARKERS))


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def envelope_problems(body: bytes, *, upload: bool) -> list[str]:
    """What is wrong with an error body (empty when it is the expected envelope)."""
    data = _json_or_none(body)
    if upload:
        info = data.get("debug_info") if isinstance(data, dict) else None
        if not isinstance(info, dict):
            return [f"not the upload envelope: {body[:200]!r}"]
        wanted = {"retriable": bool, "type": str, "message": str}
        return [f"debug_info.{k} is not a {t.__name__}: {body[:200]!r}"
                for k, t in wanted.items() if not isinstance(info.get(k), t)]
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return [f"not the Graph envelope: {body[:200]!r}"]
    wanted = {"message": str, "type": str, "code": int, "fbtrace_id": str}
    return [f"error.{k} is not a {t.__name__}: {body[:200]!r}"
            for k, t in wanted.items()
            if not isinstance(error.get(k), t) or isinstance(error.get(k), bool)]


@dataclass
class DocValidator:
    """Responses checked against one OpenAPI 3.1 document."""

    document: dict[str, Any]
    _validators: dict[tuple[str, str, str, str], Any] = field(default_factory=dict)

    def operation(self, method: str, template: str) -> dict[str, Any]:
        """The operation object of `METHOD template`; KeyError when undocumented."""
        return self.document["paths"][template][method.lower()]  # type: ignore[no-any-return]

    def _response(self, op: dict[str, Any], status: int) -> dict[str, Any] | None:
        responses = op["responses"]
        found = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") \
            or responses.get("default")
        if found is None:
            return None
        while "$ref" in found:  # "#/components/responses/Name"
            node: Any = self.document
            for part in found["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            found = node
        return found  # type: ignore[no-any-return]

    def _validator(self, key: tuple[str, str, str, str], schema: dict[str, Any]) -> Any:
        if key not in self._validators:
            root = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                    "components": self.document.get("components", {}), **schema}
            self._validators[key] = jsonschema_rs.Draft202012Validator(
                root, validate_formats=True)
        return self._validators[key]

    def problems(self, method: str, template: str, status: int, content_type: str,
                 body: bytes) -> list[str]:
        """How an answer departs from the document (empty when it conforms)."""
        op = self.operation(method, template)
        response = self._response(op, status)
        if response is None:
            return [f"status {status} is not documented for {method.upper()} {template}"]
        content = response.get("content")
        if not content:
            return [] if not body else [f"status {status} documents no body, got {len(body)} B"]
        media = content_type.split(";")[0].strip().lower()
        if media not in content:
            return [f"content type {content_type!r} is not one of {sorted(content)}"]
        schema = content[media].get("schema")
        if schema is None or not media.endswith("json"):
            return []
        data = _json_or_none(body)
        if data is None:
            return [f"body is not JSON: {body[:200]!r}"]
        validator = self._validator((method, template, str(status), media), schema)
        return [f"{e.instance_path}: {e.message}"[:300] for e in validator.iter_errors(data)][:5]
