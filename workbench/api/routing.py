"""Declarative routes for the workbench HTTP service.

A subsystem declares its routes on an :class:`ApiRouter`; :func:`workbench.api.app.create_app`
mounts every router, and the OpenAPI document is generated from the same declarations, so the
two never drift apart::

    router = ApiRouter("/api/v1/ab-mcts", tag="ab-mcts")

    @router.post("/orchestrate", body=OrchestrateBody, summary="Choose agents for a request")
    async def orchestrate(req: ApiRequest) -> dict:
        return {"bestAction": ...}          # wrapped in the platform's success envelope

Handlers return data (wrapped in the envelope, or sent as plain JSON on an
``envelope=False`` router), a :class:`Reply` for another status or extra metadata, or any
aiohttp ``StreamResponse`` (sent as is). They raise :class:`~workbench.errors.WorkbenchError`
subclasses for failures; the app turns them into the error envelope with the class's status.
Request bodies and query strings are validated by pydantic models; a failure is a 400
``VALIDATION_ERROR`` naming each bad field.

Why a small layer of our own over aiohttp: aiohttp is the fastest Python HTTP stack measured
here for proxying, but has no request validation or OpenAPI; frameworks that do (FastAPI) run
on ASGI stacks that proxied at about half aiohttp's rate on this machine.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from workbench import metrics
from workbench.api.envelope import dumps, success_body
from workbench.api.ratelimit import RateLimiter, SharedRateLimiter
from workbench.api.services import ServiceSpec
from workbench.config import Settings
from workbench.errors import ConfigError, InputError, UnsupportedMediaType

__all__ = ["SETTINGS_KEY", "ApiRequest", "ApiRouter", "Reply", "RouteSpec"]

SETTINGS_KEY = web.AppKey("workbench_settings", Settings)
REQUEST_ID_KEY = web.RequestKey("workbench_request_id", str)
#: The client a request is accounted to (its peer, or the original peer of a forwarded one).
CLIENT_KEY = web.RequestKey("workbench_client", str)

Handler = Callable[["ApiRequest"], Awaitable[Any]]
Hook = Callable[[web.Application], Awaitable[None]]

_REQUESTS = metrics.counter(
    "workbench_api_requests_total",
    "HTTP requests handled, by route and status",
    ["route", "method", "status"],
)
_LATENCY = metrics.histogram(
    "workbench_api_request_duration_seconds", "Time spent in route handlers", ["route", "method"]
)


@dataclass(frozen=True)
class Reply:
    """A handler result with a non-default status or extra envelope metadata.

    Attributes:
        data: The payload (``data`` member of the envelope, or the whole body when raw).
        status: HTTP status code.
        meta: Extra members of ``metadata`` (the platform puts ``message`` there).
        headers: Extra response headers.
    """

    data: Any
    status: int = 200
    meta: dict[str, Any] | None = None
    headers: dict[str, str] | None = None


class ApiRequest:
    """What a handler receives: the validated body and query, and the request's context."""

    __slots__ = ("body", "query", "request")

    def __init__(self, request: web.Request, body: Any, query: Any) -> None:
        self.request = request
        self.body = body
        self.query = query

    @property
    def app(self) -> web.Application:
        return self.request.app

    @property
    def path(self) -> dict[str, str]:
        return dict(self.request.match_info)

    @property
    def request_id(self) -> str:
        return str(self.request.get(REQUEST_ID_KEY, ""))

    @property
    def settings(self) -> Settings:
        return self.request.app[SETTINGS_KEY]


@dataclass(frozen=True)
class RouteSpec:
    """One declared route (used to mount it and to describe it in OpenAPI)."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    envelope: bool
    admin: bool
    public: bool
    status: int
    description: str = ""
    responses: dict[int, str] = field(default_factory=dict)
    rate_limit: float | None = None
    rate_setting: str | None = None
    service: ServiceSpec[Any, Any] | None = None
    media_type: str = "application/json"
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    path_params: dict[str, str] = field(default_factory=dict)


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


#: Deepest nesting of arrays and objects accepted in a request body.
MAX_JSON_DEPTH = 64


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _normalise(doc: Any) -> Any:
    """Check ``doc``'s nesting depth and turn whole floats (``6.0``) into ints.

    JSON Schema's ``integer`` includes ``6.0``, which pydantic's strict mode would refuse;
    float fields take ints, so nothing else changes. Iterative, so depth costs no stack.
    """
    if not isinstance(doc, dict | list):
        return doc
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InputError(
                f"request body is nested deeper than {MAX_JSON_DEPTH} levels; flatten it",
                details=[{"field": "body", "message": f"at most {MAX_JSON_DEPTH} levels"}],
            )
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise InputError(
                        f"request body holds a number too large for a float ({key!r}); "
                        "send a finite number",
                        details=[{"field": str(key), "message": "must be finite"}],
                    )
                if value.is_integer():
                    node[key] = int(value)
            elif isinstance(value, dict | list):
                stack.append((value, depth + 1))
    return doc


def parse_body(model: type[BaseModel], content_type: str | None, raw: bytes) -> Any:
    """Validate a request body against ``model``, strictly.

    The body must be declared ``application/json`` (or another ``+json`` type; 415 otherwise,
    so a web page cannot post form or plain-text bodies to a token-less local server), must
    be present (an empty body is not ``{}``), nested at most :data:`MAX_JSON_DEPTH` levels,
    and is validated in pydantic's strict mode: ``false`` is no number, ``"5"`` no integer,
    ``NaN`` and infinities are no JSON at all. Whole floats count as integers, as in JSON
    Schema.

    Raises:
        UnsupportedMediaType: not a JSON media type.
        InputError: no body, invalid JSON, or a field that does not validate (each named).
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    json_like = media.startswith("application/") and media.endswith("+json")
    if media != "application/json" and not json_like:
        raise UnsupportedMediaType(
            f"request body has Content-Type {content_type or 'none'!r}; send "
            "'Content-Type: application/json' with a JSON object",
            details=[{"field": "Content-Type", "message": "must be application/json"}],
        )
    if not raw.strip():
        raise InputError(
            "request body is empty; send a JSON object (at least {})",
            details=[{"field": "body", "message": "a JSON object is required"}],
        )
    try:
        doc = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise InputError(
            f"request body is nested deeper than {MAX_JSON_DEPTH} levels; flatten it",
            details=[{"field": "body", "message": f"at most {MAX_JSON_DEPTH} levels"}],
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(
            f"request body is not valid JSON ({exc}); send a JSON object",
            details=[{"field": "body", "message": "invalid JSON"}],
        ) from None
    if not isinstance(doc, dict):
        raise InputError(
            f"request body is a JSON {type(doc).__name__}; send a JSON object",
            details=[{"field": "body", "message": "must be a JSON object"}],
        )
    canonical = json.dumps(_normalise(doc), allow_nan=False)
    try:
        return model.model_validate_json(canonical, strict=True)
    except ValidationError as exc:
        raise validation_error(exc, "body") from None


def validation_error(exc: ValidationError, where: str) -> InputError:
    """An InputError naming every bad field of a pydantic failure."""
    problems = [
        {"field": _field_path(e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return InputError(
        f"invalid {where} field '{first['field']}': {first['message']}{more}",
        details=problems,
    )


class ApiRouter:
    """Routes of one subsystem under a common prefix.

    Args:
        prefix: Path prefix, e.g. ``"/api/v1/ab-mcts"`` (``""`` for top-level routes).
        tag: OpenAPI tag grouping the routes.
        envelope: Wrap results in the platform's envelope (``False`` for raw-shape routers).
        service: The subsystem's domain service (see :mod:`workbench.api.services`); its
            routes are served by the worker that owns it.
    """

    def __init__(
        self,
        prefix: str,
        *,
        tag: str,
        envelope: bool = True,
        service: ServiceSpec[Any, Any] | None = None,
    ) -> None:
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError(f"router prefix {prefix!r} must start and not end with '/'")
        self.prefix = prefix
        self.tag = tag
        self.envelope = envelope
        self.service = service
        self.routes: list[RouteSpec] = []
        self.on_startup: list[Hook] = []
        self.on_cleanup: list[Hook] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        admin: bool = False,
        public: bool = False,
        envelope: bool | None = None,
        status: int = 200,
        description: str = "",
        responses: dict[int, str] | None = None,
        rate_limit: float | None = None,
        rate_setting: str | None = None,
        media_type: str = "application/json",
        links: dict[str, dict[str, Any]] | None = None,
        path_params: dict[str, str] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare a route; see the module docstring. ``public`` routes need no token.

        ``rate_limit`` (requests a minute per client, see :mod:`workbench.api.ratelimit`)
        limits the route; ``rate_setting`` names the field of the router's service config
        that overrides it, where 0 turns the limit off. ``links`` are OpenAPI links of the
        success response (``{name: {"operationId": ..., "parameters": {...}}}``), which tell
        clients and fuzzers how one route's answer feeds another's path or body.
        ``path_params`` gives a regular expression per path parameter for the OpenAPI
        document; the handler still validates it (a 400 naming the parameter).
        """
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError(f"rate_limit must be > 0, got {rate_limit}")

        limited = {} if rate_limit is None else {429: "rate limit reached; see Retry-After"}

        def register(handler: Handler) -> Handler:
            self.routes.append(
                RouteSpec(
                    method=method.upper(),
                    path=self.prefix + path,
                    handler=handler,
                    summary=summary,
                    tag=self.tag,
                    body=body,
                    query=query,
                    envelope=self.envelope if envelope is None else envelope,
                    admin=admin,
                    public=public,
                    status=status,
                    description=description or (handler.__doc__ or "").strip(),
                    responses={**(responses or {}), **limited},
                    rate_limit=rate_limit,
                    rate_setting=rate_setting,
                    service=self.service,
                    media_type=media_type,
                    links=dict(links or {}),
                    path_params=dict(path_params or {}),
                )
            )
            return handler

        return register

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)


def rate_for(spec: RouteSpec, configs: Mapping[str, Any] | None = None) -> float | None:
    """The route's requests a minute per client (``None``: unlimited).

    ``spec.rate_setting`` names a field of the route's service config (validated with the
    rest of it), whose value overrides ``spec.rate_limit``; 0 turns the limit off.
    """
    if spec.rate_limit is None:
        return None
    value = spec.rate_limit
    if spec.rate_setting:
        if spec.service is None or configs is None or spec.service.name not in configs:
            raise ConfigError(
                f"route {spec.method} {spec.path}: rate_setting={spec.rate_setting!r} needs "
                "the router's service config"
            )
        value = float(getattr(configs[spec.service.name], spec.rate_setting))
    return value if value > 0 else None


def make_aiohttp_handler(
    spec: RouteSpec, limiter: RateLimiter | SharedRateLimiter | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a declared handler: rate-limit, validate input, call it, encode the result,
    record metrics."""
    latency = _LATENCY.labels(spec.path, spec.method)
    counters: dict[int, Any] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            if limiter is not None:
                limiter.check(request.get(CLIENT_KEY) or request.remote or "unknown")
            body = None
            if spec.body is not None:
                body = parse_body(
                    spec.body, request.headers.get("Content-Type"), await request.read()
                )
            query = None
            if spec.query is not None:
                try:
                    query = spec.query.model_validate(dict(request.query))
                except ValidationError as exc:
                    raise validation_error(exc, "query") from None
            result = await spec.handler(ApiRequest(request, body, query))
            response = render_result(result, request, spec.envelope, spec.status)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except Exception as exc:
            status = int(getattr(exc, "http_status", 500))
            raise
        finally:
            latency.observe(time.perf_counter() - start)
            counter = counters.get(status)
            if counter is None:
                counter = counters[status] = _REQUESTS.labels(spec.path, spec.method, str(status))
            counter.inc()

    handle.__name__ = getattr(spec.handler, "__name__", "handler")
    handle.workbench_spec = spec  # type: ignore[attr-defined]
    return handle


def render_result(
    result: Any, request: web.Request, envelope: bool, status: int
) -> web.StreamResponse:
    """Turn a handler's return value into a response."""
    if isinstance(result, web.StreamResponse):
        return result
    headers = None
    meta = None
    if isinstance(result, Reply):
        status, meta, headers, result = result.status, result.meta, result.headers, result.data
    payload = (
        success_body(result, str(request.get(REQUEST_ID_KEY, "")), meta) if envelope else result
    )
    return web.Response(
        text=dumps(payload), status=status, content_type="application/json", headers=headers
    )
