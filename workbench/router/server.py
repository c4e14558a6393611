"""The routing proxy: OpenAI-compatible ``/v1/*`` in front of the configured backends.

Routes: ``POST /v1/chat/completions`` (streamed and not), ``POST /v1/completions``,
``POST /v1/embeddings``, ``GET /v1/models``, ``GET /health``, ``GET /metrics``. The ``/v1/*``
handlers are lean (no middleware chain: the workbench frame costs about 55 us a request):
each checks the client key, reads the body under the size limit, asks the
:class:`~workbench.router.balancer.Router` for an attempt order and forwards.

Per request:

- **Auth**: ``Authorization: Bearer <key>`` against the keys of ``client_keys_env`` (401
  otherwise). With no keys configured only loopback clients are served (and :func:`serve`
  refuses to bind elsewhere).
- **Rate limits** (``[router.limits]``, :mod:`~workbench.router.limits`): requests and
  tokens per minute per client key, checked once the body is read (429 with OpenAI's
  ``x-ratelimit-*`` headers), in Redis when ``redis_url`` is set. Off unless configured.
- **Access log** (``[router] access_log``, :mod:`~workbench.router.accesslog`): one JSON line
  per request, without keys or bodies. Off unless configured.
- **Response cache** (``[router.cache]``, :mod:`~workbench.router.response_cache`):
  non-streamed temperature-0 chat completions answered again (``x-workbench-cache``).
- **Request id**: the client's ``x-request-id`` or a new one; sent to the backend, returned
  in ``x-request-id``, and the id :meth:`Router.feedback` takes.
- **Deadline**: ``deadline_s`` for the whole request; each attempt's time limit is the smaller
  of the backend's ``timeout_s`` and what remains, so the backend's work ends with it (504).
- **Retries and fallback**: a failed attempt (connection error, timeout, 5xx, 408, 429, a
  malformed answer) is retried on the next backend of the plan (other backends serving the
  model, then the alias's fallback chain; the same backend again after a backoff when none is
  left), at most ``retries`` times, and only while the retry budget allows (each request earns
  ``retry_budget`` retries, plus a small floor per second so a quiet router can still retry).
  Never once a streamed answer has started: the client then gets an error event and the end.
- **Cooling**: when every backend of the model is cooling (breakers open, ejected), the
  request waits for the first one to come back if that is within its deadline, and gets 503
  with ``Retry-After`` otherwise.
- **Errors** are OpenAI's shape ``{"error": {message, type, param, code}}``: 400 malformed
  JSON, 401, 404 unknown model, 413, 429 with ``Retry-After`` (when every attempt was
  rate-limited), 502 (backends failed), 503 (none available), 504 (deadline). A backend's
  own 4xx (other than 408 and 429) is passed through, its API key scrubbed; none of its
  headers are.
- **Client disconnect** cancels the handler (``handler_cancellation``), which closes the
  forwarded connection, so the backend stops generating.

Streams (SSE from OpenAI-compatible backends) are written to the client chunk by chunk as
they arrive; Anthropic and Ollama streams are translated piece by piece
(:mod:`workbench.router.translate`). The response headers go out with the first bytes, so a
backend that fails before sending any can still be retried elsewhere.

Every backend is probed actively (``probe_interval_s``). :meth:`RouterService.reload` (SIGHUP
under ``workbench router serve``) switches to a new configuration at once for new requests,
while requests in flight finish on the old backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from workbench import metrics
from workbench.errors import ConfigError, InputError, WorkbenchError
from workbench.router import translate
from workbench.router._body import BodyTooLarge, read_limited
from workbench.router._net import is_loopback as _is_loopback
from workbench.router.accesslog import AccessLog, Exchange
from workbench.router.balancer import BackendState, Outcome, Router
from workbench.router.config import RouterConfig, load_config
from workbench.router.limits import (
    BucketStore,
    RateLimits,
    client_keys,
    estimate_prompt_tokens,
    make_store,
    sse_usage_tokens,
    store_signature,
)
from workbench.router.platform import add_platform_routes
from workbench.router.transport import Transport, UpstreamError, UpstreamTimeout

if TYPE_CHECKING:
    from workbench.router.fake_backend import AppThread

__all__ = ["SERVICE", "RetryBudget", "RouterService", "create_app", "run_router", "serve"]

logger = logging.getLogger(__name__)

_JSON = "application/json"
_PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}
_ROUTES = {
    "/v1/chat/completions": "POST",
    "/v1/completions": "POST",
    "/v1/embeddings": "POST",
    "/v1/models": "GET",
}
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}

_REQUESTS = metrics.counter(
    "workbench_router_requests_total", "Client requests by route and status", ["route", "status"]
)
_UPSTREAM = metrics.counter(
    "workbench_router_upstream_requests_total",
    "Attempts on backends by result (ok, client_error, status code, timeout, error)",
    ["backend", "result"],
)
_LATENCY = metrics.histogram(
    "workbench_router_upstream_latency_seconds",
    "Seconds from sending to a backend until its answer ended",
    ["backend"],
)
_INFLIGHT = metrics.gauge(
    "workbench_router_upstream_in_flight", "Requests in flight per backend", ["backend"]
)
_RETRIES = metrics.counter(
    "workbench_router_retries_total", "Further attempts after a failed one, by reason", ["reason"]
)


_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, made once: ``labels()`` takes a lock and builds a key each
    call, a few microseconds a request on the proxy path. Label values are bounded (routes,
    statuses, backend names, reasons); the cache is emptied if reloads ever grow it past
    10,000 children."""
    key = (id(metric), labels)
    child = _CHILDREN.get(key)
    if child is None:
        if len(_CHILDREN) >= 10_000:
            _CHILDREN.clear()
        child = _CHILDREN[key] = metric.labels(*labels)
    return child


def _error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    kind = _TYPES.get(status, "api_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type=_JSON, headers=headers)


class _EventStream(web.StreamResponse):
    """A streamed answer whose headers leave in the same write as its first bytes.

    aiohttp's ``StreamResponse.prepare`` sends the headers at once, in a write (and a
    client wake-up) of their own; ``web.Response`` instead holds them for the body, and
    this class asks for that behaviour (``_send_headers_immediately``, which aiohttp reads
    from the class; ``tests/router/test_server.py`` watches that it still does). The router
    prepares a stream only once the backend's first bytes are in hand, so holding the
    headers delays nothing and saves the client one read before its first event.
    """

    _send_headers_immediately = False


def _error_event(message: str) -> bytes:
    """An SSE frame carrying an OpenAI error (how a stream that already started fails)."""
    err = {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
    return b"data: " + orjson.dumps(err) + b"\n\n"


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class RetryBudget:
    """Bounds retries to a fraction of requests (Finagle's retry budget).

    Each request deposits ``ratio`` of a retry; a retry withdraws one. A floor of
    ``min_per_s`` retries a second (refilled continuously, held up to one second's worth)
    lets a quiet router retry at all. Earned retries are capped at ``max_earned`` so a long
    calm spell does not pay for a storm.

    Args:
        ratio: Retries earned per request, in [0, 1].
        min_per_s: Retries a second allowed whatever the traffic.
        max_earned: Most earned retries held.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        ratio: float,
        *,
        min_per_s: float = 10.0,
        max_earned: float = 100.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio = ratio
        self.min_per_s = min_per_s
        self.max_earned = max_earned
        self._clock = clock
        self._earned = 0.0
        self._floor = min_per_s
        self._at = clock()

    def deposit(self) -> None:
        """Count one request."""
        self._earned = min(self.max_earned, self._earned + self.ratio)

    def withdraw(self) -> bool:
        """Take one retry; False when the budget is spent."""
        now = self._clock()
        self._floor = min(self.min_per_s, self._floor + (now - self._at) * self.min_per_s)
        self._at = now
        if self._earned >= 1.0 - 1e-9:  # ten deposits of 0.1 make one retry
            self._earned = max(0.0, self._earned - 1.0)
            return True
        if self._floor >= 1.0:
            self._floor -= 1.0
            return True
        return False


@dataclass
class _Failure:
    """One failed attempt: the client's status if it were the last, and why."""

    status: int
    reason: str
    message: str
    retry_after_s: float | None = None
    backend: str = ""


def _client_request_id(request: web.Request) -> str:
    """The client's ``x-request-id`` when usable, else a new one."""
    rid = request.headers.get("x-request-id", "")
    return rid if 0 < len(rid) <= 128 and rid.isprintable() else uuid.uuid4().hex


def _request_text(endpoint: str, body: dict[str, Any]) -> str:
    if endpoint == "chat":
        messages = body.get("messages")
        if isinstance(messages, list):
            for m in reversed(messages):
                if isinstance(m, dict) and m.get("role") == "user":
                    content = m.get("content")
                    if isinstance(content, str):
                        return content
                    if isinstance(content, list):
                        return " ".join(
                            str(p.get("text", "")) for p in content if isinstance(p, dict)
                        )
        return ""
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


class _Generation:
    """What one configuration makes: the router, its upstream pools, the client keys, the
    rate limits, the access log and the response cache (``observed``: any of those is on)."""

    __slots__ = (
        "access",
        "anonymous",
        "cache",
        "clients",
        "config",
        "keys",
        "limits",
        "observed",
        "router",
        "transport",
    )

    def __init__(
        self, config: RouterConfig, router: Router, limits: RateLimits | None = None
    ) -> None:
        self.config = config
        self.router = router
        self.transport = Transport(config.backends)
        self.keys = tuple(k.encode() for k in config.client_keys)
        self.limits = limits
        self.access = AccessLog(config.access_log) if config.access_log else None
        self.clients, self.anonymous = client_keys(config)
        self.cache: Any = None
        if config.cache is not None:
            from workbench.router.response_cache import ResponseCache  # workbench.cache

            self.cache = ResponseCache(config.cache, redis_url=config.redis_url)
        self.observed = limits is not None or self.access is not None or self.cache is not None


class RouterService:
    """The proxy's state: router, upstream pools, retry budget (one per event loop).

    Args:
        config: The router configuration.
        router: The decisions (built from ``config`` when omitted).
        clock: Monotonic seconds (deadlines, the retry budget).
        sleep: Awaitable sleep (waiting for a cooling backend, retry backoff).
    """

    def __init__(
        self,
        config: RouterConfig,
        *,
        router: Router | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._store: BucketStore | None = None
        self._store_sig: tuple[Any, ...] | None = None
        router = router or Router(config, clock=clock)
        self._gen = _Generation(config, router, self._limits_for(config))
        self.budget = RetryBudget(config.retry_budget, clock=clock)
        self.reloads = 0
        self._retired: set[asyncio.Task[None]] = set()
        #: Called with the service after each :meth:`reload` (the app restarts its probes).
        self.on_reload: list[Callable[[RouterService], None]] = []

    @property
    def config(self) -> RouterConfig:
        """The configuration in force (new requests)."""
        return self._gen.config

    @property
    def router(self) -> Router:
        """The routing decisions in force (new requests)."""
        return self._gen.router

    @property
    def transport(self) -> Transport:
        """The upstream pools in force (new requests)."""
        return self._gen.transport

    @property
    def limits(self) -> RateLimits | None:
        """The per-key rate limits in force (``None``: none configured)."""
        return self._gen.limits

    def _limits_for(self, config: RouterConfig) -> RateLimits | None:
        """Rate limits for ``config``, keeping the bucket store across reloads that do not
        change where it lives (local buckets keep their levels)."""
        if not config.limits.enabled:
            return None
        signature = store_signature(config)
        if self._store is None or signature != self._store_sig:
            self._store, self._store_sig = make_store(config, self._clock), signature
        return RateLimits(config.limits, self._store, clock=self._clock)

    def reload(self, config: RouterConfig, *, grace_s: float | None = None) -> None:
        """Switch to ``config`` without dropping a request (call in the server's loop).

        New requests use the new backends, strategy and keys at once; requests in flight
        finish on the old ones, whose connection pools close ``grace_s`` seconds later (the
        old deadline by default). Learned posteriors carry over through ``state_path``.
        Breakers and latency averages start afresh: the new backends may not be the old.
        """
        old = self._gen
        old.router.save_state()
        self._gen = _Generation(config, Router(config, clock=self._clock), self._limits_for(config))
        self.budget.ratio = config.retry_budget
        self.reloads += 1
        grace = old.config.deadline_s if grace_s is None else grace_s
        task = asyncio.get_running_loop().create_task(self._retire(old, grace))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
        for hook in self.on_reload:
            hook(self)
        logger.info("router reloaded: %d backend(s)", len(config.backends))

    def reload_from(self, path: str) -> bool:
        """Reload from the TOML file at ``path`` (SIGHUP); a bad file is logged and the
        configuration in force kept. Returns whether it reloaded."""
        try:
            config = load_config(path)
        except WorkbenchError as exc:
            logger.error("router reload from %s refused, keeping the old config: %s", path, exc)
            return False
        self.reload(config)
        return True

    async def _retire(self, gen: _Generation, grace_s: float) -> None:
        await asyncio.sleep(grace_s)
        await gen.transport.close()
        await self._close_extras(gen)

    async def _close_extras(self, gen: _Generation) -> None:
        if gen.access is not None:
            gen.access.close()
        if gen.cache is not None:
            await gen.cache.aclose()
        if gen.limits is not None and (gen is self._gen or gen.limits.store is not self._store):
            await gen.limits.aclose()

    # -- request checks --------------------------------------------------------------------

    def _denied(self, request: web.Request) -> web.Response | None:
        keys = self._gen.keys
        if not keys:
            if _is_loopback(request.remote):
                return None
            return _error(403, "this router has no client keys and serves loopback only")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:].strip().encode()
            # compare_digest against every key: the time taken does not reveal which matched.
            ok = False
            for key in keys:
                ok |= hmac.compare_digest(given, key)
            if ok:
                return None
        return _error(
            401,
            "missing or invalid API key; send Authorization: Bearer <key>",
            code="invalid_api_key",
        )

    async def _body(self, request: web.Request) -> tuple[bytes, dict[str, Any]] | web.Response:
        limit = self.config.max_body_bytes
        try:
            raw = await read_limited(request, limit)
        except BodyTooLarge as exc:
            return _error(413, f"request body of {exc.size} bytes exceeds the limit of {limit}")
        except (ConnectionError, asyncio.IncompleteReadError):
            return _error(400, "the request body could not be read")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"request body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        return raw, body

    # -- handlers --------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "chat")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "completions")

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "embeddings")

    async def models(self, request: web.Request) -> web.StreamResponse:
        denied = self._denied(request)
        if denied is not None:
            return denied
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "workbench-router"}
            for m in self.router.models()
        ]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type=_JSON)

    async def unknown_route(self, request: web.Request) -> web.StreamResponse:
        if request.path in _ROUTES:
            allowed = _ROUTES[request.path]
            return _error(
                405,
                f"{request.method} is not allowed on {request.path}; use {allowed}",
                headers={"Allow": allowed},
            )
        return _error(404, f"no route {request.path}; see GET /v1/models", code="unknown_url")

    async def health(self, request: web.Request) -> web.StreamResponse:
        snapshot = self.router.snapshot()
        available = sum(1 for s in snapshot.values() if s["state"] == "available")
        status = "ok" if available == len(snapshot) else ("degraded" if available else "down")
        doc = {"status": status, "available": available, "backends": snapshot}
        return web.Response(
            status=200 if available else 503, body=orjson.dumps(doc), content_type=_JSON
        )

    async def metrics_route(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=metrics.render(), headers={"Content-Type": metrics.PROMETHEUS_CONTENT_TYPE}
        )

    async def _handle(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        gen = self._gen
        if not gen.observed:
            resp = await self._route(request, endpoint)
        else:
            ex = Exchange(self._clock())
            try:
                resp = await self._route(request, endpoint, ex)
            except asyncio.CancelledError:
                if gen.access is not None:  # the client went away: 499, as nginx logs it
                    gen.access.write(endpoint, 499, ex, self._clock())
                raise
            self._observed(gen, endpoint, ex, resp)
        _child(_REQUESTS, endpoint, str(resp.status)).inc()
        return resp

    def _observed(
        self, gen: _Generation, endpoint: str, ex: Exchange, resp: web.StreamResponse
    ) -> None:
        """Settle the token charge, add the rate limit headers, write the access log line."""
        decision = ex.decision
        if decision is not None and gen.limits is not None:
            gen.limits.settle(ex.client, decision, ex.tokens, attempted=ex.attempts > 0)
            if decision.allowed and not decision.unavailable and not resp.prepared:
                resp.headers.update(decision.headers())
        if gen.access is not None:
            gen.access.write(endpoint, resp.status, ex, self._clock())

    async def _route(
        self, request: web.Request, endpoint: str, ex: Exchange | None = None
    ) -> web.StreamResponse:
        gen = self._gen  # one configuration for the whole request, whatever reloads meanwhile
        denied = self._denied(request)
        if denied is not None:
            return denied
        read = await self._body(request)
        if isinstance(read, web.Response):
            return read
        raw, body = read
        if ex is not None:
            if gen.keys:
                token = request.headers.get("Authorization", "")[7:].strip().encode()
                ex.client = gen.clients.get(token, gen.anonymous)
            else:
                ex.client = gen.anonymous
            if gen.limits is not None:
                refused = await self._admit(gen, request, endpoint, body, ex)
                if refused is not None:
                    return refused
            if gen.cache is not None and endpoint == "chat":
                return await self._cached(gen, request, raw, body, ex)
        return await self.forward(request, endpoint, raw, body, gen=gen, exchange=ex)

    async def _cached(
        self,
        gen: _Generation,
        request: web.Request,
        raw: bytes,
        body: dict[str, Any],
        ex: Exchange,
    ) -> web.StreamResponse:
        """Answer a deterministic chat request from the response cache, or forward it and
        store a successful answer (:mod:`workbench.router.response_cache`)."""
        cache = gen.cache
        key = cache.key_for(body, ex.client.id)
        model = body.get("model")
        if key is None or not isinstance(model, str) or not gen.router.known(model):
            return await self.forward(request, "chat", raw, body, gen=gen, exchange=ex)
        hit = await cache.get(key)
        if hit is not None:
            ex.request_id, ex.model, ex.cache = _client_request_id(request), model, "hit"
            headers = {"x-request-id": ex.request_id, "x-workbench-cache": "hit"}
            if hit[1]:
                headers["x-workbench-backend"] = hit[1]
            return web.Response(body=hit[0], content_type=_JSON, headers=headers)
        resp = await self.forward(request, "chat", raw, body, gen=gen, exchange=ex)
        ex.cache = "miss"
        if not resp.prepared:
            resp.headers["x-workbench-cache"] = "miss"
            stored = resp.body if isinstance(resp, web.Response) else None
            if resp.status == 200 and isinstance(stored, bytes) and ex.backend:
                cache.put(key, stored, ex.backend)
        return resp

    async def _admit(
        self,
        gen: _Generation,
        request: web.Request,
        endpoint: str,
        body: dict[str, Any],
        ex: Exchange,
    ) -> web.Response | None:
        """The client key's rate limits: None when admitted, else the 429 (or 503) to send."""
        assert gen.limits is not None
        plan = ex.client.plan
        reserve = estimate_prompt_tokens(endpoint, body) if plan.tpm else 0
        decision = ex.decision = await gen.limits.admit(ex.client, reserve)
        if decision.allowed:
            return None
        rid = ex.request_id = _client_request_id(request)
        headers = {"x-request-id": rid, **decision.headers()}
        if decision.unavailable:
            return _error(
                503,
                "the rate limit store does not answer; retry shortly",
                code="rate_limiter_unavailable",
                headers=headers,
            )
        if decision.limited_by == "requests":
            what = f"{plan.rpm} requests per minute"
        else:
            what = f"{plan.tpm} tokens per minute"
        wait = headers["Retry-After"]
        return _error(
            429,
            f"rate limit reached for this API key: {what}; retry in {wait} s",
            code="rate_limit_exceeded",
            headers=headers,
        )

    async def forward(
        self,
        request: web.Request,
        endpoint: str,
        raw: bytes,
        body: dict[str, Any],
        *,
        gen: _Generation | None = None,
        request_id: str | None = None,
        exchange: Exchange | None = None,
    ) -> web.StreamResponse:
        """Route and forward one parsed request: its checks, the plan, retries and fallback.

        The ``/v1/*`` handlers call it once the client is authenticated and the body read;
        the platform's ``execute`` (:mod:`workbench.router.platform`) calls it with a chat
        body it built and a request id of its own.
        """
        gen = self._gen if gen is None else gen
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "model must be a non-empty string", param="model")
        if not gen.router.known(model):
            return _error(
                404,
                f"model {model!r} is not served here; GET /v1/models lists what is",
                code="model_not_found",
                param="model",
            )
        if endpoint == "chat" and not isinstance(body.get("messages"), list):
            return _error(400, "messages must be a list", param="messages")
        rid = request.headers.get("x-request-id", "") if request_id is None else request_id
        if not 0 < len(rid) <= 128 or not rid.isprintable():
            rid = uuid.uuid4().hex
        headers = {"x-request-id": rid}
        if exchange is not None:
            exchange.request_id, exchange.model = rid, model
        deadline = self._clock() + gen.config.deadline_s
        text = _request_text(endpoint, body)
        stream = body.get("stream") is True
        self.budget.deposit()
        tried: list[str] = []
        failures: list[_Failure] = []
        attempts = 0
        while attempts <= gen.config.retries:
            backend = await self._next(gen, model, endpoint, text, tried, failures, deadline)
            if backend is None:
                break
            if attempts > 0:
                if not self.budget.withdraw():
                    break
                _child(_RETRIES, failures[-1].reason).inc()
            if not gen.router.start(backend, model=model):
                gen.router.cancel(backend)  # its last half-open probe went to another request
                tried.append(backend.name)
                continue
            attempts += 1
            if exchange is not None:
                exchange.attempts, exchange.backend = attempts, backend.name
            inflight = _child(_INFLIGHT, backend.name)
            inflight.inc()
            try:
                result = await self._attempt(
                    gen,
                    request,
                    backend,
                    endpoint,
                    raw,
                    body,
                    model,
                    stream,
                    rid,
                    deadline,
                    exchange=exchange,
                )
            finally:
                inflight.dec()
            if not isinstance(result, _Failure):
                return result
            result.backend = backend.name
            failures.append(result)
            tried.append(backend.name)
            if result.reason in ("deadline", "client"):
                break
        return self._give_up(gen, model, failures, headers)

    async def _next(
        self,
        gen: _Generation,
        model: str,
        endpoint: str,
        text: str,
        tried: list[str],
        failures: list[_Failure],
        deadline: float,
    ) -> BackendState | None:
        """The next backend to try, waiting (within the deadline) while all are cooling."""
        while True:
            plan = gen.router.plan(model, text=text, exclude=tried)
            if endpoint != "chat":
                plan = [b for b in plan if b.config.openai_compatible]
            if plan:
                return plan[0]
            # Not again to a backend that asked us to wait (429) during this request.
            limited = [f.backend for f in failures if f.status == 429]
            again = gen.router.plan(model, text=text, exclude=limited)
            if endpoint != "chat":
                again = [b for b in again if b.config.openai_compatible]
            remaining = deadline - self._clock()
            if again and failures:
                # Every backend was tried once: the same again after a short backoff.
                backoff = min(0.05 * 2 ** (len(failures) - 1), 1.0)
                if backoff >= remaining:
                    return None
                await self._sleep(backoff)
                tried.clear()
                return again[0]
            wait = gen.router.time_to_first_available(model)
            if wait is None or wait >= remaining or (wait == 0.0 and failures):
                return None  # nothing will come back in time, or all that is up was tried
            await self._sleep(max(wait, 0.005))
            if not failures:
                tried.clear()  # only backends whose last probe went elsewhere

    async def _attempt(
        self,
        gen: _Generation,
        request: web.Request,
        backend: BackendState,
        endpoint: str,
        raw: bytes,
        body: dict[str, Any],
        model: str,
        stream: bool,
        rid: str,
        deadline: float,
        *,
        exchange: Exchange | None = None,
    ) -> web.StreamResponse | _Failure:
        cfg = backend.config
        upstream = gen.transport[cfg.name]
        target = model if model in cfg.models else cfg.models[0]
        translated = endpoint == "chat" and not cfg.openai_compatible
        data = raw  # forwarded as the client sent it unless something must change
        try:
            if translated:
                path, payload = translate.chat_request(cfg.kind, body, target)
                data = orjson.dumps(payload)
            else:
                path = _PATHS[endpoint]
                if target != model:
                    data = orjson.dumps({**body, "model": target})
        except InputError as exc:
            gen.router.cancel(backend)
            return _Failure(400, "client", exc.message)
        t0 = self._clock()
        timeout = min(cfg.timeout_s, deadline - t0)
        if timeout <= 0:
            gen.router.cancel(backend)
            return _Failure(504, "deadline", "the request's deadline passed")
        finished = False

        def finish(ok: bool, status: int | None, reason: str, **kw: Any) -> None:
            nonlocal finished
            finished = True
            latency = self._clock() - t0
            gen.router.finish(
                backend, Outcome(ok, latency, status, **kw), request_id=rid, model=model
            )
            _child(_UPSTREAM, cfg.name, reason).inc()
            _child(_LATENCY, cfg.name).observe(latency)
            if exchange is not None:
                exchange.upstream_s, exchange.tokens = latency, kw.get("tokens", 0)

        try:
            try:
                resp = await upstream.post(path, data, timeout_s=timeout, request_id=rid)
            except UpstreamTimeout as exc:
                finish(False, None, "timeout")
                return _Failure(504, "timeout", exc.message)
            except UpstreamError as exc:
                finish(False, None, "error")
                return _Failure(502, "error", exc.message)
            status = resp.status
            if status >= 300:
                retry_after = resp.retry_after_s()
                try:
                    raw = await resp.read()
                except (UpstreamError, UpstreamTimeout):
                    raw = b""
                if status == 429 or status == 408 or status >= 500:
                    finish(False, status, str(status), retry_after_s=retry_after)
                    return _Failure(
                        429 if status == 429 else 502,
                        str(status),
                        f"backend {cfg.name!r} answered HTTP {status}",
                        retry_after,
                    )
                finish(False, status, "client_error")
                if translated:
                    raw = orjson.dumps(translate.error_body(cfg.kind, status, raw))
                return web.Response(
                    status=status,
                    body=upstream.scrub(raw),
                    content_type=_JSON,
                    headers={"x-request-id": rid},
                )
            if stream:
                return await self._pipe(
                    request, resp, backend, model, rid, translated, body, finish
                )
            try:
                raw = await resp.read()
            except UpstreamTimeout as exc:
                finish(False, None, "timeout")
                return _Failure(504, "timeout", exc.message)
            except UpstreamError as exc:
                finish(False, None, "error")
                return _Failure(502, "error", exc.message)
            try:
                doc = orjson.loads(raw)
                if translated:
                    doc = translate.chat_response(cfg.kind, doc, model)
                    raw = orjson.dumps(doc)
                usage = doc.get("usage") if isinstance(doc, dict) else None
            except (orjson.JSONDecodeError, ValueError, AttributeError):
                finish(False, 502, "garbage")
                return _Failure(502, "garbage", f"backend {cfg.name!r} sent a malformed answer")
            tokens = usage.get("total_tokens", 0) if isinstance(usage, dict) else 0
            finish(True, 200, "ok", tokens=tokens if isinstance(tokens, int) else 0)
            return web.Response(
                body=raw,
                content_type=_JSON,
                headers={"x-request-id": rid, "x-workbench-backend": cfg.name},
            )
        except asyncio.CancelledError:
            if not finished:
                gen.router.cancel(backend)  # the client went away: no verdict on the backend
            raise

    async def _pipe(
        self,
        request: web.Request,
        resp: Any,
        backend: BackendState,
        model: str,
        rid: str,
        translated: bool,
        body: dict[str, Any],
        finish: Callable[..., None],
    ) -> web.StreamResponse | _Failure:
        cfg = backend.config
        expected = "text/event-stream" if cfg.kind != "ollama" else "application/x-ndjson"
        if resp.content_type != expected and not (
            cfg.kind == "ollama" and resp.content_type == _JSON
        ):
            resp.close()
            finish(False, 502, "garbage")
            return _Failure(502, "garbage", f"backend {cfg.name!r} did not answer with a stream")
        translator = None
        if translated:
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            translator = translate.StreamTranslator(cfg.kind, model, include_usage=include)
        out: web.StreamResponse | None = None
        before_last = last = b""  # the stream's end, where an OpenAI stream reports usage
        try:
            async for data in resp.chunks():
                if translator is not None:
                    data = translator.feed(data)
                    if not data:
                        continue
                else:
                    before_last, last = last, data
                if out is None:
                    # Headers go out with the first bytes: until then a failure can still be
                    # retried elsewhere, since the client has seen nothing.
                    out = _EventStream(
                        headers={
                            "Content-Type": "text/event-stream",
                            "Cache-Control": "no-cache",
                            "x-request-id": rid,
                            "x-workbench-backend": cfg.name,
                        }
                    )
                    await out.prepare(request)
                if translator is None and resp.at_eof():
                    await out.write_eof(data)  # the last bytes and the end in one write
                else:
                    await out.write(data)
        except (UpstreamError, UpstreamTimeout) as exc:
            timed_out = isinstance(exc, UpstreamTimeout)
            finish(False, None, "timeout" if timed_out else "error")
            if out is None:
                return _Failure(
                    504 if timed_out else 502, "timeout" if timed_out else "error", exc.message
                )
            with contextlib.suppress(ConnectionError):
                await out.write(_error_event(exc.message))
                await out.write_eof()
            return out
        except (ConnectionError, asyncio.CancelledError):
            resp.close()  # the client went away mid-stream: so does the backend's work
            raise asyncio.CancelledError from None
        resp.release()
        if translator is not None and not translator.done:
            finish(False, None, "error")
            message = f"backend {cfg.name!r} ended the stream early"
            if out is None:
                return _Failure(502, "error", message)
            await out.write(_error_event(message))
        elif out is None:
            finish(False, None, "error")
            return _Failure(502, "error", f"backend {cfg.name!r} sent an empty stream")
        else:
            if translator is not None:
                tokens = translator.tokens
            else:
                tokens = sse_usage_tokens(before_last[-4096:] + last)
            finish(True, 200, "ok", tokens=tokens)
        await out.write_eof()
        return out

    def _give_up(
        self, gen: _Generation, model: str, failures: list[_Failure], headers: dict[str, str]
    ) -> web.StreamResponse:
        if not failures:
            wait = gen.router.time_to_first_available(model)
            extra = _retry_after(wait if wait is not None else gen.config.breaker.open_s)
            return _error(
                503,
                f"no backend for model {model!r} is available (all cooling or unhealthy)",
                code="no_backend_available",
                headers={**headers, **extra},
            )
        last = failures[-1]
        if last.status == 400:
            return _error(400, last.message, headers=headers)
        if all(f.status == 429 for f in failures):
            hints = [f.retry_after_s for f in failures if f.retry_after_s is not None]
            extra = _retry_after(min(hints) if hints else 1.0)
            return _error(
                429,
                f"every backend for model {model!r} is rate-limited; retry later",
                code="rate_limited",
                headers={**headers, **extra},
            )
        if last.status == 504:
            return _error(504, f"deadline passed: {last.message}", code="timeout", headers=headers)
        return _error(
            502,
            f"{len(failures)} attempt(s) for model {model!r} failed; last: {last.message}",
            code="upstream_error",
            headers=headers,
        )

    async def aclose(self) -> None:
        """Close the upstream pools (those retired by reloads too)."""
        for task in list(self._retired):
            task.cancel()
        await self.transport.close()
        await self._close_extras(self._gen)
        if self._store is not None:  # a reload may have switched the limits off
            await self._store.aclose()


#: Where :func:`create_app` keeps its :class:`RouterService`.
SERVICE = web.AppKey("service", RouterService)


def create_app(
    config: RouterConfig,
    *,
    router: Router | None = None,
    clock: Callable[[], float] = time.monotonic,
    config_path: str | Path | None = None,
) -> web.Application:
    """The proxy's aiohttp application (its :class:`RouterService` is ``app[SERVICE]``).

    While it runs, every backend is probed each ``config.probe_interval_s`` seconds. With
    ``config_path`` (and run in the main thread), SIGHUP reloads the configuration from it
    (:meth:`RouterService.reload_from`).
    """
    service = RouterService(config, router=router, clock=clock)
    # The body limit is enforced by the handlers (OpenAI-style 413), not aiohttp's default.
    app = web.Application(client_max_size=config.max_body_bytes + 1)
    app[SERVICE] = service
    r = app.router
    r.add_post("/v1/chat/completions", service.chat)
    r.add_post("/v1/completions", service.completions)
    r.add_post("/v1/embeddings", service.embeddings)
    r.add_get("/v1/models", service.models)
    r.add_get("/health", service.health)
    r.add_get("/metrics", service.metrics_route)
    r.add_route("*", "/v1/{tail:.*}", service.unknown_route)
    add_platform_routes(app, service, config_path=config_path)

    probes: list[asyncio.Task[None]] = []

    def start_probes(service: RouterService) -> None:
        for task in probes:
            task.cancel()
        probes.clear()
        interval = service.config.probe_interval_s
        if interval is not None:
            prober = service.router.prober(interval_s=interval)
            probes.append(asyncio.create_task(prober.run(), name="router-health-probes"))

    async def lifecycle(app: web.Application) -> Any:
        start_probes(service)
        service.on_reload.append(start_probes)
        if config_path is not None:
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, service.reload_from, str(config_path)
            )
        yield
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        await service.aclose()

    app.cleanup_ctx.append(lifecycle)
    return app


def run_router(
    config: RouterConfig, *, host: str = "127.0.0.1", port: int = 0, router: Router | None = None
) -> AppThread:
    """Serve the proxy from a background thread (tests, notebooks); ``.url``, ``.stop()``.

    Its :class:`RouterService` is ``thread.app[SERVICE]`` (touch it only through
    ``thread.call``: it belongs to the server's event loop).
    """
    from workbench.router.fake_backend import AppThread

    return AppThread(create_app(config, router=router), host=host, port=port).start()


def serve(
    config: RouterConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    insecure: bool = False,
    config_path: str | Path | None = None,
) -> None:
    """Serve until interrupted, in ``workers`` processes sharing the port (``SO_REUSEPORT``).

    Each worker has its own routing state (breakers, EWMAs); shared state (rate limits) lives
    in Redis when configured. With ``config_path``, SIGHUP reloads the configuration from it
    in every worker, without dropping requests in flight.

    Raises:
        ConfigError: no client keys and ``host`` is not loopback (without ``insecure``), or
            ``workers`` is below 1.
    """
    if not config.client_keys and not insecure and not _is_loopback(host):
        raise ConfigError(
            f"refusing to serve the router on {host} without client keys: set "
            "[router] client_keys_env, bind 127.0.0.1, or pass --insecure",
            details={"field": "router.client_keys_env"},
        )
    if workers < 1:
        raise ConfigError(f"--workers={workers}: must be >= 1", details={"field": "workers"})
    if workers > 1 and config.limits.enabled and config.redis_url is None:
        raise ConfigError(
            f"--workers={workers} with [router.limits] needs [router] redis_url: local buckets "
            "are per process, so each worker would allow the whole limit",
            details={"field": "router.redis_url"},
        )
    logger.info("router serving on http://%s:%d with %d worker(s)", host, port, workers)
    if workers == 1:
        _run_worker(config, host, port, False, config_path)
        return
    import multiprocessing
    import multiprocessing.connection

    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(
            target=_run_worker, args=(config, host, port, True, config_path), name=f"router-{i}"
        )
        for i in range(workers)
    ]
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive():
                p.terminate()

    def forward_hup(signum: int, frame: Any) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if config_path is not None:
        signal.signal(signal.SIGHUP, forward_hup)
    for p in procs:
        p.start()
    pending = {p.sentinel: p for p in procs}
    failed = None
    while pending:
        for sentinel in multiprocessing.connection.wait(list(pending)):
            proc = pending.pop(sentinel)  # type: ignore[arg-type]
            proc.join()
            if not stopping:
                # One worker gone: stop the rest so a supervisor restarts the whole router.
                logger.error("%s exited with %s; stopping the others", proc.name, proc.exitcode)
                failed = proc
                stop(signal.SIGTERM, None)
    if failed is not None:
        raise WorkbenchError(f"{failed.name} exited with code {failed.exitcode}; router stopped")


def _run_worker(
    config: RouterConfig, host: str, port: int, reuse_port: bool, config_path: str | Path | None
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        create_app(config, config_path=config_path),
        host=host,
        port=port,
        reuse_port=reuse_port,
        access_log=None,
        print=None,
        handler_cancellation=True,
        shutdown_timeout=5.0,
    )
