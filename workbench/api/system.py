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


@router.get("/metrics", summary="Prometheus metrics (text exposition format)")
async def prometheus_metrics(req: ApiRequest) -> web.Response:
    body = metrics.render()
    return web.Response(body=body, headers={"Content-Type": metrics.PROMETHEUS_CONTENT_TYPE})


@router.get("/openapi.json", summary="This OpenAPI 3.1 document", envelope=False)
async def openapi(req: ApiRequest) -> dict[str, Any]:
    from workbench.api.app import OPENAPI_KEY

    return req.app[OPENAPI_KEY]
