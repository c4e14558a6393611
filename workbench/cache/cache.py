"""The synchronous cache: :class:`Cache`, a thin I/O shell around :class:`CacheCore`.

``Cache(url=None)`` (or ``"memory://"``) is the memory backend: an LRU with a byte budget and
per-entry TTLs, and nothing else. ``Cache(url="redis://...")`` is Redis through
:mod:`workbench.redis_adapter` (one pool per URL, hiredis, timeouts), with the memory tier as
its fallback, and, with ``two_tier=True``, in front of it. ``cluster=True`` uses redis-py's
cluster client: ``get_many`` is MGET split by slot and ``set_many`` a pipeline split by node;
keys that must live on one slot share a ``{hash tag}``.

A Redis call that fails with a connection error or a timeout opens the cache's breaker at once
(one failed call per connection, bounded by ``timeout_s``); other failures count in its sliding
window. While it is open the call, and every later one, is served by the memory tier. After
``open_s`` the next call attempts recovery: PING, replay the outage journal, empty the memory
tier, close. :mod:`workbench.cache.base` states exactly what this guarantees.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from workbench.breaker import SlidingWindowBreaker
from workbench.cache.base import CacheConfig, CacheCore, Fallback
from workbench.cache.memory import MISSING
from workbench.cache.stats import REDIS_LATENCY, CacheCounters, track
from workbench.errors import BackendUnavailable, InputError
from workbench.redis_adapter import RedisAdapter

__all__ = ["Cache", "make_core", "parse_url"]

logger = logging.getLogger(__name__)


class _Down(Exception):
    """Redis is out for this call: serve it from the memory tier."""


def parse_url(url: str | None) -> str | None:
    """``None`` for the memory backend, else the Redis URL (validated by the adapter)."""
    if url is None or url == "memory://":
        return None
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise InputError(
            f"url: {url!r}; use None or 'memory://' for memory, or redis://, rediss://, unix://",
            details={"field": "url"},
        )
    return url


def make_core(
    namespace: str,
    config: CacheConfig | None,
    settings: Mapping[str, Any],
    clock: Callable[[], float],
    wall: Callable[[], float],
) -> CacheCore:
    if config is None:
        config = CacheConfig(namespace=namespace, **settings)
    elif settings:
        raise InputError("pass either config= or keyword settings, not both")
    return CacheCore(config, clock=clock, wall=wall)


def breaker_for(core: CacheCore) -> SlidingWindowBreaker:
    c = core.config
    return SlidingWindowBreaker(
        f"cache:{c.namespace}",
        window="count",
        size=c.window,
        min_calls=min(c.min_calls, c.window),
        failure_rate=c.failure_rate,
        open_s=c.open_s,
        max_open_s=max(c.open_s, 60.0),
        half_open_calls=1,
        clock=core.clock,
    )


class Cache:
    """A namespaced cache on memory or Redis (thread-safe).

    Args:
        url: ``None`` or ``"memory://"``: memory backend; ``redis://host:port/db``,
            ``rediss://`` or ``unix:///path.sock``: Redis.
        namespace: Keys are ``<namespace>:<key>`` (see :class:`CacheConfig`).
        cluster: ``url`` is one node of a Redis Cluster.
        config: A whole :class:`CacheConfig` instead of keyword settings.
        clock, wall: Injected monotonic and wall clocks (tests).
        **settings: Any :class:`CacheConfig` field (``default_ttl_s``, ``two_tier``,
            ``strict``, ``outage_writes``, ``memory_bytes``, ``serializer``, ...).
    """

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
        self._lock = threading.Lock()
        self._id = uuid.uuid4().hex[:12]
        self._inval_gen = 0
        self._listener: _Listener | None = None
        self._closed = False
        if self.url is None:
            if cluster:
                raise InputError("cluster=True needs a redis:// url", details={"field": "cluster"})
            self.adapter: RedisAdapter | None = None
        else:
            self.adapter = RedisAdapter(self.url, timeout_s=self.config.timeout_s, cluster=cluster)
            self.client: Any = self.adapter.client
            if cluster:
                self._cmd: Callable[..., Any] = self.client.execute_command
                self._pipe: Callable[[list[tuple[Any, ...]]], list[Any]] = self._cluster_pipe
            else:
                fast = self.adapter.fast()
                self._cmd, self._pipe = fast.command, fast.pipeline
            self.breaker = breaker_for(core)
            self.fallback = Fallback(core, self.breaker, self.counters)
            if self.config.two_tier:
                self._listener = _Listener(self)
        track(self)

    def __repr__(self) -> str:
        where = "memory" if self.adapter is None else repr(self.adapter)
        return f"Cache({where}, namespace={self.namespace!r}, mode={self.current_mode()!r})"

    # -- the Redis path -----------------------------------------------------------------------

    def _redis(self, op: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)`` against Redis through the fallback's breaker; raises :class:`_Down`
        when this call must be served by the memory tier."""
        fb = self.fallback
        route = fb.route()
        if route == "local":
            raise _Down
        if route == "recover":
            if not self._recover():
                raise _Down
            if fb.route() != "redis":
                raise _Down
        start = time.perf_counter()
        try:
            assert self.adapter is not None
            with self.adapter.errors():
                result = fn(*args, **kwargs)
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

    def _recover(self) -> bool:
        """PING, replay the journal; report to the fallback. True when Redis is back.

        Holds the fallback's lock throughout, so no fallback write lands between the last
        journal batch sent and the memory tier being emptied."""
        assert self.adapter is not None
        with self.fallback.lock:
            try:
                self.adapter.reset_connections()
                with self.adapter.errors():
                    self.client.ping()
                    replayed = self._replay()
            except BackendUnavailable as exc:
                self.fallback.recovery_failed(exc)
                return False
            except BaseException as exc:
                self.fallback.recovery_failed(exc)
                raise
            self._inval_gen += 1
            self.fallback.recovered(replayed)
            return True

    def _replay(self) -> int:
        """Send the outage journal to Redis (raises redis-py errors inside ``errors()``)."""
        flush, _ = self.core.recovery_plan()
        if flush:
            self._flush_remote_namespace()
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
            if self._listener is not None:
                for key, _ in batch:
                    pipe.publish(self.config.channel, self._message("k", key))
            pipe.execute()
            self.core.journal.commit([k for k, _ in batch])
            sent += len(batch)

    def _flush_remote_namespace(self) -> int:
        n = 0
        batch: list[Any] = []
        for raw in self.client.scan_iter(match=self._escape(self.core.prefix) + "*", count=500):
            batch.append(raw)
            if len(batch) >= 500:
                n += int(self.client.delete(*batch))
                batch.clear()
        if batch:
            n += int(self.client.delete(*batch))
        if self._listener is not None:
            self.client.publish(self.config.channel, self._message("*", ""))
        return n

    @staticmethod
    def _escape(text: str) -> str:
        return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)

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

    def get(self, key: str, default: Any = None) -> Any:
        """The value at ``key``, or ``default`` when absent or expired."""
        core = self.core
        full = core.key(key)
        listener = self._listener
        if self.adapter is None or (
            listener is not None and self.fallback.up and listener.ready.is_set()
        ):
            value = core.local_get(full, MISSING)
            if value is not MISSING:
                self.counters.hits += 1
                return value
            if self.adapter is None:
                self.counters.misses += 1
                return default
        gen = self._inval_gen
        try:
            if self._listener is not None:
                data, pttl = self._redis("get", self._pipe, [("GET", full), ("PTTL", full)])
            else:
                data = self._redis("get", self._cmd, "GET", full)
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
        if self._listener is not None and gen == self._inval_gen:
            ttl_s = None if pttl is None or pttl < 0 else pttl / 1000.0
            core.local_set(full, data, core.read_through_ttl(ttl_s), value)
        return value

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of those ``keys`` that are present (one MGET; per slot in a cluster)."""
        keys = list(keys)
        fulls = [self.core.key(k) for k in keys]
        if not keys:
            return {}
        if self.adapter is None:
            return self._count_many(self.core.local_many(keys, fulls), len(keys))
        try:
            if self.cluster:
                values = self._redis("get_many", self.client.mget_nonatomic, fulls)
            else:
                values = self._redis("get_many", self._cmd, "MGET", *fulls)
        except _Down:
            self.counters.fallback += 1
            return self._count_many(self.core.local_many(keys, fulls), len(keys))
        return self._count_many(self.core.decode_many(keys, values), len(keys))

    def _count_many(self, out: dict[str, Any], n: int) -> dict[str, Any]:
        self.counters.hits += len(out)
        self.counters.misses += n - len(out)
        return out

    def exists(self, key: str) -> bool:
        full = self.core.key(key)
        if self.adapter is None:
            return full in self.core.memory
        try:
            return bool(self._redis("exists", self._cmd, "EXISTS", full))
        except _Down:
            self.counters.fallback += 1
            return full in self.core.memory

    def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires; ``None`` when it has no TTL or is absent."""
        full = self.core.key(key)
        if self.adapter is None:
            return self.core.memory.ttl(full)
        try:
            ms = int(self._redis("ttl", self._cmd, "PTTL", full))
        except _Down:
            self.counters.fallback += 1
            return self.core.memory.ttl(full)
        return None if ms < 0 else ms / 1000.0

    def keys(self, pattern: str = "*") -> Iterator[str]:
        """Keys of this namespace matching the glob ``pattern`` (SCAN, never KEYS)."""
        if not isinstance(pattern, str) or len(pattern) > self.config.max_key_length:
            raise InputError("pattern: must be a str no longer than max_key_length")
        prefix, local = self.core.prefix, self.core.local_pattern(pattern)
        if self.adapter is not None and self.fallback.up:
            found: list[str] = []
            try:
                found = self._redis("keys", self._scan, prefix + pattern)
            except _Down:
                pass
            else:
                yield from found
                return
        for full in self.core.memory.live_keys():
            if full.startswith(prefix) and fnmatch.fnmatchcase(full[len(prefix) :], local):
                yield full[len(prefix) :]

    def _scan(self, match: str) -> list[str]:
        n = len(self.core.prefix)
        out = []
        for raw in self.client.scan_iter(match=match, count=500):
            s = raw.decode() if isinstance(raw, bytes) else str(raw)
            out.append(s[n:])
        return out

    # -- writes -------------------------------------------------------------------------------

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` at ``key`` for ``ttl`` seconds (``None``: the default TTL)."""
        core = self.core
        full = core.key(key)
        data = core.encode(value)
        ttl_s = core.ttl(ttl)
        self.counters.sets += 1
        if self.adapter is None:
            core.local_set(full, data, ttl_s, value)
            return
        try:
            if self._listener is not None:
                self._redis("set", self._set_and_publish, full, data, ttl_s)
                self._invalidate_local(full)
            else:
                if ttl_s is None:
                    self._redis("set", self._cmd, "SET", full, data)
                else:
                    self._redis("set", self._cmd, "SET", full, data, "PX", core.px(ttl_s))
        except _Down:
            self.counters.fallback += 1
            done, _ = self.fallback.write_local(core.fallback_set, [(full, data, value)], ttl_s)
            if not done:
                self.set(key, value, ttl)

    def _set_and_publish(self, full: str, data: bytes, ttl_s: float | None) -> None:
        px = self.core.px(ttl_s)
        cmd: tuple[Any, ...] = ("SET", full, data) if px is None else ("SET", full, data, "PX", px)
        self._pipe([cmd, ("PUBLISH", self.config.channel, self._message("k", full))])

    def set_many(self, mapping: Mapping[str, Any], ttl: float | None = None) -> None:
        """Store every item (one pipeline; split by node in a cluster). Every value is encoded
        and checked before anything is written."""
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
            self._redis("set_many", self._pipeline_set, items, ttl_s)
        except _Down:
            self.counters.fallback += 1
            done, _ = self.fallback.write_local(core.fallback_set, items, ttl_s)
            if not done:
                self.set_many(mapping, ttl)
            return
        if self._listener is not None:
            for full, _, _ in items:
                self._invalidate_local(full)

    def _pipeline_set(self, items: list[tuple[str, bytes, Any]], ttl_s: float | None) -> None:
        px = self.core.px(ttl_s)
        cmds: list[tuple[Any, ...]]
        if px is None and not self.cluster:
            cmds = [("MSET", *[x for full, data, _ in items for x in (full, data)])]
        elif px is None:
            cmds = [("SET", full, data) for full, data, _ in items]
        else:
            cmds = [("SET", full, data, "PX", px) for full, data, _ in items]
        if self._listener is not None:
            channel = self.config.channel
            cmds += [("PUBLISH", channel, self._message("k", full)) for full, _, _ in items]
        self._pipe(cmds)

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""
        full = self.core.key(key)
        self.counters.deletes += 1
        if self.adapter is None:
            return self.core.memory.delete(full)
        try:
            if self._listener is not None:
                n = self._redis("delete", self._delete_and_publish, [full])
                self._invalidate_local(full)
            else:
                n = self._redis("delete", self._cmd, "DEL", full)
        except _Down:
            self.counters.fallback += 1
            done, n = self.fallback.write_local(self.core.fallback_delete, [full])
            if not done:
                return self.delete(key)
        return bool(n)

    def _delete_and_publish(self, fulls: list[str]) -> int:
        two_tier = self._listener is not None
        cmds: list[tuple[Any, ...]] = []
        for full in fulls:
            cmds.append(("DEL", full))
            if two_tier:
                cmds.append(("PUBLISH", self.config.channel, self._message("k", full)))
        replies = self._pipe(cmds)
        return sum(int(r) for r in (replies[::2] if two_tier else replies))

    def _cluster_pipe(self, cmds: list[tuple[Any, ...]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for cmd in cmds:
            pipe.execute_command(*cmd)
        return list(pipe.execute())

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove ``keys``; returns how many existed."""
        fulls = [self.core.key(k) for k in keys]
        if not fulls:
            return 0
        if self.adapter is None:
            return sum(self.core.memory.delete(f) for f in fulls)
        try:
            n = int(self._redis("delete", self._delete_and_publish, fulls))
        except _Down:
            self.counters.fallback += 1
            done, n = self.fallback.write_local(self.core.fallback_delete, fulls)
            if not done:
                return self.delete_many(keys)
            return int(n)
        for full in fulls:
            self._invalidate_local(full)
        return n

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key of this namespace starting with ``prefix`` (SCAN); returns how many."""
        if not isinstance(prefix, str):
            raise InputError("prefix: must be a str", details={"field": "prefix"})
        keys = [k for k in self.keys(self._escape(prefix) + "*")]
        return self.delete_many(keys)

    def incr(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to the integer at ``key`` (0 when absent) and return it. Counters
        are Redis integers (INCRBY), so concurrent processes never lose an increment."""
        self.core.check_amount(amount)
        full = self.core.key(key)
        if self.adapter is not None:
            try:
                value = int(self._redis("incr", self.client.incrby, full, amount))
            except _Down:
                self.counters.fallback += 1
                done, value = self.fallback.write_local(self.core.fallback_incr, full, amount)
                if not done:
                    return self.incr(key, amount)
                return int(value)
            if self._listener is not None:
                self._invalidate_local(full)
            return value
        return self.core.local_incr(full, amount)

    def expire(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new TTL in seconds (``None``: never expire); False when absent."""
        full = self.core.key(key)
        ttl_s = None if ttl is None else self.core.ttl(ttl)
        if self.adapter is not None:
            try:
                if ttl_s is None:
                    done = self._redis("expire", self.client.persist, full)
                    done = done or bool(self._redis("exists", self.client.exists, full))
                else:
                    done = self._redis("expire", self.client.pexpire, full, self.core.px(ttl_s))
            except _Down:
                self.counters.fallback += 1
                served, done = self.fallback.write_local(self.core.fallback_expire, full, ttl_s)
                if not served:
                    return self.expire(key, ttl)
                return bool(done)
            if self._listener is not None:
                self._invalidate_local(full)
            return bool(done)
        return self.core.memory.expire(full, ttl_s)

    # -- hashes -------------------------------------------------------------------------------

    def hset(self, key: str, field: str, value: Any) -> None:
        """Set ``field`` of the hash at ``key`` to ``value``."""
        full, fld = self.core.key(key), self.core.field(field)
        data = self.core.encode(value)
        if self.adapter is not None:
            try:
                self._redis("hset", self.client.hset, full, fld, data)
                return
            except _Down:
                self.counters.fallback += 1
                done, _ = self.fallback.write_local(self.core.fallback_hset, full, fld, data)
                if not done:
                    self.hset(key, field, value)
                return
        self.core.local_hash_update(full, lambda h: h.__setitem__(fld, data))

    def hget(self, key: str, field: str, default: Any = None) -> Any:
        full, fld = self.core.key(key), self.core.field(field)
        if self.adapter is not None:
            try:
                data = self._redis("hget", self.client.hget, full, fld)
                return default if data is None else self.core.decode(data)
            except _Down:
                self.counters.fallback += 1
        data = self.core.local_hash(full).get(fld)
        return default if data is None else self.core.decode(data)

    def hgetall(self, key: str) -> dict[str, Any]:
        full = self.core.key(key)
        raw: Mapping[Any, bytes]
        if self.adapter is not None:
            try:
                raw = self._redis("hgetall", self.client.hgetall, full)
                return {
                    (f.decode() if isinstance(f, bytes) else f): self.core.decode(v)
                    for f, v in raw.items()
                }
            except _Down:
                self.counters.fallback += 1
        return {f: self.core.decode(v) for f, v in self.core.local_hash(full).items()}

    def hdel(self, key: str, field: str) -> bool:
        full, fld = self.core.key(key), self.core.field(field)
        if self.adapter is not None:
            try:
                return bool(self._redis("hdel", self.client.hdel, full, fld))
            except _Down:
                self.counters.fallback += 1
                done, existed = self.fallback.write_local(self.core.fallback_hdel, full, fld)
                if not done:
                    return self.hdel(key, field)
                return bool(existed)
        return self.core.local_hdel(full, fld)

    # -- invalidation, health, lifecycle ------------------------------------------------------

    def clear(self) -> int:
        """Delete every key of this namespace (SCAN); returns how many."""
        return self.delete_prefix("")

    def current_mode(self) -> str:
        """``memory``, ``redis``, ``two-tier`` or ``fallback``."""
        if self.adapter is None:
            return "memory"
        if not self.fallback.up:
            return "fallback"
        return "two-tier" if self._listener is not None else "redis"

    def in_fallback(self) -> bool:
        return self.adapter is not None and not self.fallback.up

    def memory_bytes(self) -> int:
        return self.core.memory.bytes_used

    def health(self) -> dict[str, Any]:
        """``{healthy, latency_ms, mode, degraded, reasons}`` with the platform's thresholds:
        degraded when a Redis round trip takes over 100 ms or the fallback is active."""
        latency_ms: float | None = None
        if self.adapter is not None:
            latency_ms = 0.0
            start = time.perf_counter()
            try:
                self._redis("ping", self.client.ping)
                latency_ms = (time.perf_counter() - start) * 1000
            except (_Down, BackendUnavailable):
                pass
        up = self.adapter is None or self.fallback.up
        return self.core.health_report(latency_ms, up, self.current_mode())

    def stats(self) -> dict[str, Any]:
        """Counters, the memory tier's size and the breaker's window."""
        breaker = None if self.adapter is None else self.breaker
        return self.core.stats_report(self.counters, self.current_mode(), breaker)

    def close(self) -> None:
        """Stop the invalidation listener (the connection pool is shared and stays)."""
        self._closed = True
        if self._listener is not None:
            self._listener.stop()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Listener:
    """The two-tier invalidation subscriber: drops local copies that other processes changed,
    and empties the memory tier whenever its subscription (re)starts."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.resubscribes = 0
        self._thread = threading.Thread(
            target=self._run, name=f"wb-cache-inval-{cache.namespace}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        cache = self.cache
        assert cache.adapter is not None
        channel = cache.config.channel
        while not self._stop.is_set():
            pubsub = None
            try:
                with cache.adapter.errors():
                    pubsub = cache.client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(channel)
                    pubsub.get_message(timeout=1.0)  # the subscription's confirmation
                    # whatever was published while unsubscribed is unknown: drop every local
                    # copy (in an outage the recovery empties the tier itself, after replay)
                    cache._inval_gen += 1
                    if cache.fallback.up:
                        cache.core.memory.clear()
                    self.resubscribes += 1
                    self.ready.set()
                    while not self._stop.is_set():
                        msg = pubsub.get_message(timeout=0.2)
                        if msg is not None:
                            self._handle(msg.get("data"))
            except BackendUnavailable:
                # local copies are no longer served (reads go to Redis) until resubscribed
                self.ready.clear()
                cache._inval_gen += 1
                self._stop.wait(0.2)
            except Exception:  # a listener must never die; the next loop resubscribes
                logger.exception("cache %s: invalidation listener failed", cache.namespace)
                self.ready.clear()
                cache._inval_gen += 1
                self._stop.wait(0.2)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):  # closing a broken connection
                        pubsub.close()

    def _handle(self, data: Any) -> None:
        cache = self.cache
        if cache.core.apply_invalidation(cache._id, data):
            cache._inval_gen += 1
