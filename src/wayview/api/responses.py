"""wayview.api.responses: JSON responses that the SDK's `ast.literal_eval` can read (spec §1.4)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

JSON_TYPE = "application/json; charset=UTF-8"


def json_response(obj: Any, status: int = 200) -> Response:
    """orjson output: raw UTF-8, `/` unescaped, integers as integers; never NaN (no nulls)."""
    return Response(orjson.dumps(obj), status_code=status, media_type=JSON_TYPE)
