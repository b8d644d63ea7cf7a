"""wayview.api.metrics: GET /metrics, the Prometheus scrape (only with `metrics.enabled`).

The route exists only when metrics are enabled: otherwise `/metrics` is answered like any
unknown path. A scrape must come from `metrics.allow_from` (403) and carry
`metrics.bearer_token` (401) when those are set (`wayview.metrics.refusal`).
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from wayview import metrics
from wayview.store import Store

if TYPE_CHECKING:
    from wayview.api.app import Context

#: The job-queue figures of each store (one per app in a process), read every few seconds.
_gauges: weakref.WeakKeyDictionary[Store, metrics.JobQueueGauges] = weakref.WeakKeyDictionary()


async def scrape(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /metrics: every metric of this server (all its worker processes) and the job
    queue's gauges."""
    refused = metrics.refusal(ctx.settings.metrics, request.client.host if request.client
                              else None, request.headers.get("authorization"))
    if refused == 403:
        return Response("forbidden\n", status_code=403, media_type="text/plain")
    if refused == 401:
        return Response("unauthorized\n", status_code=401, media_type="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    gauges = _gauges.get(ctx.store)
    if gauges is None:
        gauges = _gauges[ctx.store] = metrics.JobQueueGauges()
    if gauges.stale():
        now_ms = int(time.time() * 1000)
        gauges.update(await ctx.store.job_queue_stats(now_ms), now_ms)
    body = await asyncio.to_thread(metrics.render, (gauges,))
    return Response(body, media_type=metrics.CONTENT_TYPE,
                    headers={"Cache-Control": "no-store"})
