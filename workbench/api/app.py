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

With several workers (:mod:`workbench.api.workers`) it first sends a request for a route of a
subsystem owned by another worker to that worker, and names the worker that answered in
``X-Workbench-Worker`` on every response.

It is one middleware, not five, because each aiohttp middleware adds a coroutine frame to
every request.

Each mounted subsystem's domain service is declared by a
:class:`~workbench.api.services.ServiceSpec`: its config is built (and so validated) when the
app is made, the service itself at start-up in the owning worker, and closed at clean-up.
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

from workbench.api.config import ApiConfig
from workbench.api.envelope import dumps, error_body
from workbench.api.openapi import build_openapi
from workbench.api.ratelimit import RateLimiter, SharedRateLimiter
from workbench.api.routing import (
    CLIENT_KEY,
    REQUEST_ID_KEY,
    SETTINGS_KEY,
    ApiRouter,
    RouteSpec,
    make_aiohttp_handler,
    rate_for,
)
from workbench.api.services import ServiceSpec, close_service, validate_services
from workbench.api.workers import (
    CLIENT_HEADER,
    WORKER_HEADER,
    ClientGone,
    Forwarder,
    WorkerInfo,
    assign_owners,
    is_internal,
)
from workbench.config import Settings, load_settings
from workbench.errors import WorkbenchError

__all__ = [
    "FORWARDER_KEY",
    "OPENAPI_KEY",
    "ROUTER_MODULES",
    "ROUTES_KEY",
    "STARTED_AT_KEY",
    "WORKER_KEY",
    "create_app",
    "mounted_services",
]

logger = logging.getLogger(__name__)

#: Modules whose ``router`` is mounted, in order.
ROUTER_MODULES: tuple[str, ...] = (
    "workbench.api.system",
    "workbench.api.mcts",
    "workbench.api.mcts_bridge",
    "workbench.api.optimize",
    "workbench.api.gpu",
    "workbench.api.cache",
    "workbench.api.analytics",
)

ROUTES_KEY = web.AppKey("workbench_routes", list)
OPENAPI_KEY = web.AppKey("workbench_openapi", dict)
STARTED_AT_KEY = web.AppKey("workbench_started_at", float)
WORKER_KEY = web.AppKey("workbench_worker", WorkerInfo)
FORWARDER_KEY = web.AppKey("workbench_forwarder", Forwarder)

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
    if not header:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":  # auth schemes are case-insensitive (RFC 9110 11.1)
        return False
    given = credentials.strip().encode()
    ok = False
    for token in tokens:
        # compare against every configured token so timing does not reveal which matched
        if token is not None and hmac.compare_digest(given, token.encode()):
            ok = True
    return ok


class _Refusal(Exception):
    """The frame refuses a request before any handler runs (size, token)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers


def _host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Whether a ``Host`` header (``name``, ``name:port``, ``[v6]:port``) names an allowed host."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return name in allowed


def _make_middleware(
    settings: Settings,
    api_config: ApiConfig,
    worker: WorkerInfo,
    owners: dict[str, int],
    forwarder: Forwarder | None,
) -> Any:
    api_token = settings.api_token
    admin_token = settings.admin_token
    limit = settings.max_body_bytes
    me = str(worker.index)
    # Without a token, answers are protected only by being on loopback: refuse Host names a
    # DNS-rebinding page would send. Requests between workers carry the client's Host.
    check_host = api_token is None and "*" not in api_config.allowed_hosts
    allowed_hosts = frozenset(api_config.allowed_hosts)

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
                raise _Refusal(
                    413,
                    "PAYLOAD_TOO_LARGE",
                    f"request body of {length} bytes exceeds the limit of {limit} bytes; "
                    "send less or raise WORKBENCH_MAX_BODY_BYTES",
                    {"limit": limit, "size": length},
                )
            if check_host and not _host_allowed(request.host, allowed_hosts):
                raise _Refusal(
                    403,
                    "FORBIDDEN",
                    f"Host {request.host!r} is not allowed while no API token is set; use "
                    "localhost or 127.0.0.1, add the name to [api] allowed_hosts, or set "
                    "WORKBENCH_API_TOKEN",
                )
            public = spec is not None and spec.public
            auth = request.headers.get("Authorization")
            if api_token is not None and not public and not _token_ok(auth, api_token, admin_token):
                raise _Refusal(
                    401,
                    "UNAUTHORIZED",
                    "missing or invalid bearer token; send 'Authorization: Bearer <token>'",
                    headers={"WWW-Authenticate": 'Bearer realm="workbench"'},
                )
            if spec is not None and spec.admin and not _token_ok(auth, admin_token):
                why = (
                    "admin routes are disabled; set WORKBENCH_ADMIN_TOKEN to enable them"
                    if admin_token is None
                    else "this route needs the admin token: 'Authorization: Bearer <admin token>'"
                )
                raise _Refusal(403, "FORBIDDEN", why)
            if forwarder is not None:
                forwarded = request.headers.get(CLIENT_HEADER)
                if forwarded is not None and is_internal(request):
                    request[CLIENT_KEY] = forwarded
                elif spec is not None and spec.service is not None:
                    owner = owners.get(spec.service.name, worker.index)  # none: per worker
                    if owner != worker.index:
                        # The owner's answer carries its own request id and worker headers.
                        return await forwarder.forward(request, owner, rid, spec.service.name)
            response = await handler(request)
        except _Refusal as exc:
            response = _error(exc.status, exc.code, exc.message, rid, exc.details, exc.headers)
        except ClientGone:
            logger.debug("client of %s %s went away", request.method, request.path)
            return web.Response(status=499)  # nobody reads it
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _STATUS_CODES.get(exc.status, "HTTP_ERROR")
            message = exc.reason
            if exc.status == 404:
                message = f"no route {request.method} {request.path}; see /openapi.json"
            elif exc.status == 405:
                allow = exc.headers.get("Allow", "")
                message = f"method {request.method} is not allowed on {request.path}; use {allow}"
            elif exc.status == 413:
                message = f"request body exceeds the limit of {limit} bytes"
            response = _error(exc.status, code, message, rid)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        except WorkbenchError as exc:
            if exc.http_status >= 500:
                logger.warning("%s %s failed: %s", request.method, request.path, exc.message)
            response = _error(exc.http_status, exc.code, exc.message, rid, exc.details)
            if exc.retry_after_s is not None:
                response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        except Exception:
            logger.exception("unhandled error in %s %s", request.method, request.path)
            response = _error(500, "INTERNAL_ERROR", "internal error; see the server log", rid)
        response.headers["X-Request-Id"] = rid
        response.headers[WORKER_HEADER] = me
        return response

    return frame


def _limiter(
    route: RouteSpec, per_min: float, config: ApiConfig, settings: Settings, worker: WorkerInfo
) -> RateLimiter | SharedRateLimiter:
    name = f"{route.method} {route.path}"
    local = per_min
    if route.service is None and worker.count > 1:
        # Served by every worker from its own buckets: each takes its share.
        local /= worker.count
    fallback = RateLimiter(local, name=name)
    if config.rate_limits == "redis":
        from workbench.redis_adapter import RedisAdapter

        return SharedRateLimiter(
            RedisAdapter.from_settings(settings), per_min, name=name, fallback=fallback
        )
    return fallback


def mounted_services(routers: list[ApiRouter]) -> list[ServiceSpec[Any, Any]]:
    """The distinct service specs of ``routers``, in mount order."""
    seen: dict[str, ServiceSpec[Any, Any]] = {}
    for router in routers:
        spec = router.service
        if spec is None:
            continue
        other = seen.setdefault(spec.name, spec)
        if other is not spec:
            raise ValueError(f"two different services are named {spec.name!r}")
    return list(seen.values())


def default_routers() -> list[ApiRouter]:
    """The routers of :data:`ROUTER_MODULES`."""
    return [importlib.import_module(name).router for name in ROUTER_MODULES]


def create_app(
    settings: Settings | None = None,
    *,
    routers: list[ApiRouter] | None = None,
    services: dict[str, Any] | None = None,
    worker: WorkerInfo | None = None,
) -> web.Application:
    """Build the application.

    Args:
        settings: Service settings (default :func:`~workbench.config.load_settings`).
        routers: Routers to mount instead of those of :data:`ROUTER_MODULES` (tests).
        services: Ready-made domain services by service name, used instead of building them
            (tests); they are still closed at clean-up.
        worker: This process's place among the server's workers (default: the only one).

    Raises:
        ConfigError: a subsystem's settings are invalid.
    """
    settings = settings or load_settings()
    worker = worker or WorkerInfo()
    if routers is None:
        routers = default_routers()
    specs = mounted_services(routers)
    api_config = ApiConfig.from_settings(settings)
    configs = validate_services(specs, settings)
    owners = assign_owners(
        [s.name for s in specs],
        worker.count,
        shared=[s.name for s in specs if s.per_worker],
    )
    forwarder = Forwarder(worker) if worker.count > 1 else None
    app = web.Application(
        middlewares=[_make_middleware(settings, api_config, worker, owners, forwarder)],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS_KEY] = settings
    app[STARTED_AT_KEY] = time.time()
    app[WORKER_KEY] = worker
    if forwarder is not None:
        app[FORWARDER_KEY] = forwarder
    routes: list[RouteSpec] = []
    for router in routers:
        for route in router.routes:
            per_min = rate_for(route, configs)
            limiter = None
            if per_min is not None:
                limiter = _limiter(route, per_min, api_config, settings, worker)
            app.router.add_route(route.method, route.path, make_aiohttp_handler(route, limiter))
            routes.append(route)
        app.on_startup.extend(router.on_startup)
        app.on_cleanup.extend(router.on_cleanup)
    app[ROUTES_KEY] = routes
    app[OPENAPI_KEY] = build_openapi(routes)
    given = dict(services or {})
    unknown = set(given) - set(configs)
    if unknown:
        raise ValueError(f"services {sorted(unknown)} are not mounted; mounted: {sorted(configs)}")
    owned = [s for s in specs if owners.get(s.name, worker.index) == worker.index]
    for spec in specs:
        app[spec.config_key] = configs[spec.name]

    async def start_services(app: web.Application) -> None:
        for spec in owned:
            if spec.name in given:
                app[spec.key] = given[spec.name]
            else:
                app[spec.key] = spec.build(configs[spec.name], settings)

    async def close_services(app: web.Application) -> None:
        for spec in reversed(owned):
            if spec.key in app:
                try:
                    await close_service(spec, app[spec.key])
                except Exception:
                    logger.exception("closing the %s service failed", spec.name)
        if forwarder is not None:
            await forwarder.close()

    app.on_startup.insert(0, start_services)
    app.on_cleanup.append(close_services)
    return app
