"""Per client key rate limits: requests per minute (RPM) and tokens per minute (TPM).

Each client key has two token buckets, refilled continuously:

- **requests**: holds ``burst`` (default ``rpm``) and refills at ``rpm / 60`` a second; a
  request takes one, and is refused when less than one is left;
- **tokens**: holds ``tpm`` and refills at ``tpm / 60`` a second. A request is admitted only
  while the balance is above zero. With ``reserve_prompt_tokens`` (the default) an estimate of
  its prompt (a token per four characters of the messages, prompt or input) is taken at
  admission; once the answer has ended, the difference between the usage the backend reported
  (``total_tokens``) and that estimate is charged or given back. An answer without usage (a
  failure, or a stream without ``stream_options.include_usage``) is charged the estimate
  only; a request that never reached a backend (unknown model, bad body) is charged nothing.
  The balance may go below zero (one large answer is paid for by waiting), but never below
  ``-tpm``, so no single answer locks a key out for more than a minute.

Refused requests get HTTP 429 in OpenAI's shape (``rate_limit_error``, code
``rate_limit_exceeded``) with ``Retry-After`` and the ``x-ratelimit-*`` headers OpenAI sends;
admitted, non-streamed answers carry the same headers.

Two stores behind one interface (:class:`BucketStore`):

- :class:`LocalBuckets`: in the process, on an injected clock; a dict lookup and arithmetic.
  It cannot be shared, so ``serve --workers K>1`` refuses limits without ``redis_url``.
- :class:`RedisBuckets`: in Redis, shared by every router instance and worker that points at
  it. Admission is one Lua script (EVALSHA) that refills, checks and takes in one atomic step,
  so no two routers ever both spend the last token; it reads the Redis server's clock, so
  routers on hosts with skewed clocks still share one refill rate. Each key's hash expires
  once its buckets would be full again. A client key is known to Redis only by
  a hash of it (:func:`key_id`). A call waits at most ``redis_timeout_s``; when Redis does not
  answer, ``fail_open`` decides: refuse with 503 (the default) or admit without a limit.
  After a failure the limiter does not ask Redis again for a second, so an outage costs the
  clients one timeout a second, not one a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from workbench import metrics
from workbench.errors import BackendUnavailable
from workbench.router.config import KeyLimits, LimitsConfig, RouterConfig

__all__ = [
    "BucketStore",
    "ClientKey",
    "Decision",
    "LocalBuckets",
    "Plan",
    "RateLimits",
    "RedisBuckets",
    "client_keys",
    "estimate_prompt_tokens",
    "format_reset",
    "key_id",
    "make_store",
    "sse_usage_tokens",
    "store_signature",
]

logger = logging.getLogger(__name__)

#: Seconds the limiter leaves Redis alone after a failed call.
RETRY_REDIS_S = 1.0
#: Token charges to Redis in flight at most; beyond it they are dropped (and counted).
MAX_PENDING_CHARGES = 1000
#: Calls to Redis in flight at once per store (below the asyncio pool's 100 connections);
#: further calls queue, within their ``redis_timeout_s``.
MAX_REDIS_CALLS = 64

_DECISIONS = metrics.counter(
    "workbench_router_rate_limit_decisions_total",
    "Requests refused by the per-key rate limits, or decided without the shared store",
    ["result"],
)
_LIMITED_REQUESTS = _DECISIONS.labels("limited_requests")
_LIMITED_TOKENS = _DECISIONS.labels("limited_tokens")
_OPEN = _DECISIONS.labels("store_down_admitted")
_CLOSED = _DECISIONS.labels("store_down_refused")
_DROPPED = _DECISIONS.labels("charge_dropped")


def key_id(secret: str) -> str:
    """The identity of a client key in Redis and logs: SHA-256 of it, 32 hex digits."""
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Plan:
    """One key's bucket parameters; a rate of 0 means no limit of that kind.

    Attributes:
        rpm: Requests per minute (0: none).
        burst: Size of the request bucket.
        tpm: Tokens per minute, also the size of the token bucket (0: none).
    """

    rpm: int
    burst: int
    tpm: int

    @classmethod
    def of(cls, limits: KeyLimits) -> Plan:
        rpm = 0 if limits.unlimited or limits.rpm is None else limits.rpm
        burst = limits.burst if limits.burst is not None else rpm
        tpm = 0 if limits.unlimited or limits.tpm is None else limits.tpm
        return cls(rpm, burst if rpm else 0, tpm)

    @property
    def limited(self) -> bool:
        return bool(self.rpm or self.tpm)


@dataclass(frozen=True, slots=True)
class ClientKey:
    """What the router knows of one client key.

    Attributes:
        name: The environment variable it was read from (``None``: no client keys, the
            loopback client).
        id: :func:`key_id` of the key (``"anonymous"`` without keys).
        plan: Its limits.
    """

    name: str | None
    id: str
    plan: Plan


def client_keys(config: RouterConfig) -> tuple[dict[bytes, ClientKey], ClientKey]:
    """Each accepted key (as sent after ``Bearer``) to its :class:`ClientKey`, and the client
    used when no keys are configured."""
    limits = config.limits
    table = {
        secret.encode(): ClientKey(name, key_id(secret), Plan.of(limits.for_key(name)))
        for secret, name in config.client_key_names.items()
    }
    return table, ClientKey(None, "anonymous", Plan.of(limits.for_key(None)))


@dataclass(slots=True)  # not frozen: made on every request, and frozen ones cost 4x to build
class Decision:
    """The answer to one admission (treat it as read-only).

    Attributes:
        allowed: Whether the request may go on.
        plan: The limits applied.
        requests: Requests left in the bucket after this one (fractional).
        tokens: Tokens left after the reservation (may be negative).
        retry_after_s: When refused, seconds until it would be admitted.
        reserved: Tokens taken up front (charged against the usage later).
        unavailable: The store did not answer (``allowed`` is then the ``fail_open`` policy).
    """

    allowed: bool
    plan: Plan
    requests: float = 0.0
    tokens: float = 0.0
    retry_after_s: float = 0.0
    reserved: int = 0
    unavailable: bool = False

    @property
    def limited_by(self) -> str:
        """``"requests"`` or ``"tokens"``: the bucket that refused (meaningful when refused)."""
        return "requests" if self.plan.rpm and self.requests < 1 else "tokens"

    def headers(self) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers (and ``Retry-After`` when refused)."""
        out: dict[str, str] = {}
        if self.unavailable:
            return {"Retry-After": str(math.ceil(RETRY_REDIS_S))} if not self.allowed else out
        p = self.plan
        if p.rpm:
            full_s = (p.burst - self.requests) * 60.0 / p.rpm
            out["x-ratelimit-limit-requests"] = str(p.rpm)
            out["x-ratelimit-remaining-requests"] = str(max(0, math.floor(self.requests)))
            out["x-ratelimit-reset-requests"] = format_reset(full_s)
        if p.tpm:
            full_s = (p.tpm - self.tokens) * 60.0 / p.tpm
            out["x-ratelimit-limit-tokens"] = str(p.tpm)
            out["x-ratelimit-remaining-tokens"] = str(max(0, math.floor(self.tokens)))
            out["x-ratelimit-reset-tokens"] = format_reset(full_s)
        if not self.allowed:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return out


def format_reset(seconds: float) -> str:
    """A duration as OpenAI writes it in ``x-ratelimit-reset-*``: ``20ms``, ``1s``, ``6m0s``."""
    if seconds < 1.0:
        return f"{math.ceil(seconds * 1000) if seconds > 0 else 0}ms"
    if seconds < 60.0:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(round(seconds, 3), 60.0)
    return f"{int(minutes)}m{round(rest, 3):g}s"


def _refill(state: list[float], plan: Plan, now: float) -> None:
    """Bring ``[requests, tokens, at]`` up to ``now`` (the Lua script does the same)."""
    dt = now - state[2]
    if dt > 0:
        if plan.rpm:
            state[0] = min(plan.burst, state[0] + dt * plan.rpm / 60.0)
        if plan.tpm:
            state[1] = min(plan.tpm, state[1] + dt * plan.tpm / 60.0)
        state[2] = now
    state[0] = min(state[0], plan.burst)  # a reload may have shrunk the buckets
    state[1] = min(state[1], plan.tpm)


def _decide(state: list[float], plan: Plan, reserve: int) -> tuple[bool, float]:
    """Take a request (and ``reserve`` tokens) from a refilled ``state`` if both buckets allow;
    returns ``(allowed, retry_after_s)``."""
    ok_requests = not plan.rpm or state[0] >= 1.0
    ok_tokens = not plan.tpm or state[1] > 0.0
    if ok_requests and ok_tokens:
        if plan.rpm:
            state[0] -= 1.0
        if plan.tpm:
            state[1] = max(state[1] - reserve, -plan.tpm)
        return True, 0.0
    wait = 0.0
    if not ok_requests:
        wait = (1.0 - state[0]) * 60.0 / plan.rpm
    if not ok_tokens:
        wait = max(wait, -state[1] * 60.0 / plan.tpm)
    return False, wait


class BucketStore(Protocol):
    """Where the buckets live: :class:`LocalBuckets` or :class:`RedisBuckets`."""

    async def admit(self, key: str, plan: Plan, reserve: int) -> Decision:
        """Refill, check and take, atomically; raises BackendUnavailable or TimeoutError."""
        ...

    async def charge(self, key: str, plan: Plan, tokens: int) -> None:
        """Take ``tokens`` more from the token bucket (negative: give them back)."""
        ...

    async def aclose(self) -> None: ...


class LocalBuckets:
    """Buckets in this process, one per client key (bounded by the configured keys).

    Args:
        clock: Seconds on a monotonic clock (tests drive time with it).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._state: dict[str, list[float]] = {}

    def admit_now(self, key: str, plan: Plan, reserve: int) -> Decision:
        """:meth:`admit` without the coroutine (it never waits)."""
        now = self.clock()
        state = self._state.get(key)
        if state is None:
            state = self._state[key] = [float(plan.burst), float(plan.tpm), now]
        else:
            _refill(state, plan, now)
        allowed, wait = _decide(state, plan, reserve)
        return Decision(allowed, plan, state[0], state[1], wait, reserve if allowed else 0)

    async def admit(self, key: str, plan: Plan, reserve: int) -> Decision:
        return self.admit_now(key, plan, reserve)

    def charge_now(self, key: str, plan: Plan, tokens: int) -> None:
        state = self._state.get(key)
        if state is None or not plan.tpm:
            return
        _refill(state, plan, self.clock())
        state[1] = max(min(state[1] - tokens, plan.tpm), -plan.tpm)

    async def charge(self, key: str, plan: Plan, tokens: int) -> None:
        self.charge_now(key, plan, tokens)

    async def aclose(self) -> None:
        self._state.clear()


# KEYS[1]: a hash {r, t, ts}. ARGV: now in seconds ('' for the server's clock), requests per
# minute (0: no limit), request bucket size, tokens per minute (0: no limit), then for 'admit'
# the tokens to reserve, for 'charge' the tokens to take (negative: give back); ARGV[6] the mode.
# Returns {allowed 0/1, requests left, tokens left, retry-after seconds}; fractions as text.
_BUCKETS_LUA = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local rpm, burst, tpm = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local amount, mode = tonumber(ARGV[5]), ARGV[6]
local s = redis.call('HMGET', KEYS[1], 'r', 't', 'ts')
local r, t, ts = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
if r == nil or t == nil or ts == nil then
  r, t, ts = burst, tpm, now
end
if now > ts then
  r = math.min(burst, r + (now - ts) * rpm / 60)
  t = math.min(tpm, t + (now - ts) * tpm / 60)
  ts = now
end
r = math.min(r, burst)
t = math.min(t, tpm)
local allowed, wait = 1, 0
if mode == 'charge' then
  if tpm > 0 then t = math.max(math.min(t - amount, tpm), -tpm) end
else
  local ok_r = rpm == 0 or r >= 1
  local ok_t = tpm == 0 or t > 0
  if ok_r and ok_t then
    if rpm > 0 then r = r - 1 end
    if tpm > 0 then t = math.max(t - amount, -tpm) end
  else
    allowed = 0
    if not ok_r then wait = (1 - r) * 60 / rpm end
    if not ok_t then wait = math.max(wait, -t * 60 / tpm) end
  end
end
redis.call('HSET', KEYS[1], 'r', string.format('%.17g', r), 't', string.format('%.17g', t),
  'ts', string.format('%.17g', ts))
local full = 0
if rpm > 0 then full = math.max(full, (burst - r) * 60 / rpm) end
if tpm > 0 then full = math.max(full, (tpm - t) * 60 / tpm) end
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(full * 1000)))
return {allowed, string.format('%.17g', r), string.format('%.17g', t), string.format('%.17g', wait)}
"""


#: The version of the bucket hash layout, part of every key.
_LAYOUT = "v1:"


class RedisBuckets:
    """Buckets in Redis, shared by every router that uses the same URL and prefix.

    Args:
        url: The Redis URL.
        prefix: Prefix of the keys (``<prefix>v1:<key id>``; the ``v1`` names the layout of
            the hash, so a router with another layout never reads it).
        timeout_s: Longest one call may take, connecting included.
        clock: Seconds on a clock shared by every router (tests); ``None``: the Redis
            server's own clock, which every router shares whatever their hosts' clocks.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "workbench:router:limits:",
        timeout_s: float = 0.25,
        clock: Callable[[], float] | None = None,
    ) -> None:
        from workbench.redis_adapter import RedisAdapter

        self.adapter = RedisAdapter(url, prefix=prefix, timeout_s=timeout_s)
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.clock = clock
        self._client: Any = None
        self._script: Any = None
        self._slots: asyncio.Semaphore | None = None

    async def _run(self, key: str, plan: Plan, amount: int, mode: str) -> list[Any]:
        if self._client is None:  # made in the running loop: asyncio pools belong to one
            self._client = self.adapter.async_client()
            self._script = self._client.register_script(_BUCKETS_LUA)
            self._slots = asyncio.Semaphore(MAX_REDIS_CALLS)
        assert self._slots is not None
        async with asyncio.timeout(self.timeout_s), self._slots:
            now = "" if self.clock is None else repr(float(self.clock()))
            args = [now, plan.rpm, plan.burst, plan.tpm, amount, mode]
            with self.adapter.errors():
                reply = await self._script(keys=[self.prefix + _LAYOUT + key], args=args)
        return list(reply)

    async def admit(self, key: str, plan: Plan, reserve: int) -> Decision:
        allowed, r, t, wait = await self._run(key, plan, reserve, "admit")
        ok = bool(int(allowed))
        return Decision(ok, plan, float(r), float(t), float(wait), reserve if ok else 0)

    async def charge(self, key: str, plan: Plan, tokens: int) -> None:
        await self._run(key, plan, tokens, "charge")

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a pool whose server may be gone
                await asyncio.wait_for(client.aclose(), 2.0)


class RateLimits:
    """The limits of one configuration over a store (see the module docstring).

    Args:
        config: The ``[router.limits]`` table.
        store: Where the buckets live.
        clock: Monotonic seconds (when to ask a failed store again).
    """

    def __init__(
        self,
        config: LimitsConfig,
        store: BucketStore,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        self._clock = clock
        self._down_until = -math.inf
        self._warned_at = -math.inf
        self._pending: set[asyncio.Task[None]] = set()

    async def admit(self, client: ClientKey, reserve: int) -> Decision:
        """Admit one request of ``client``, reserving ``reserve`` tokens (when its plan has a
        TPM limit and ``reserve_prompt_tokens`` is on)."""
        plan = client.plan
        if not plan.limited:
            return Decision(True, plan)
        reserve = reserve if plan.tpm and self.config.reserve_prompt_tokens else 0
        store = self.store
        if isinstance(store, LocalBuckets):
            decision = store.admit_now(client.id, plan, reserve)
        elif self._clock() < self._down_until:
            return self._unavailable(plan, None)
        else:
            try:
                decision = await store.admit(client.id, plan, reserve)
            except (BackendUnavailable, TimeoutError) as exc:
                self._down_until = self._clock() + RETRY_REDIS_S
                return self._unavailable(plan, exc)
        if not decision.allowed:
            (_LIMITED_REQUESTS if decision.limited_by == "requests" else _LIMITED_TOKENS).inc()
        return decision

    def _unavailable(self, plan: Plan, exc: BaseException | None) -> Decision:
        open_ = self.config.fail_open
        (_OPEN if open_ else _CLOSED).inc()
        now = self._clock()
        if exc is not None and now - self._warned_at >= 60.0:
            self._warned_at = now
            logger.warning(
                "rate limit store does not answer (%s); %s requests until it does",
                str(exc) or type(exc).__name__,
                "admitting" if open_ else "refusing",
            )
        return Decision(open_, plan, unavailable=True, retry_after_s=RETRY_REDIS_S)

    def settle(
        self, client: ClientKey, decision: Decision, tokens: int, *, attempted: bool = True
    ) -> None:
        """Charge the usage the backend reported against what was reserved at admission.

        ``tokens`` is the reported ``total_tokens`` (0: none reported, so the reservation
        stands); a request that never reached a backend (``attempted=False``: an unknown
        model, a malformed body) gets its reservation back. Never waits: a shared store is
        charged in the background (at most :data:`MAX_PENDING_CHARGES` at once; a charge
        beyond that is dropped and counted).
        """
        plan = client.plan
        if not plan.tpm or not decision.allowed or decision.unavailable:
            return
        if not attempted:
            delta = -decision.reserved
        else:
            delta = (tokens if tokens > 0 else decision.reserved) - decision.reserved
        if delta == 0:
            return
        store = self.store
        if isinstance(store, LocalBuckets):
            store.charge_now(client.id, plan, delta)
            return
        if len(self._pending) >= MAX_PENDING_CHARGES or self._clock() < self._down_until:
            _DROPPED.inc()
            return
        task = asyncio.get_running_loop().create_task(self._charge(client.id, plan, delta))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _charge(self, key: str, plan: Plan, tokens: int) -> None:
        try:
            await self.store.charge(key, plan, tokens)
        except (BackendUnavailable, TimeoutError) as exc:
            _DROPPED.inc()
            logger.debug("token charge of %d for a client key dropped: %s", tokens, exc)

    async def aclose(self) -> None:
        """Wait (up to 2 s) for background charges, then close the store."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=2.0)
            for task in self._pending:
                task.cancel()
        await self.store.aclose()


def make_store(config: RouterConfig, clock: Callable[[], float]) -> BucketStore:
    """:class:`RedisBuckets` when ``[router] redis_url`` is set, else :class:`LocalBuckets`."""
    if config.redis_url is None:
        return LocalBuckets(clock)
    limits = config.limits
    return RedisBuckets(
        config.redis_url, prefix=limits.redis_prefix, timeout_s=limits.redis_timeout_s
    )


def store_signature(config: RouterConfig) -> tuple[Any, ...]:
    """Configurations with the same signature can keep one store across a reload."""
    if config.redis_url is None:
        return ("local",)
    return ("redis", config.redis_url, config.limits.redis_prefix, config.limits.redis_timeout_s)


def _text_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        n = 0
        for item in value:
            if isinstance(item, str):
                n += len(item)
            elif isinstance(item, dict):
                n += _text_chars(item.get("content", item.get("text")))
        return n
    return 0


def estimate_prompt_tokens(endpoint: str, body: Mapping[str, Any]) -> int:
    """About a token per four characters of the prompt (``messages``, ``prompt`` or
    ``input``), at least 1: what admission reserves against a TPM limit."""
    field = {"chat": "messages", "completions": "prompt"}.get(endpoint, "input")
    return max(1, math.ceil(_text_chars(body.get(field)) / 4))


def sse_usage_tokens(tail: bytes) -> int:
    """``usage.total_tokens`` of the last SSE frame in ``tail`` that reports usage (0: none).

    OpenAI-compatible backends send usage in the last frame before ``data: [DONE]`` when the
    client asked for ``stream_options.include_usage``; ``tail`` is the end of the stream.
    """
    at = tail.rfind(b'"usage"')
    if at < 0:
        return 0
    start = tail.rfind(b"data:", 0, at)
    end = tail.find(b"\n", at)
    if start < 0:
        return 0
    try:
        frame = orjson.loads(tail[start + 5 : end if end >= 0 else len(tail)])
        total = frame["usage"]["total_tokens"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return 0
    return total if isinstance(total, int) and total > 0 else 0
