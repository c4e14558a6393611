"""The router's response cache: deterministic chat completions answered again from
:mod:`workbench.cache` (``[router.cache] ttl_s = ...``).

Only what should give the same answer twice is cached: a non-streamed ``/v1/chat/completions``
request with ``temperature`` given as 0 and at most one choice (``n`` absent or 1). The key
is a SHA-256 of the model, the messages and every other parameter (sorted JSON of the body
without ``stream``, ``stream_options`` and ``user``), and, unless ``shared_across_keys`` is
set, of the client key's id too, so one client never learns what another asked. Only
successful (200) answers of at most ``max_entry_bytes`` are stored, for ``ttl_s`` seconds.

Answers carry ``x-workbench-cache: hit`` or ``miss`` (absent when the request could not be
cached). A hit is the stored answer, byte for byte (its ``id`` and ``created`` included); it
counts against the key's request limit but uses no tokens. The store is an
:class:`~workbench.cache.AsyncCache`, in memory or in Redis (shared by every router, with
the cache's own fallback to memory while Redis is out); writes happen after the answer is
sent, in the background (bounded), so a slow cache never delays a miss.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from workbench import metrics
from workbench.cache import AsyncCache, CacheConfig
from workbench.errors import BackendUnavailable, InputError
from workbench.router.config import ResponseCacheConfig

__all__ = ["CACHE_HEADER", "ResponseCache", "cache_key"]

logger = logging.getLogger(__name__)

#: The response header that says whether the cache answered.
CACHE_HEADER = "x-workbench-cache"
#: Layout of a stored entry; entries of another layout are misses.
ENTRY_VERSION = 1
#: Cache writes in flight at most; beyond it an answer is simply not stored.
MAX_PENDING_WRITES = 256

_VOLATILE = frozenset({"stream", "stream_options", "user"})
_LOOKUPS = metrics.counter(
    "workbench_router_response_cache_total",
    "Response cache lookups by result (hit, miss, error)",
    ["result"],
)
_HIT, _MISS, _ERROR = (_LOOKUPS.labels(r) for r in ("hit", "miss", "error"))


def cache_key(body: Mapping[str, Any], scope: str) -> str | None:
    """The cache key of a chat request ``body`` for the client ``scope``, or ``None`` when
    the request is not cacheable (streamed, temperature not 0, several choices)."""
    if body.get("stream") is True:
        return None
    temperature = body.get("temperature")
    if isinstance(temperature, bool) or temperature not in (0, 0.0):
        return None
    if body.get("n", 1) != 1:
        return None
    params = {k: v for k, v in body.items() if k not in _VOLATILE}
    try:
        canonical = orjson.dumps([scope, params], option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON after all (a huge integer): just not cached
        return None
    return hashlib.sha256(canonical).hexdigest()


class ResponseCache:
    """Answers of cacheable chat requests (see the module docstring).

    Args:
        config: The ``[router.cache]`` table.
        redis_url: ``[router] redis_url``, used when ``config.url`` is ``None``.
    """

    def __init__(self, config: ResponseCacheConfig, *, redis_url: str | None = None) -> None:
        self.config = config
        url = config.url if config.url is not None else redis_url
        self.cache = AsyncCache(
            url,
            namespace=config.namespace,
            config=CacheConfig(
                namespace=config.namespace,
                prefix="workbench:router:",
                max_value_bytes=config.max_entry_bytes + 1024,
                memory_bytes=config.memory_bytes,
                timeout_s=config.timeout_s,
                default_ttl_s=config.ttl_s,
            ),
        )
        self._pending: set[asyncio.Task[None]] = set()

    def key_for(self, body: Mapping[str, Any], client_id: str) -> str | None:
        """The key of ``body`` sent by the client ``client_id`` (``None``: not cacheable)."""
        return cache_key(body, "*" if self.config.shared_across_keys else client_id)

    async def get(self, key: str) -> tuple[bytes, str] | None:
        """The stored answer and the backend that gave it, or ``None``."""
        try:
            entry = await self.cache.get(key)
        except (BackendUnavailable, InputError) as exc:
            _ERROR.inc()
            logger.debug("response cache read failed: %s", exc)
            return None
        if (
            isinstance(entry, dict)
            and entry.get("v") == ENTRY_VERSION
            and isinstance(entry.get("body"), bytes)
        ):
            _HIT.inc()
            return entry["body"], str(entry.get("backend", ""))
        _MISS.inc()
        return None

    def put(self, key: str, body: bytes, backend: str) -> None:
        """Store an answer in the background (not when too large or too many are pending)."""
        if len(body) > self.config.max_entry_bytes or len(self._pending) >= MAX_PENDING_WRITES:
            return
        entry = {"v": ENTRY_VERSION, "body": body, "backend": backend}
        task = asyncio.get_running_loop().create_task(self._put(key, entry))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _put(self, key: str, entry: dict[str, Any]) -> None:
        try:
            await self.cache.set(key, entry, ttl=self.config.ttl_s)
        except (BackendUnavailable, InputError) as exc:
            _ERROR.inc()
            logger.debug("response cache write failed: %s", exc)

    async def aclose(self) -> None:
        """Wait (up to 2 s) for pending writes, then close the cache."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=2.0)
        await self.cache.aclose()
