"""The platform's fast-coordinator routes, the admin reload and their OpenAPI document.

The platform's TypeScript router (``/api/v1/fast-coordinator``) asked a small model, or a
heuristic scoring the whole routing *prompt*, which backend should handle a request, and
reported constant figures. Here the same routes stand on the router itself:

- ``POST routing-decision`` ``{userRequest, context?}``: the rule table
  (:func:`workbench.router.rules.decide`) on the user's text, the model the target maps to
  and the backend the router's strategy picks for it now; ``executionTime`` is measured.
- ``POST execute`` ``{userRequest, context?, maxTokens?, temperature?}``: the same decision,
  then a real chat completion through the proxy's own path
  (:meth:`~workbench.router.server.RouterService.forward`: plan, retries, fallback, breakers).
- ``POST coordinate-agents`` ``{primaryTask, supportingTasks?}``: the primary task (urgency
  high, accuracy required) and up to :data:`MAX_SUPPORTING_TASKS` supporting ones, executed
  at once.
- ``GET status``: measured figures only: routing time (median and p95 of the decisions this
  process made, from a uniform reservoir of :data:`RESERVOIR_SIZE`), each backend's state
  from :meth:`Router.snapshot`, requests served by route, uptime.
- ``POST benchmark`` ``{testRequests}``: the decision for each (no backend is called), timed.
- ``POST feedback`` ``{requestId, success?, quality?, rating?}``: :meth:`Router.feedback`
  for a request ``execute`` answered, counted once per id (again: 200 with
  ``counted: false``; an id this router never finished or has forgotten: 404).
- ``lfm2/quick``, ``optimize``, ``auto-tune``: 501, saying what is missing.

``POST /admin/reload`` reloads the configuration file the router was started with, as
SIGHUP does: requests in flight finish on the old backends. A file that does not load
answers 409 naming the bad key and keeps the configuration in force. Under
``--workers K > 1`` the worker that got the request checks the file, then signals the
supervising process, which reloads every worker (202).

**Model mapping.** A decision's target (``lfm2``, ``ollama``, ``lm-studio``, ``openai``,
``anthropic``) is sent to a model or alias found by the capability tags of
:data:`~workbench.router.rules.TIER_TAGS` (``lm-studio`` -> ``code``; ``lfm2`` -> ``fast``,
then ``small``; ...): for the first tag that some backend carries, the first name (models,
then aliases, in config order) of such a backend that only tagged backends serve, else that
backend's first model. With no tagged backend, the router's default model (the first
backend's first model). The request is then routed for that name like any other.

**Auth.** With ``WORKBENCH_API_TOKEN`` set, every platform route wants
``Authorization: Bearer <token>`` (the admin token is accepted too) and answers 401
otherwise; without it, the router's client keys are wanted as on ``/v1/*`` (401), and with
no client keys either, only loopback clients naming a loopback ``Host`` are served (403).
The admin route wants ``WORKBENCH_ADMIN_TOKEN`` and is disabled (403) while it is unset.

Bodies are JSON objects (415 otherwise) of at most :data:`MAX_BODY_BYTES`; every field is
checked, and a bad one answers 400 ``{success: false, error: {code, message, field}}``
naming it. Counters and the reservoir belong to one worker process.

The wire shapes (camelCase, the envelope) live here rather than in ``workbench.api``: the
router is its own service and a subsystem does not import the API layer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
import math
import multiprocessing
import os
import random
import signal
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from workbench import metrics
from workbench.config import load_settings
from workbench.errors import WorkbenchError
from workbench.router._body import BodyTooLarge, read_limited
from workbench.router._net import is_loopback as _is_loopback
from workbench.router.config import RouterConfig, load_config
from workbench.router.rules import (
    COMPLEXITIES,
    RULES,
    TIER_TAGS,
    URGENCIES,
    RuleContext,
    RuleDecision,
    decide,
)

if TYPE_CHECKING:
    from workbench.router.server import RouterService

__all__ = [
    "MAX_BENCHMARK_REQUESTS",
    "MAX_BODY_BYTES",
    "MAX_REQUEST_CHARS",
    "MAX_SUPPORTING_TASKS",
    "PREFIX",
    "RESERVOIR_SIZE",
    "PlatformRoutes",
    "TimingReservoir",
    "add_platform_routes",
    "target_model",
]

logger = logging.getLogger(__name__)

PREFIX = "/api/v1/fast-coordinator"
ADMIN_RELOAD = "/admin/reload"
#: Largest request body of a platform route (413 above).
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Longest ``userRequest`` or task, in characters.
MAX_REQUEST_CHARS = 32_000
#: Most supporting tasks of one ``coordinate-agents`` call.
MAX_SUPPORTING_TASKS = 8
#: Most requests of one ``benchmark`` call, and the longest of them in characters.
MAX_BENCHMARK_REQUESTS = 100
MAX_BENCHMARK_CHARS = 2_000
#: Routing times kept for ``status`` (a uniform sample of all decisions made).
RESERVOIR_SIZE = 1024
COORDINATOR = "fast-llm"
#: Targets the platform counted as local (``shouldUseLocal``).
LOCAL_TARGETS = frozenset({"lfm2", "ollama"})
TARGETS = tuple(dict.fromkeys([r.target for r in RULES] + ["ollama"]))
RESPONSE_LENGTHS = ("short", "medium", "long")
_JSON = "application/json"
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_ROUTES = (
    "routing-decision",
    "execute",
    "coordinate-agents",
    "status",
    "benchmark",
    "feedback",
    "lfm2/quick",
    "optimize",
    "auto-tune",
)
_METHODS = {name: ("GET" if name == "status" else "POST") for name in _ROUTES}

_REQUESTS = metrics.counter(
    "workbench_router_platform_requests_total",
    "Platform (fast-coordinator and admin) requests by route and status",
    ["route", "status"],
)
_DECISION = metrics.histogram(
    "workbench_router_platform_decision_seconds",
    "Seconds one routing decision took (rule table, model mapping, backend pick)",
    buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1),
)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000.0:.3f}ms"


def _ok(data: Any, *, status: int = 200) -> web.Response:
    body = {"success": True, "data": data, "metadata": {"timestamp": _now()}}
    return web.Response(status=status, body=orjson.dumps(body), content_type=_JSON)


def _fail(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {
        "success": False,
        "error": {"code": code, "message": message, "field": field, "details": details},
        "metadata": {"timestamp": _now()},
    }
    return web.Response(status=status, body=orjson.dumps(body), content_type=_JSON, headers=headers)


class _Invalid(Exception):
    """A request field that does not validate (400 naming it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


# -- request fields ------------------------------------------------------------------------


def _get(doc: Mapping[str, Any], key: str, where: str, required: bool) -> Any:
    if key not in doc:
        if required:
            raise _Invalid(where, f"{where} is required")
        return None
    value = doc[key]
    if value is None:
        raise _Invalid(where, f"{where} must not be null (leave it out instead)")
    return value


def _text(
    doc: Mapping[str, Any], key: str, where: str, *, required: bool, max_chars: int
) -> str | None:
    value = _get(doc, key, where, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(where, f"{where} must be a string, not {type(value).__name__}")
    if not 1 <= len(value) <= max_chars:
        raise _Invalid(where, f"{where} must be 1 to {max_chars} characters, got {len(value)}")
    return value


def _required(doc: Mapping[str, Any], key: str, where: str, max_chars: int) -> str:
    value = _text(doc, key, where, required=True, max_chars=max_chars)
    if value is None:  # _text refuses a missing required field; this keeps mypy sure of it
        raise _Invalid(where, f"{where} is required")
    return value


def _flag(doc: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = _get(doc, key, where, False)
    if value is not None and not isinstance(value, bool):
        raise _Invalid(where, f"{where} must be true or false")
    return value


def _choice(doc: Mapping[str, Any], key: str, where: str, options: tuple[str, ...]) -> str | None:
    value = _get(doc, key, where, False)
    if value is not None and value not in options:
        raise _Invalid(where, f"{where} must be one of {', '.join(options)}, got {value!r}")
    return value


def _number(doc: Mapping[str, Any], key: str, where: str, lo: float, hi: float) -> float | None:
    value = _get(doc, key, where, False)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not lo <= value <= hi
    ):
        raise _Invalid(where, f"{where} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _integer(doc: Mapping[str, Any], key: str, where: str, lo: int, hi: int) -> int | None:
    value = _get(doc, key, where, False)
    if value is None:
        return None
    # Whole floats are integers, as in JSON Schema.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _Invalid(where, f"{where} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _context(doc: Mapping[str, Any], key: str = "context") -> RuleContext:
    """The platform's ``CoordinationContext`` as a :class:`RuleContext`.

    ``taskType`` and ``complexity`` are checked and otherwise informational: complexity is
    estimated from the text, as the rule table defines it.
    """
    raw = _get(doc, key, key, False)
    if raw is None:
        return RuleContext()
    if not isinstance(raw, dict):
        raise _Invalid(key, f"{key} must be an object")
    _text(raw, "taskType", f"{key}.taskType", required=False, max_chars=64)
    _choice(raw, "complexity", f"{key}.complexity", COMPLEXITIES)
    urgency = _choice(raw, "urgency", f"{key}.urgency", URGENCIES)
    length = _choice(
        raw, "expectedResponseLength", f"{key}.expectedResponseLength", RESPONSE_LENGTHS
    )
    creative = _flag(raw, "requiresCreativity", f"{key}.requiresCreativity")
    accurate = _flag(raw, "requiresAccuracy", f"{key}.requiresAccuracy")
    return RuleContext(
        urgency=urgency or "medium",
        requires_creativity=bool(creative),
        requires_accuracy=bool(accurate),
        expected_long=length == "long",
    )


# -- measurements --------------------------------------------------------------------------


class TimingReservoir:
    """A uniform sample of at most ``size`` timings (Vitter's algorithm R) and their count.

    Args:
        size: Timings kept.
        rng: Random source of the replacement (seeded by tests).
    """

    def __init__(self, size: int = RESERVOIR_SIZE, *, rng: random.Random | None = None) -> None:
        if size < 1:
            raise ValueError(f"size={size!r}: must be >= 1")
        self.size = size
        self.count = 0
        self._sample: list[float] = []
        self._rng = rng or random.Random()

    def add(self, value: float) -> None:
        """Record one timing."""
        self.count += 1
        if len(self._sample) < self.size:
            self._sample.append(value)
            return
        j = self._rng.randrange(self.count)
        if j < self.size:
            self._sample[j] = value

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of the sample (linear interpolation), None when empty."""
        return _quantile(sorted(self._sample), q)

    def summary(self) -> dict[str, Any]:
        """``{decisions, samples, medianMs, p95Ms}`` (timings are in milliseconds)."""
        ordered = sorted(self._sample)
        return {
            "decisions": self.count,
            "samples": len(ordered),
            "medianMs": _quantile(ordered, 0.5),
            "p95Ms": _quantile(ordered, 0.95),
        }


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# -- the model a target goes to ------------------------------------------------------------


def target_model(config: RouterConfig, target: str) -> tuple[str, str]:
    """The model or alias a rule target is sent to, and why (module doc, *Model mapping*).

    Returns:
        ``(name, source)``: source is ``"tag '<tag>'"`` or ``"default"``.
    """
    for tag in TIER_TAGS.get(target, ()):
        tagged = [b for b in config.backends if tag in b.tags]
        if not tagged:
            continue
        for backend in tagged:
            for name in backend.names:
                servers = [b for b in config.backends if name in b.names]
                if all(tag in b.tags for b in servers):
                    return name, f"tag {tag!r}"
        return tagged[0].models[0], f"tag {tag!r}"
    return config.backends[0].models[0], "default"


def _loopback_host_header(host: str) -> bool:
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return name in _LOOPBACK_NAMES or _is_loopback(name)


def _bearer(request: web.Request) -> bytes | None:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return None
    return auth[7:].strip().encode()


def _matches(given: bytes | None, token: str | None) -> bool:
    return given is not None and token is not None and hmac.compare_digest(given, token.encode())


Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.Response]]


class PlatformRoutes:
    """The platform routes of one router process (module doc).

    Args:
        service: The proxy whose configuration, router and forwarding path they use.
        api_token: ``WORKBENCH_API_TOKEN`` (``None``: the router's client keys, or loopback
            clients only when it has none).
        admin_token: ``WORKBENCH_ADMIN_TOKEN`` (``None``: the admin route answers 403).
        config_path: The file the router was started from (``None``: reload answers 409).
        clock: Monotonic seconds (uptime).
        rng: Random source of the timing reservoir.
    """

    def __init__(
        self,
        service: RouterService,
        *,
        api_token: str | None,
        admin_token: str | None,
        config_path: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.service = service
        self._api_token = api_token
        self._admin_token = admin_token
        self.config_path = None if config_path is None else str(config_path)
        self._clock = clock
        self._started = clock()
        self.timings = TimingReservoir(rng=rng)
        self.served: dict[str, int] = dict.fromkeys([*_ROUTES, "admin/reload"], 0)
        self._counted: OrderedDict[str, None] = OrderedDict()
        self._mapping: tuple[RouterConfig, dict[str, tuple[str, str]]] | None = None
        from workbench.router.platform_openapi import openapi_document

        self._document = orjson.dumps(openapi_document())

    def mount(self, app: web.Application) -> None:
        """Add the routes to ``app`` (``/api/v1/fast-coordinator/*``, ``/admin/reload``,
        ``/openapi.json``)."""
        handlers: dict[str, Handler] = {
            "routing-decision": self.routing_decision,
            "execute": self.execute,
            "coordinate-agents": self.coordinate_agents,
            "status": self.status,
            "benchmark": self.benchmark,
            "feedback": self.feedback,
            "lfm2/quick": self.not_implemented,
            "optimize": self.not_implemented,
            "auto-tune": self.not_implemented,
        }
        r = app.router
        for name, fn in handlers.items():
            body = _METHODS[name] == "POST" and name not in ("lfm2/quick", "optimize", "auto-tune")
            r.add_route(_METHODS[name], f"{PREFIX}/{name}", self._wrap(name, fn, body=body))
        r.add_post(ADMIN_RELOAD, self._wrap("admin/reload", self.reload, body=False, admin=True))
        r.add_route("*", ADMIN_RELOAD, self._unknown)
        r.add_route("*", PREFIX + "/{tail:.*}", self._unknown)
        r.add_get("/openapi.json", self._openapi)

    # -- the frame every route shares --------------------------------------------------------

    def _wrap(self, name: str, fn: Handler, *, body: bool, admin: bool = False) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            resp = self._denied(request, admin=admin)
            if resp is None:
                doc: dict[str, Any] | web.Response = {}
                if body:
                    doc = await self._read(request)
                if isinstance(doc, web.Response):
                    resp = doc
                else:
                    try:
                        resp = await fn(request, doc)
                    except _Invalid as exc:
                        resp = _fail(400, "VALIDATION_ERROR", exc.message, field=exc.field)
            self.served[name] += 1
            _REQUESTS.labels(name, str(resp.status)).inc()
            return resp

        return handle

    def _denied(self, request: web.Request, *, admin: bool) -> web.Response | None:
        given = _bearer(request)
        challenge = {"WWW-Authenticate": 'Bearer realm="workbench-router"'}
        if admin:
            if self._admin_token is None:
                return _fail(
                    403,
                    "FORBIDDEN",
                    "admin routes are disabled; set WORKBENCH_ADMIN_TOKEN to enable them",
                )
            if _matches(given, self._admin_token):
                return None
            if _matches(given, self._api_token):
                return _fail(
                    403, "FORBIDDEN", "this route needs the admin token, not the API token"
                )
            return _fail(
                401,
                "UNAUTHORIZED",
                "missing or invalid admin token; send 'Authorization: Bearer <admin token>'",
                headers=challenge,
            )
        if self._api_token is not None:
            if _matches(given, self._api_token) or _matches(given, self._admin_token):
                return None
            return _fail(
                401,
                "UNAUTHORIZED",
                "missing or invalid bearer token; send 'Authorization: Bearer <token>'",
                headers=challenge,
            )
        keys = self.service.config.client_keys
        if keys:
            # No API token but client keys: the /v1 rule, so no key-less path to the backends.
            ok = False
            for key in keys:
                ok |= _matches(given, key)
            if ok:
                return None
            return _fail(
                401,
                "UNAUTHORIZED",
                "missing or invalid client key; send 'Authorization: Bearer <key>'",
                headers=challenge,
            )
        if not _is_loopback(request.remote):
            return _fail(
                403,
                "FORBIDDEN",
                "no WORKBENCH_API_TOKEN is set, so these routes serve loopback clients only",
            )
        if not _loopback_host_header(request.host):
            return _fail(
                403,
                "FORBIDDEN",
                f"Host {request.host!r} is not a loopback name while no WORKBENCH_API_TOKEN is "
                "set; use localhost or 127.0.0.1, or set the token",
            )
        return None

    async def _read(self, request: web.Request) -> dict[str, Any] | web.Response:
        media = request.content_type.lower()
        if media != _JSON and not (media.startswith("application/") and media.endswith("+json")):
            return _fail(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"request body has Content-Type {request.content_type!r}; send "
                "'Content-Type: application/json' with a JSON object",
                field="Content-Type",
            )
        try:
            raw = await read_limited(request, MAX_BODY_BYTES)
        except BodyTooLarge as exc:
            return _too_large(exc.size)
        except (ConnectionError, asyncio.IncompleteReadError):
            return _fail(400, "BAD_REQUEST", "the request body could not be read", field="body")
        if not raw.strip():
            return _fail(
                400, "VALIDATION_ERROR", "request body is empty; send a JSON object", field="body"
            )
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _fail(
                400, "VALIDATION_ERROR", f"request body is not valid JSON: {exc}", field="body"
            )
        if not isinstance(doc, dict):
            return _fail(
                400,
                "VALIDATION_ERROR",
                f"request body is a JSON {type(doc).__name__}; send a JSON object",
                field="body",
            )
        return doc

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == ADMIN_RELOAD:
            return _fail(
                405,
                "METHOD_NOT_ALLOWED",
                f"{request.method} is not allowed on {path}; use POST",
                headers={"Allow": "POST"},
            )
        name = path.removeprefix(PREFIX + "/")
        if name in _METHODS:
            allowed = _METHODS[name]
            return _fail(
                405,
                "METHOD_NOT_ALLOWED",
                f"{request.method} is not allowed on {path}; use {allowed}",
                headers={"Allow": allowed},
            )
        return _fail(
            404,
            "NOT_FOUND",
            f"no route {request.method} {path}; GET /openapi.json lists the routes",
        )

    async def _openapi(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._document, content_type=_JSON)

    # -- decisions -------------------------------------------------------------------------

    def _model_for(self, target: str) -> tuple[str, str]:
        config = self.service.config
        if self._mapping is None or self._mapping[0] is not config:
            self._mapping = (config, {t: target_model(config, t) for t in TARGETS})
        found = self._mapping[1].get(target)
        return found if found is not None else target_model(config, target)

    def _decide(self, text: str, ctx: RuleContext) -> tuple[dict[str, Any], str, float]:
        """The decision for ``text`` (the wire shape), its model, and the seconds it took.

        Timed: the rule table, the model mapping and the backend pick (:meth:`Router.plan`,
        which advances round-robin as a real request would).
        """
        t0 = time.perf_counter()
        decision = decide(text, ctx)
        model, source = self._model_for(decision.target)
        plan = self.service.router.plan(model, text=text)
        backend = plan[0].name if plan else None
        elapsed = time.perf_counter() - t0
        self.timings.add(elapsed * 1000.0)
        _DECISION.observe(elapsed)
        return _decision_wire(decision, model, source, backend), model, elapsed

    async def _run(
        self,
        request: web.Request,
        text: str,
        ctx: RuleContext,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        request_id: str | None = None,
    ) -> tuple[int, dict[str, Any], Mapping[str, str]]:
        """Decide and forward one chat completion: ``(status, result, headers)``."""
        t0 = time.perf_counter()
        decision, model, routing_s = self._decide(text, ctx)
        rid = request_id or uuid.uuid4().hex
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        resp = await self.service.forward(request, "chat", orjson.dumps(body), body, request_id=rid)
        elapsed = time.perf_counter() - t0
        raw = resp.body if isinstance(resp, web.Response) else None
        doc: Any = None
        if isinstance(raw, bytes):
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                doc = None
        meta = {
            "routingDecision": decision,
            "routingTime": _ms(routing_s),
            "routingTimeMs": routing_s * 1000.0,
            "executionTime": _ms(elapsed),
            "executionTimeMs": elapsed * 1000.0,
            "serviceUsed": resp.headers.get("x-workbench-backend"),
            "model": model,
            "requestId": rid,
            "timestamp": _now(),
            "coordinator": COORDINATOR,
        }
        if resp.status == 200 and isinstance(doc, dict):
            usage = doc.get("usage")
            tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
            meta["tokensUsed"] = tokens if isinstance(tokens, int) else 0
            return 200, {"success": True, "response": _content(doc), "metadata": meta}, {}
        error = doc.get("error") if isinstance(doc, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        status = resp.status if resp.status >= 400 else 502
        meta["tokensUsed"] = 0
        failure = {
            "status": status,
            "code": "UPSTREAM_REJECTED" if status < 500 else "UPSTREAM_FAILED",
            "message": message if isinstance(message, str) else f"HTTP {resp.status}",
        }
        headers = {k: v for k, v in resp.headers.items() if k.lower() == "retry-after"}
        return status, {"success": False, "error": failure, "metadata": meta}, headers

    # -- handlers --------------------------------------------------------------------------

    async def routing_decision(self, request: web.Request, doc: dict[str, Any]) -> web.Response:
        text = _required(doc, "userRequest", "userRequest", MAX_REQUEST_CHARS)
        ctx = _context(doc)
        decision, _, elapsed = self._decide(text, ctx)
        meta = {
            "executionTime": _ms(elapsed),
            "executionTimeMs": elapsed * 1000.0,
            "timestamp": _now(),
            "coordinator": COORDINATOR,
        }
        return _ok({"decision": decision, "metadata": meta})

    async def execute(self, request: web.Request, doc: dict[str, Any]) -> web.Response:
        text = _required(doc, "userRequest", "userRequest", MAX_REQUEST_CHARS)
        ctx = _context(doc)
        max_tokens = _integer(doc, "maxTokens", "maxTokens", 1, 32_768)
        temperature = _number(doc, "temperature", "temperature", 0.0, 2.0)
        rid = request.headers.get("x-request-id", "")
        if not 0 < len(rid) <= 128 or not rid.isprintable():
            rid = uuid.uuid4().hex
        status, result, headers = await self._run(
            request, text, ctx, max_tokens=max_tokens, temperature=temperature, request_id=rid
        )
        if status == 200:
            return _ok({"response": result["response"], "metadata": result["metadata"]})
        error = result["error"]
        return _fail(
            status,
            error["code"],
            error["message"],
            details={"metadata": result["metadata"]},
            headers=headers,
        )

    async def coordinate_agents(self, request: web.Request, doc: dict[str, Any]) -> web.Response:
        primary = _required(doc, "primaryTask", "primaryTask", MAX_REQUEST_CHARS)
        raw = _get(doc, "supportingTasks", "supportingTasks", False)
        supporting: list[str] = []
        if raw is not None:
            if not isinstance(raw, list):
                raise _Invalid("supportingTasks", "supportingTasks must be a list of strings")
            if len(raw) > MAX_SUPPORTING_TASKS:
                raise _Invalid(
                    "supportingTasks",
                    f"supportingTasks has {len(raw)} tasks; at most {MAX_SUPPORTING_TASKS}",
                )
            for i, item in enumerate(raw):
                where = f"supportingTasks[{i}]"
                task = _required({"t": item}, "t", where, MAX_REQUEST_CHARS)
                supporting.append(task)
        t0 = time.perf_counter()
        # The platform's contexts: the primary task urgent and exact, the others simple.
        runs = [self._run(request, primary, RuleContext(urgency="high", requires_accuracy=True))]
        runs += [self._run(request, task, RuleContext()) for task in supporting]
        outcomes = await asyncio.gather(*runs)
        elapsed = time.perf_counter() - t0
        results = [result for _, result, _ in outcomes]
        used = sorted(
            {r["metadata"]["serviceUsed"] for r in results if r["metadata"]["serviceUsed"]}
        )
        data = {
            "primary": results[0],
            "supporting": results[1:],
            "coordination": {
                "totalExecutionTime": _ms(elapsed),
                "totalExecutionTimeMs": elapsed * 1000.0,
                "fastDecisions": len(results),
                "servicesUsed": used,
                "succeeded": sum(1 for r in results if r["success"]),
            },
            "metadata": {"timestamp": _now(), "coordinator": COORDINATOR},
        }
        status, primary_result, headers = outcomes[0]
        if status == 200:
            return _ok(data)
        error = primary_result["error"]
        return _fail(
            status,
            error["code"],
            f"the primary task failed: {error['message']}",
            details=data,
            headers=headers,
        )

    async def status(self, request: web.Request, doc: dict[str, Any]) -> web.Response:
        service = self.service
        config = service.config
        snapshot = service.router.snapshot()
        backends = {
            name: {
                "state": s["state"],
                "available": s["state"] == "available",
                "breaker": s["breaker"]["state"],
                "outstanding": s["outstanding"],
                "requests": s["requests"],
                "errors": s["errors"],
                "errorRate": s["error_rate"],
                "ewmaLatencyMs": s["ewma_latency_s"] * 1000.0,
            }
            for name, s in snapshot.items()
        }
        available = sum(1 for b in backends.values() if b["available"])
        targets = {}
        for target in TARGETS:
            model, source = self._model_for(target)
            serving = [b.name for b in config.backends if model in b.names]
            targets[target] = {
                "model": model,
                "modelSource": source,
                "backends": serving,
                "available": any(backends[n]["available"] for n in serving if n in backends),
            }
        uptime = self._clock() - self._started
        served = dict(self.served)
        data = {
            "coordinator": {
                "status": "ok"
                if available == len(backends)
                else "degraded"
                if available
                else "down",
                "decider": "rule-table",
                "strategy": config.strategy,
                "routingTime": self.timings.summary(),
                "requestsServed": {"total": sum(served.values()), "byRoute": served},
                "availableBackends": available,
                "totalBackends": len(backends),
                "reloads": service.reloads,
                "uptimeSeconds": uptime,
            },
            "backends": backends,
            "targets": targets,
            "lfm2": {
                **targets["lfm2"],
                "runtime": None,
                "note": "no LFM2 process is attached: decisions come from the rule table, and "
                "lfm2 requests go to the model above",
            },
            "optimization": {
                "available": False,
                "note": "no prompt optimiser is attached (POST optimize answers 501)",
            },
            "metadata": {"timestamp": _now(), "uptime": uptime},
        }
        return _ok(data)

    async def benchmark(self, request: web.Request, doc: dict[str, Any]) -> web.Response:
        raw = _get(doc, "testRequests", "testRequests", True)
        if not isinstance(raw, list) or not raw:
            raise _Invalid("testRequests", "testRequests must be a non-empty list")
        if len(raw) > MAX_BENCHMARK_REQUESTS:
            raise _Invalid(
                "testRequests",
                f"testRequests has {len(raw)} items; at most {MAX_BENCHMARK_REQUESTS}",
            )
        items: list[tuple[str, RuleContext]] = []
        for i, item in enumerate(raw):
            where = f"testRequests[{i}]"
            if isinstance(item, dict):
                key = f"{where}.userRequest"
                text = _required(item, "userRequest", key, MAX_BENCHMARK_CHARS)
                ctx = _context(item, "context") if "context" in item else RuleContext()
            else:
                text = _required({"t": item}, "t", where, MAX_BENCHMARK_CHARS)
                ctx = RuleContext()
            items.append((text, ctx))
        results = []
        times = []
        for i, (text, ctx) in enumerate(items):
            decision, _, elapsed = self._decide(text, ctx)
            times.append(elapsed * 1000.0)
            results.append({"index": i, "decision": decision, "routingTimeMs": elapsed * 1000.0})
        ordered = sorted(times)
        summary = {
            "count": len(times),
            "totalMs": sum(times),
            "meanMs": sum(times) / len(times),
            "medianMs": _quantile(ordered, 0.5),
            "p95Ms": _quantile(ordered, 0.95),
            "minMs": ordered[0],
            "maxMs": ordered[-1],
        }
        data = {
            "benchmark": {"results": results, "summary": summary},
            "metadata": {"timestamp": _now(), "testCount": len(results)},
        }
        return _ok(data)

    async def feedback(self, request: web.Request, doc: dict[str, Any]) -> web.Response:
        rid = _required(doc, "requestId", "requestId", 128)
        success = _flag(doc, "success", "success")
        quality = _number(doc, "quality", "quality", 0.0, 1.0)
        rating = _number(doc, "rating", "rating", 1.0, 5.0)
        if success is None and quality is None and rating is None:
            raise _Invalid("quality", "send at least one of success, quality (0..1), rating (1..5)")
        router = self.service.router
        if router.feedback(rid, success=success, quality=quality, rating=rating):
            self._counted[rid] = None
            if len(self._counted) > router.max_tracked:
                self._counted.popitem(last=False)
            return _ok({"requestId": rid, "counted": True})
        if rid in self._counted:
            return _ok(
                {
                    "requestId": rid,
                    "counted": False,
                    "reason": "feedback for this request was already counted",
                }
            )
        return _fail(
            404,
            "NOT_FOUND",
            f"requestId {rid!r} is not a request this router finished (or it was forgotten, "
            "or the configuration was reloaded since)",
            field="requestId",
        )

    async def not_implemented(self, request: web.Request, doc: dict[str, Any]) -> web.Response:
        name = request.path.removeprefix(PREFIX + "/")
        return _fail(501, "NOT_IMPLEMENTED", _MISSING[name])

    async def reload(self, request: web.Request, doc: dict[str, Any]) -> web.Response:
        path = self.config_path
        if path is None:
            return _fail(
                409,
                "NO_CONFIG_FILE",
                "this router was not started from a config file, so there is nothing to reload; "
                "start it with `workbench router serve --config FILE`",
            )
        try:
            config = load_config(path)
        except WorkbenchError as exc:
            logger.error("router reload from %s refused, keeping the old config: %s", path, exc)
            details = getattr(exc, "details", None)
            field = details.get("field") if isinstance(details, dict) else None
            return _fail(
                409,
                "CONFIG_INVALID",
                f"the config file was not loaded and the configuration in force is kept: "
                f"{exc.message}",
                field=field if isinstance(field, str) else None,
            )
        if _supervised_worker():
            # Every worker must switch: the supervisor forwards SIGHUP to each of them.
            os.kill(os.getppid(), signal.SIGHUP)
            return _ok(
                {"reloaded": "all-workers", "applied": "asynchronously", "configPath": path},
                status=202,
            )
        self.service.reload(config)
        return _ok(
            {
                "reloaded": "this-process",
                "reloads": self.service.reloads,
                "configPath": path,
                "backends": [b.name for b in config.backends],
                "strategy": config.strategy,
            }
        )


def _supervised_worker() -> bool:
    """Whether this process is one worker of ``workbench router serve --workers K > 1``."""
    return (
        multiprocessing.parent_process() is not None
        and multiprocessing.current_process().name.startswith("router-")
    )


_MISSING = {
    "lfm2/quick": "no LFM2 model runs inside this router, so there is no quick local answer; "
    "POST execute sends simple requests to the backends tagged 'fast' or 'small'",
    "optimize": "no DSPy prompt optimiser is attached to this router (the platform's answer "
    "was a constant); nothing is optimised",
    "auto-tune": "automatic tuning is not implemented; set [router] strategy = 'thompson' to "
    "learn routing from outcomes and POST feedback",
}


def _decision_wire(d: RuleDecision, model: str, source: str, backend: str | None) -> dict[str, Any]:
    """The platform's ``FastRoutingDecision`` and what the router adds to it."""
    reasoning = (
        f"rule {d.rule} scored {d.confidence:.3g} for a {d.complexity} request of about "
        f"{d.estimated_tokens} tokens; target {d.target} goes to model {model!r} ({source})"
        + (f", backend {backend!r}" if backend else ", no backend available now")
    )
    return {
        "shouldUseLocal": d.target in LOCAL_TARGETS,
        "targetService": d.target,
        "reasoning": reasoning,
        "complexity": d.complexity,
        "estimatedTokens": d.estimated_tokens,
        "priority": d.priority,
        "confidence": d.confidence,
        "rule": d.rule,
        "model": model,
        "modelSource": source,
        "backend": backend,
    }


def _content(doc: Mapping[str, Any]) -> str | None:
    choices = doc.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return message["content"]
    return None


def _too_large(size: int) -> web.Response:
    return _fail(
        413,
        "PAYLOAD_TOO_LARGE",
        f"request body of {size} bytes exceeds the limit of {MAX_BODY_BYTES} bytes",
        field="body",
    )


def add_platform_routes(
    app: web.Application,
    service: RouterService,
    *,
    config_path: str | Path | None = None,
    api_token: str | None = None,
    admin_token: str | None = None,
) -> PlatformRoutes:
    """Mount the platform routes on the proxy's ``app``.

    The tokens default to ``WORKBENCH_API_TOKEN`` and ``WORKBENCH_ADMIN_TOKEN``
    (:func:`workbench.config.load_settings`).
    """
    if api_token is None or admin_token is None:
        settings = load_settings()
        api_token = settings.api_token if api_token is None else api_token
        admin_token = settings.admin_token if admin_token is None else admin_token
    routes = PlatformRoutes(
        service, api_token=api_token, admin_token=admin_token, config_path=config_path
    )
    routes.mount(app)
    return routes
