"""The workbench HTTP service: one aiohttp application, one router per subsystem.

:func:`create_app` mounts every module in :data:`ROUTER_MODULES` (each exposes ``router``, an
:class:`~workbench.api.routing.ApiRouter`) behind one middleware that, in this order:

1. assigns the request id (a well-formed ``X-Request-Id`` header is kept, else a new UUID4),
   echoed in the ``X-Request-Id`` response header and the envelope's ``metadata.requestId``;
2. refuses bodies over ``max_body_bytes`` with 413 before any handler runs (declared
   ``Content-Length``; streamed bodies are cut at the same size by aiohttp);
3. requires ``Authorization: Bearer <api token>`` on every route but the public ones
   (``/health``) when an API token is configured, 401 otherwise; routes declared ``admin``
   require the admin token, 403 otherwise (and always 403 when none is configured);
4. turns every error into the platform's error envelope with a status that fits.

It is one middleware, not four, because each aiohttp middleware adds a coroutine frame to
every request; the LLM router's proxy path shares this app.
"""

from __future__ import annotations

import hmac
import importlib
import logging
import math
import re
import time
import uuid
from typing import Any

from aiohttp import web

from workbench.api.envelope import dumps, error_body
from workbench.api.openapi import build_openapi
from workbench.api.ratelimit import RateLimiter
from workbench.api.routing import (
    REQUEST_ID_KEY,
    SETTINGS_KEY,
    ApiRouter,
    RouteSpec,
    make_aiohttp_handler,
    rate_for,
)
from workbench.config import Settings, load_settings
from workbench.errors import RateLimited, WorkbenchError

__all__ = ["OPENAPI_KEY", "ROUTER_MODULES", "ROUTES_KEY", "STARTED_AT_KEY", "create_app"]

logger = logging.getLogger(__name__)

#: Modules whose ``router`` is mounted, in order.
ROUTER_MODULES: tuple[str, ...] = (
    "workbench.api.system",
    "workbench.api.mcts",
    "workbench.api.optimize",
    "workbench.api.gpu",
)

ROUTES_KEY = web.AppKey("workbench_routes", list)
OPENAPI_KEY = web.AppKey("workbench_openapi", dict)
STARTED_AT_KEY = web.AppKey("workbench_started_at", float)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STATUS_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def _error(
    status: int,
    code: str,
    message: str,
    rid: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        text=dumps(error_body(code, message, rid, details)),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _token_ok(header: str | None, *tokens: str | None) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    given = header[7:].strip().encode()
    ok = False
    for token in tokens:
        # compare against every configured token so timing does not reveal which matched
        if token is not None and hmac.compare_digest(given, token.encode()):
            ok = True
    return ok


def _make_middleware(settings: Settings) -> Any:
    api_token = settings.api_token
    admin_token = settings.admin_token
    limit = settings.max_body_bytes

    @web.middleware
    async def frame(request: web.Request, handler: Any) -> web.StreamResponse:
        rid = request.headers.get("X-Request-Id")
        if rid is None or not _REQUEST_ID.match(rid):
            rid = str(uuid.uuid4())
        request[REQUEST_ID_KEY] = rid
        spec: RouteSpec | None = getattr(handler, "workbench_spec", None)
        try:
            length = request.content_length
            if length is not None and length > limit:
                return _error(
                    413,
                    "PAYLOAD_TOO_LARGE",
                    f"request body of {length} bytes exceeds the limit of {limit} bytes; "
                    "send less or raise WORKBENCH_MAX_BODY_BYTES",
                    rid,
                    {"limit": limit, "size": length},
                )
            public = spec is not None and spec.public
            auth = request.headers.get("Authorization")
            if api_token is not None and not public and not _token_ok(auth, api_token, admin_token):
                return _error(
                    401,
                    "UNAUTHORIZED",
                    "missing or invalid bearer token; send 'Authorization: Bearer <token>'",
                    rid,
                    headers={"WWW-Authenticate": 'Bearer realm="workbench"'},
                )
            if spec is not None and spec.admin and not _token_ok(auth, admin_token):
                why = (
                    "admin routes are disabled; set WORKBENCH_ADMIN_TOKEN to enable them"
                    if admin_token is None
                    else "this route needs the admin token: 'Authorization: Bearer <admin token>'"
                )
                return _error(403, "FORBIDDEN", why, rid)
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _STATUS_CODES.get(exc.status, "HTTP_ERROR")
            message = exc.reason
            if exc.status == 404:
                message = f"no route {request.method} {request.path}; see /openapi.json"
            elif exc.status == 405:
                message = f"method {request.method} is not allowed on {request.path}"
            elif exc.status == 413:
                message = f"request body exceeds the limit of {limit} bytes"
            response = _error(exc.status, code, message, rid)
        except WorkbenchError as exc:
            if exc.http_status >= 500:
                logger.warning("%s %s failed: %s", request.method, request.path, exc.message)
            response = _error(exc.http_status, exc.code, exc.message, rid, exc.details)
            if isinstance(exc, RateLimited):
                response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        except Exception:
            logger.exception("unhandled error in %s %s", request.method, request.path)
            response = _error(500, "INTERNAL_ERROR", "internal error; see the server log", rid)
        response.headers["X-Request-Id"] = rid
        return response

    return frame


def create_app(
    settings: Settings | None = None, *, routers: list[ApiRouter] | None = None
) -> web.Application:
    """Build the application.

    Args:
        settings: Service settings (default :func:`~workbench.config.load_settings`).
        routers: Routers to mount instead of those of :data:`ROUTER_MODULES` (tests).
    """
    settings = settings or load_settings()
    app = web.Application(
        middlewares=[_make_middleware(settings)], client_max_size=settings.max_body_bytes
    )
    app[SETTINGS_KEY] = settings
    app[STARTED_AT_KEY] = time.time()
    if routers is None:
        routers = [importlib.import_module(name).router for name in ROUTER_MODULES]
    specs: list[RouteSpec] = []
    for router in routers:
        for spec in router.routes:
            per_min = rate_for(spec, settings)
            limiter = (
                None if per_min is None else RateLimiter(per_min, name=f"{spec.method} {spec.path}")
            )
            app.router.add_route(spec.method, spec.path, make_aiohttp_handler(spec, limiter))
            specs.append(spec)
        app.on_startup.extend(router.on_startup)
        app.on_cleanup.extend(router.on_cleanup)
    app[ROUTES_KEY] = specs
    app[OPENAPI_KEY] = build_openapi(specs)
    return app
