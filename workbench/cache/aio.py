"""The asyncio cache: :class:`AsyncCache`, the same core as :class:`~workbench.cache.Cache`
under an asyncio I/O shell.

Keys, encoding, TTLs, the memory tier, the outage journal and the fallback's decisions are the
shared :class:`~workbench.cache.base.CacheCore` and :class:`~workbench.cache.base.Fallback`;
this module only sends their Redis commands with ``redis.asyncio`` (through
:meth:`~workbench.redis_adapter.RedisAdapter.async_client`). The memory tier never blocks
(no I/O), so memory-backed calls are plain coroutine returns.

asyncio connection pools belong to one event loop: the client is made on first use in the
running loop; ``await cache.aclose()`` releases it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from workbench.cache.base import CacheConfig, Fallback
from workbench.cache.cache import breaker_for, make_core, parse_url
from workbench.cache.memory import MISSING
from workbench.cache.stats import REDIS_LATENCY, CacheCounters, track
from workbench.errors import BackendUnavailable, InputError
from workbench.redis_adapter import RedisAdapter

__all__ = ["AsyncCache"]

logger = logging.getLogger(__name__)


#: Longest each step of closing a cache may take, seconds.
CLOSE_TIMEOUT_S = 2.0


class _Down(Exception):
    """Redis is out for this call: serve it from the memory tier."""


class AsyncCache:
    """A namespaced cache on memory or Redis for asyncio code (see :class:`~workbench.cache.Cache`
    for the arguments; the methods are the same, awaited)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str = "default",
        cluster: bool = False,
        config: CacheConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        **settings: Any,
    ) -> None:
        self.url = parse_url(url)
        self.core = core = make_core(namespace, config, settings, clock, wall)
        self.config = core.config
        self.namespace = core.config.namespace
        self.counters = CacheCounters()
        self._latency: dict[str, Any] = {}
        self.cluster = bool(cluster)
        self._id = uuid.uuid4().hex[:12]
        self._inval_gen = 0
        self._client: Any = None
        self._listener: asyncio.Task[None] | None = None
        self.listener_ready = asyncio.Event()
        if self.url is None:
            if cluster:
                raise InputError("cluster=True needs a redis:// url", details={"field": "cluster"})
            self.adapter: RedisAdapter | None = None
        else:
            self.adapter = RedisAdapter(self.url, timeout_s=self.config.timeout_s, cluster=cluster)
            self.breaker = breaker_for(core)
            self.fallback = Fallback(core, self.breaker, self.counters)
        track(self)

    def __repr__(self) -> str:
        where = "memory" if self.adapter is None else repr(self.adapter)
        return f"AsyncCache({where}, namespace={self.namespace!r}, mode={self.current_mode()!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            assert self.adapter is not None
            self._client = self.adapter.async_client()
            if self.config.two_tier and self._listener is None:
                self._listener = asyncio.get_running_loop().create_task(self._listen())
        return self._client

    @property
    def two_tier(self) -> bool:
        return self.adapter is not None and self.config.two_tier

    # -- the Redis path -----------------------------------------------------------------------

    async def _redis(self, op: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        fb = self.fallback
        route = fb.route()
        if route == "local":
            raise _Down
        if route == "recover":
            if not await self._recover():
                raise _Down
            if fb.route() != "redis":
                raise _Down
        start = time.perf_counter()
        try:
            assert self.adapter is not None
            with self.adapter.errors():
                result = await fn(*args, **kwargs)
        except BackendUnavailable as exc:
            fb.failed(exc, time.perf_counter() - start, op)
            raise _Down from exc
        except BaseException:
            self.breaker.on_ignored()
            raise
        elapsed = time.perf_counter() - start
        fb.succeeded(elapsed)
        hist = self._latency.get(op)
        if hist is None:
            hist = self._latency[op] = REDIS_LATENCY.labels(self.namespace, op)
        hist.observe(elapsed)
        return result

    async def _recover(self) -> bool:
        try:
            assert self.adapter is not None
            with self.adapter.errors():
                await _reset_async(self.client)
                await self.client.ping()
                replayed = await self._replay()
        except BackendUnavailable as exc:
            self.fallback.recovery_failed(exc)
            return False
        except BaseException as exc:
            self.fallback.recovery_failed(exc)
            raise
        self._inval_gen += 1
        self.fallback.recovered(replayed)
        return True

    async def _replay(self) -> int:
        flush, _ = self.core.recovery_plan()
        if flush:
            await self._flush_remote_namespace()
            self.core.journal.clear()
            return 0
        sent = 0
        while True:
            _, batch = self.core.recovery_plan()
            if not batch:
                return sent
            pipe = self.client.pipeline(transaction=False)
            for _, cmds in batch:
                for cmd in cmds:
                    pipe.execute_command(*cmd)
            if self.two_tier:
                for key, _ in batch:
                    pipe.publish(self.config.channel, self._message("k", key))
            await pipe.execute()
            self.core.journal.commit([k for k, _ in batch])
            sent += len(batch)

    async def _flush_remote_namespace(self) -> int:
        n = 0
        batch: list[Any] = []
        match = _escape(self.core.prefix) + "*"
        async for raw in self.client.scan_iter(match=match, count=500):
            batch.append(raw)
            if len(batch) >= 500:
                n += int(await self.client.delete(*batch))
                batch.clear()
        if batch:
            n += int(await self.client.delete(*batch))
        if self.two_tier:
            await self.client.publish(self.config.channel, self._message("*", ""))
        return n

    def _message(self, kind: str, key: str) -> str:
        return f"{self._id}|{kind}|{key}"

    def invalidation_message(self, full: str) -> str:
        """The message this cache publishes on its namespace's channel when ``full`` (a full
        key) changes; code that writes Redis itself (a Lua script) publishes it too."""
        return self._message("k", full)

    def drop_local(self, full: str) -> None:
        """Forget the memory tier's copy of ``full`` (after a write made outside this cache)."""
        self._inval_gen += 1
        self.core.memory.delete(full)

    _invalidate_local = drop_local

    # -- reads --------------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        core = self.core
        full = core.key(key)
        if self.adapter is None or (
            self.two_tier and self.fallback.up and self.listener_ready.is_set()
        ):
            value = core.local_get(full, MISSING)
            if value is not MISSING:
                self.counters.hits += 1
                return value
            if self.adapter is None:
                self.counters.misses += 1
                return default
        gen = self._inval_gen
        pttl: int | None = None
        try:
            if self.two_tier:
                data, pttl = await self._redis("get", self._get_with_ttl, full)
            else:
                data = await self._redis("get", self.client.get, full)
        except _Down:
            self.counters.fallback += 1
            value = core.local_get(full, MISSING)
            if value is MISSING:
                self.counters.misses += 1
                return default
            self.counters.hits += 1
            return value
        if data is None:
            self.counters.misses += 1
            return default
        self.counters.hits += 1
        value = core.decode(data)
        if self.two_tier and gen == self._inval_gen:
            ttl_s = None if pttl is None or pttl < 0 else pttl / 1000.0
            core.local_set(full, data, core.read_through_ttl(ttl_s), value)
        return value

    async def _get_with_ttl(self, full: str) -> tuple[bytes | None, int | None]:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(full)
        pipe.pttl(full)
        data, pttl = await pipe.execute()
        return data, pttl

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        fulls = [self.core.key(k) for k in keys]
        if not keys:
            return {}
        if self.adapter is None:
            return self._count_many(self.core.local_many(keys, fulls), len(keys))
        try:
            fn = self.client.mget_nonatomic if self.cluster else self.client.mget
            values = await self._redis("get_many", fn, fulls)
        except _Down:
            self.counters.fallback += 1
            return self._count_many(self.core.local_many(keys, fulls), len(keys))
        return self._count_many(self.core.decode_many(keys, values), len(keys))

    def _count_many(self, out: dict[str, Any], n: int) -> dict[str, Any]:
        self.counters.hits += len(out)
        self.counters.misses += n - len(out)
        return out

    async def exists(self, key: str) -> bool:
        full = self.core.key(key)
        if self.adapter is not None:
            try:
                return bool(await self._redis("exists", self.client.exists, full))
            except _Down:
                self.counters.fallback += 1
        return full in self.core.memory

    async def ttl(self, key: str) -> float | None:
        full = self.core.key(key)
        if self.adapter is not None:
            try:
                ms = int(await self._redis("ttl", self.client.pttl, full))
                return None if ms < 0 else ms / 1000.0
            except _Down:
                self.counters.fallback += 1
        return self.core.memory.ttl(full)

    async def keys(self, pattern: str = "*") -> list[str]:
        """Keys of this namespace matching the glob ``pattern`` (SCAN, never KEYS)."""
        if not isinstance(pattern, str) or len(pattern) > self.config.max_key_length:
            raise InputError("pattern: must be a str no longer than max_key_length")
        prefix, local = self.core.prefix, self.core.local_pattern(pattern)
        if self.adapter is not None and self.fallback.up:
            try:
                return list(await self._redis("keys", self._scan, prefix + pattern))
            except _Down:
                pass
        return [
            full[len(prefix) :]
            for full in self.core.memory.live_keys()
            if full.startswith(prefix) and fnmatch.fnmatchcase(full[len(prefix) :], local)
        ]

    async def _scan(self, match: str) -> list[str]:
        n = len(self.core.prefix)
        out = []
        async for raw in self.client.scan_iter(match=match, count=500):
            s = raw.decode() if isinstance(raw, bytes) else str(raw)
            out.append(s[n:])
        return out

    # -- writes -------------------------------------------------------------------------------

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        core = self.core
        full = core.key(key)
        data = core.encode(value)
        ttl_s = core.ttl(ttl)
        self.counters.sets += 1
        if self.adapter is None:
            core.local_set(full, data, ttl_s, value)
            return
        try:
            if self.two_tier:
                await self._redis("set", self._set_and_publish, full, data, ttl_s)
                self._invalidate_local(full)
            else:
                await self._redis("set", self.client.set, full, data, px=core.px(ttl_s))
        except _Down:
            self.counters.fallback += 1
            core.fallback_set([(full, data, value)], ttl_s)

    async def _set_and_publish(self, full: str, data: bytes, ttl_s: float | None) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.set(full, data, px=self.core.px(ttl_s))
        pipe.publish(self.config.channel, self._message("k", full))
        await pipe.execute()

    async def set_many(self, mapping: Mapping[str, Any], ttl: float | None = None) -> None:
        if not isinstance(mapping, Mapping):
            raise InputError("mapping: must be a mapping of keys to values")
        core = self.core
        ttl_s = core.ttl(ttl)
        items = [(core.key(k), core.encode(v), v) for k, v in mapping.items()]
        if not items:
            return
        self.counters.sets += len(items)
        if self.adapter is None:
            for full, data, v in items:
                core.local_set(full, data, ttl_s, v)
            return
        try:
            await self._redis("set_many", self._pipeline_set, items, ttl_s)
        except _Down:
            self.counters.fallback += 1
            core.fallback_set(items, ttl_s)
            return
        if self.two_tier:
            for full, _, _ in items:
                self._invalidate_local(full)

    async def _pipeline_set(self, items: list[tuple[str, bytes, Any]], ttl_s: float | None) -> None:
        pipe = self.client.pipeline(transaction=False)
        px = self.core.px(ttl_s)
        if px is None and not self.cluster:
            pipe.mset({full: data for full, data, _ in items})
        else:
            for full, data, _ in items:
                pipe.set(full, data, px=px)
        if self.two_tier:
            for full, _, _ in items:
                pipe.publish(self.config.channel, self._message("k", full))
        await pipe.execute()

    async def delete(self, key: str) -> bool:
        return bool(await self.delete_many([key]))

    async def delete_many(self, keys: Iterable[str]) -> int:
        fulls = [self.core.key(k) for k in keys]
        if not fulls:
            return 0
        self.counters.deletes += len(fulls)
        if self.adapter is None:
            return sum(self.core.memory.delete(f) for f in fulls)
        try:
            n = int(await self._redis("delete", self._delete_and_publish, fulls))
        except _Down:
            self.counters.fallback += 1
            return self.core.fallback_delete(fulls)
        for full in fulls:
            self._invalidate_local(full)
        return n

    async def _delete_and_publish(self, fulls: list[str]) -> int:
        pipe = self.client.pipeline(transaction=False)
        for full in fulls:
            pipe.delete(full)
            if self.two_tier:
                pipe.publish(self.config.channel, self._message("k", full))
        replies = await pipe.execute()
        return sum(int(r) for r in (replies[::2] if self.two_tier else replies))

    async def delete_prefix(self, prefix: str) -> int:
        if not isinstance(prefix, str):
            raise InputError("prefix: must be a str", details={"field": "prefix"})
        return await self.delete_many(await self.keys(_escape(prefix) + "*"))

    async def clear(self) -> int:
        return await self.delete_prefix("")

    async def incr(self, key: str, amount: int = 1) -> int:
        self.core.check_amount(amount)
        full = self.core.key(key)
        if self.adapter is not None:
            try:
                value = int(await self._redis("incr", self.client.incrby, full, amount))
            except _Down:
                self.counters.fallback += 1
                return self.core.fallback_incr(full, amount)
            else:
                if self.two_tier:
                    self._invalidate_local(full)
                return value
        return self.core.local_incr(full, amount)

    async def expire(self, key: str, ttl: float | None) -> bool:
        full = self.core.key(key)
        ttl_s = None if ttl is None else self.core.ttl(ttl)
        if self.adapter is not None:
            try:
                if ttl_s is None:
                    done = await self._redis("expire", self.client.persist, full)
                    done = done or bool(await self._redis("exists", self.client.exists, full))
                else:
                    px = self.core.px(ttl_s)
                    done = await self._redis("expire", self.client.pexpire, full, px)
            except _Down:
                self.counters.fallback += 1
                return self.core.fallback_expire(full, ttl_s)
            else:
                if self.two_tier:
                    self._invalidate_local(full)
                return bool(done)
        return self.core.memory.expire(full, ttl_s)

    # -- hashes -------------------------------------------------------------------------------

    async def hset(self, key: str, field: str, value: Any) -> None:
        full, fld = self.core.key(key), self.core.field(field)
        data = self.core.encode(value)
        if self.adapter is not None:
            try:
                await self._redis("hset", self.client.hset, full, fld, data)
                return
            except _Down:
                self.counters.fallback += 1
                self.core.fallback_hset(full, fld, data)
                return
        self.core.local_hash_update(full, lambda h: h.__setitem__(fld, data))

    async def hget(self, key: str, field: str, default: Any = None) -> Any:
        full, fld = self.core.key(key), self.core.field(field)
        if self.adapter is not None:
            try:
                data = await self._redis("hget", self.client.hget, full, fld)
                return default if data is None else self.core.decode(data)
            except _Down:
                self.counters.fallback += 1
        data = self.core.local_hash(full).get(fld)
        return default if data is None else self.core.decode(data)

    async def hgetall(self, key: str) -> dict[str, Any]:
        full = self.core.key(key)
        if self.adapter is not None:
            try:
                raw = await self._redis("hgetall", self.client.hgetall, full)
                return {
                    (f.decode() if isinstance(f, bytes) else f): self.core.decode(v)
                    for f, v in raw.items()
                }
            except _Down:
                self.counters.fallback += 1
        return {f: self.core.decode(v) for f, v in self.core.local_hash(full).items()}

    async def hdel(self, key: str, field: str) -> bool:
        full, fld = self.core.key(key), self.core.field(field)
        if self.adapter is not None:
            try:
                return bool(await self._redis("hdel", self.client.hdel, full, fld))
            except _Down:
                self.counters.fallback += 1
                return self.core.fallback_hdel(full, fld)
        return self.core.local_hdel(full, fld)

    # -- health and lifecycle -----------------------------------------------------------------

    def current_mode(self) -> str:
        if self.adapter is None:
            return "memory"
        if not self.fallback.up:
            return "fallback"
        return "two-tier" if self.config.two_tier else "redis"

    def in_fallback(self) -> bool:
        return self.adapter is not None and not self.fallback.up

    def memory_bytes(self) -> int:
        return self.core.memory.bytes_used

    async def health(self) -> dict[str, Any]:
        latency_ms: float | None = None
        if self.adapter is not None:
            latency_ms = 0.0
            start = time.perf_counter()
            try:
                await self._redis("ping", self.client.ping)
                latency_ms = (time.perf_counter() - start) * 1000
            except (_Down, BackendUnavailable):
                pass
        up = self.adapter is None or self.fallback.up
        return self.core.health_report(latency_ms, up, self.current_mode())

    def stats(self) -> dict[str, Any]:
        breaker = None if self.adapter is None else self.breaker
        return self.core.stats_report(self.counters, self.current_mode(), breaker)

    async def aclose(self) -> None:
        """Stop the invalidation listener and close this loop's client.

        Each step is bounded (``CLOSE_TIMEOUT_S``): a listener cancelled in the middle of
        subscribing may leave its connection mid-read, and closing must not wait on it."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError, Exception):
                await asyncio.wait_for(self._listener, CLOSE_TIMEOUT_S)
            self._listener = None
        if self._client is not None:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(self._client.aclose(), CLOSE_TIMEOUT_S)
            self._client = None

    async def __aenter__(self) -> AsyncCache:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _listen(self) -> None:
        """Two-tier invalidations; the memory tier is emptied whenever the subscription
        (re)starts, since what was published meanwhile is unknown."""
        assert self.adapter is not None
        while True:
            pubsub = None
            try:
                with self.adapter.errors():
                    pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                    await pubsub.subscribe(self.config.channel)
                    await pubsub.get_message(timeout=1.0)  # the subscription's confirmation
                    self._inval_gen += 1
                    if self.fallback.up:  # in an outage the recovery empties the tier
                        self.core.memory.clear()
                    self.listener_ready.set()
                    while True:
                        msg = await pubsub.get_message(timeout=0.2)
                        if msg is not None:
                            self._handle(msg.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the listener never dies; it resubscribes
                self.listener_ready.clear()  # local copies unused until resubscribed
                self._inval_gen += 1
                logger.debug("cache %s: invalidation listener: %s", self.namespace, exc)
                await asyncio.sleep(0.2)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(asyncio.TimeoutError, Exception):
                        await asyncio.wait_for(pubsub.aclose(), CLOSE_TIMEOUT_S)

    def _handle(self, data: Any) -> None:
        if self.core.apply_invalidation(self._id, data):
            self._inval_gen += 1


async def _reset_async(client: Any) -> None:
    """Drop the loop's pooled connections (they may point at a server that restarted)."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        await pool.disconnect()
    else:  # a cluster client: one pool per node
        await client.aclose()


def _escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
