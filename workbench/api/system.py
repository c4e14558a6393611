"""Routes of the service itself: health, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import os
import time
from typing import Any

from aiohttp import web

from workbench import __version__, metrics
from workbench.api.routing import ApiRequest, ApiRouter

__all__ = ["router"]

router = ApiRouter("", tag="system")


@router.get("/health", summary="Liveness of the service", public=True)
async def health(req: ApiRequest) -> dict[str, Any]:
    """Answers as soon as the process serves requests; needs no token."""
    from workbench.api.app import STARTED_AT_KEY

    return {
        "status": "healthy",
        "version": __version__,
        "pid": os.getpid(),
        "uptimeSeconds": round(time.time() - req.app[STARTED_AT_KEY], 3),
    }


@router.get(
    "/metrics",
    summary="Prometheus metrics of every worker (text exposition format)",
    media_type="text/plain",
)
async def prometheus_metrics(req: ApiRequest) -> web.Response:
    """With several workers, counters and histograms are summed over all of them and gauges
    carry a ``worker`` label (see :mod:`workbench.api.workers`)."""
    from workbench.api.app import FORWARDER_KEY, WORKER_KEY
    from workbench.api.workers import LOCAL_METRICS_HEADER, is_internal, merge_metrics

    body = metrics.render()
    forwarder = req.app.get(FORWARDER_KEY)
    local_only = req.request.headers.get(LOCAL_METRICS_HEADER) and is_internal(req.request)
    if forwarder is not None and not local_only:
        others = await forwarder.gather_metrics(req.request.headers.get("Authorization"))
        mine = (req.app[WORKER_KEY].index, body.decode())
        body = merge_metrics([mine, *others])
    return web.Response(body=body, headers={"Content-Type": metrics.PROMETHEUS_CONTENT_TYPE})


@router.get("/openapi.json", summary="This OpenAPI 3.1 document", envelope=False)
async def openapi(req: ApiRequest) -> dict[str, Any]:
    from workbench.api.app import OPENAPI_KEY

    return req.app[OPENAPI_KEY]
