"""Per-client request rates for routes that declare one (``rate_limit=`` on an ApiRouter route).

A token bucket per client (the peer address): ``per_min`` tokens a minute, holding at most
``burst`` (default ``per_min``, so a quiet client may spend a minute's allowance at once, as
the platform's fixed-window "N per minute" limits allowed). A request takes one token; with
none left it is refused with :class:`~workbench.errors.RateLimited` (HTTP 429 with
``Retry-After``). Buckets live in a bounded LRU map (``max_clients``): the least recently seen
client is forgotten first, which can only ever reset a client to a full bucket.

With ``[api] rate_limits = "redis"`` the buckets live in Redis instead
(:class:`SharedRateLimiter`, one atomic Lua script per request through
:meth:`~workbench.redis_adapter.RedisAdapter.take_token`), so every worker and every server
sharing that Redis enforce one limit per client. Should Redis stop answering, a shared limiter
falls back to local buckets (warning once a minute) rather than refuse or wave through all
traffic.

Why not a library: aiohttp has no rate limiter, and the maintained Python ones (limits,
slowapi) bring storage backends and ASGI glue for what is a dozen lines here.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from workbench.errors import BackendUnavailable, InputError, RateLimited

__all__ = ["RateLimiter", "SharedRateLimiter"]

logger = logging.getLogger(__name__)


class RateLimiter:
    """Token buckets by client for one route.

    Args:
        per_min: Requests a minute each client may send (> 0).
        burst: Most requests a client may send at once (default ``per_min``).
        max_clients: Clients remembered (least recently seen forgotten first).
        clock: Monotonic seconds (injected by tests).
        name: What is limited, for the error message.
    """

    def __init__(
        self,
        per_min: float,
        *,
        burst: int | None = None,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        name: str = "this route",
    ) -> None:
        if not per_min > 0:
            raise InputError(f"per_min must be > 0, got {per_min}", details={"field": "per_min"})
        self.rate_per_s = float(per_min) / 60.0
        self.per_min = float(per_min)
        self.burst = float(burst if burst is not None else max(1, math.floor(per_min)))
        if self.burst < 1:
            raise InputError(f"burst must be >= 1, got {burst}", details={"field": "burst"})
        self.max_clients = int(max_clients)
        self.clock = clock
        self.name = name
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Take one token for ``client``.

        Raises:
            RateLimited: the client has no token left; ``retry_after_s`` is when it will.
        """
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                wait = (1.0 - tokens) / self.rate_per_s
                raise RateLimited(
                    f"rate limit of {self.per_min:g} requests a minute on {self.name} reached; "
                    f"retry in {wait:.1f} s",
                    retry_after_s=wait,
                    details={"limitPerMinute": self.per_min, "retryAfterS": round(wait, 3)},
                )
            self._buckets[client] = (tokens - 1.0, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


class SharedRateLimiter:
    """Token buckets by client for one route, kept in Redis (shared by every process).

    Args:
        redis: The Redis adapter (its prefix namespaces the buckets).
        per_min: Requests a minute each client may send (> 0).
        burst: Most requests a client may send at once (default ``per_min``).
        name: What is limited: the route, for the key and the error message.
        fallback: Local buckets used while Redis does not answer.
        clock: Monotonic seconds, for the once-a-minute warning.
    """

    def __init__(
        self,
        redis: Any,
        per_min: float,
        *,
        burst: int | None = None,
        name: str = "this route",
        fallback: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local = (
            fallback if fallback is not None else RateLimiter(per_min, burst=burst, name=name)
        )
        self.redis = redis
        self.per_min = self.local.per_min
        self.rate_per_s = self.local.rate_per_s
        self.burst = self.local.burst
        self.name = name
        self.clock = clock
        self._warned_at = -math.inf

    def check(self, client: str) -> None:
        """Take one token for ``client`` from its bucket in Redis.

        Raises:
            RateLimited: the client has no token left; ``retry_after_s`` is when it will.
        """
        try:
            allowed, wait = self.redis.take_token(
                self.redis.key("ratelimit", self.name, client), self.rate_per_s, self.burst
            )
        except BackendUnavailable as exc:
            now = self.clock()
            if now - self._warned_at >= 60:
                self._warned_at = now
                logger.warning("rate limits of %s fall back to local buckets: %s", self.name, exc)
            self.local.check(client)
            return
        if not allowed:
            raise RateLimited(
                f"rate limit of {self.per_min:g} requests a minute on {self.name} reached; "
                f"retry in {wait:.1f} s",
                retry_after_s=wait,
                details={"limitPerMinute": self.per_min, "retryAfterS": round(wait, 3)},
            )
