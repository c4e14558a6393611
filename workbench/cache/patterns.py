"""Caching patterns: ``@cached`` with single-flight, stale-while-revalidate, negative caching,
and tag- and prefix-based invalidation.

``@cached(cache, ttl=60)`` memoises a function (sync or ``async def``) in a
:class:`~workbench.cache.Cache` (or, for ``async def`` functions, an
:class:`~workbench.cache.aio.AsyncCache`, or a sync ``Cache`` whose Redis calls then run in a
worker thread so they never block the event loop).

Keys: ``<namespace>:{<digest>}`` where ``namespace`` defaults to the function's
``module.qualname`` and ``digest`` is a BLAKE2b hash of a canonical, type-tagged JSON form of
the bound arguments (defaults applied, so ``f(1)`` and ``f(x=1)`` share a key). Only JSON-like
arguments are accepted (``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, lists,
tuples, dicts); anything else is an :class:`~workbench.errors.InputError` that says to pass
``key=``, a callable that returns the key part from the same arguments. The ``{...}`` is a Redis
Cluster hash tag: the value, its lock and its fence share a slot, so one Lua script may touch
them together.

Single-flight, in three layers:

1. In a process, concurrent callers of one key (threads, or asyncio tasks of one loop) share
   one computation: the first is the leader, the rest wait for its result (or exception).
2. Across processes the leader takes a Redis lock ``__lock__:<key>``: one Lua script does
   ``INCR`` of the key's fence counter and ``SET lock <count>:<nonce> NX PX lock_timeout`` and
   returns the value as it stands. A caller that does not get the lock polls the same script
   with a backoff (2 ms doubling to 50 ms) until the value appears, or the lock is free (its
   holder died and the lock expired, or it was refused), when it takes the lock itself; after
   ``wait_timeout_s`` it computes without storing, so no caller waits forever.
3. The leader stores its result through a second Lua script that writes only while the lock
   still holds *its* token (fencing): a holder whose lock expired and was taken over, or whose
   lock an invalidation deleted, never overwrites a newer value. In two-tier mode the script
   also publishes the namespace's invalidation, so other processes drop their local copies.

Without Redis (the memory backend), or while the cache is in fallback, the same protocol runs
against a lock table in the process (one per cache), so the guarantees hold within a process.

Stale-while-revalidate: a value carries its soft expiry (wall-clock seconds) and lives in the
cache for ``ttl + stale_ttl``. Read after its soft expiry, it is served as it is and refreshed
in the background, once per key: once per process (a set of keys being refreshed) and once
across processes (the refresh needs the key's lock; a refresh that does not get it leaves the
work to its holder).

Negative caching: a result of ``None`` is cached for ``negative_ttl`` seconds (the default,
``None``, caches it like any value for ``ttl``); an exception whose type is in
``negative_exceptions`` is cached for ``negative_ttl`` and raised again on each hit as
``type(message)``. Negative entries are never served stale.

Invalidation: ``invalidate_prefix(cache, prefix)`` deletes every key under ``prefix`` (SCAN);
``invalidate_tags(cache, *tags)`` every key computed with one of ``tags``. A tag's members are kept
in a Redis hash ``__tag__:<tag>`` (member key -> its hard expiry), written through the Cache API
*before* the computation starts; the hash expires with its longest-lived member and is pruned of
expired members every ``min(256, max_tag_members // 4)`` additions in a process. A tag holding
``max_tag_members`` live members refuses new ones: their results are returned but not stored
(misses, never a value that an invalidation cannot reach). Both invalidations delete the keys' locks
too, so a computation in flight when the invalidation runs cannot store its (older) result. Deletes
go through the Cache, which publishes them in two-tier mode, so other processes' memory tiers drop
the keys.

The background refreshes of sync functions run in a small thread pool per decorated function;
``fn.drain(timeout_s)`` waits for them (tests, shutdown).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import inspect
import logging
import math
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any

import orjson

from workbench import metrics
from workbench.cache.memory import MISSING
from workbench.errors import BackendUnavailable, InputError

__all__ = [
    "CachedFunction",
    "CachedPolicy",
    "cached",
    "invalidate_prefix",
    "invalidate_tags",
]

logger = logging.getLogger(__name__)

LOCK_PREFIX = "__lock__:"
FENCE_PREFIX = "__fence__:"
TAG_PREFIX = "__tag__:"
ENVELOPE_VERSION = 1
_VALUE, _NONE, _ERROR = 0, 1, 2
_FIRST_POLL_S = 0.002
_MAX_POLL_S = 0.05
_PRUNE_EVERY = 256
_MAX_DEPTH = 32

CALLS = metrics.counter(
    "workbench_cache_cached_calls_total",
    "Calls of @cached functions by outcome (hit, stale, negative, miss, waited, fenced, "
    "uncached, refresh)",
    ["function", "outcome"],
)

# KEYS: value, lock, fence. ARGV: nonce, lock ms, fence ms.
# Returns {token or '', value or ''}: takes the lock when it is free, and reads the value.
_ACQUIRE = """
local v = redis.call('GET', KEYS[1]) or ''
local n = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
local token = tostring(n) .. ':' .. ARGV[1]
if redis.call('SET', KEYS[2], token, 'NX', 'PX', ARGV[2]) then
  return {token, v}
end
return {'', v}
"""

# KEYS: value, lock. ARGV: token, data, ttl ms, channel ('' for none), message.
# Writes the value only while the lock holds this token; then frees the lock. Returns 1 or 0.
_STORE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
if ARGV[4] ~= '' then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return 1
"""

# KEYS: lock. ARGV: token. Frees the lock only if this token still holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


# -- configuration ----------------------------------------------------------------------------


def _positive(field_name: str, value: Any, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero) or value > 10 * 365 * 86400:
        lower = ">= 0" if allow_zero else "> 0"
        raise InputError(
            f"{field_name}: must be a number of seconds {lower} and at most ten years, "
            f"got {value!r}",
            details={"field": field_name},
        )
    return float(value)


@dataclass(frozen=True)
class CachedPolicy:
    """How one ``@cached`` function caches (validated; see the module docstring).

    Attributes:
        ttl: Seconds a value is fresh.
        namespace: Key prefix of the function's entries (default ``module.qualname``).
        stale_ttl: Seconds after ``ttl`` during which a value is served stale while it is
            refreshed in the background (0: never served stale).
        negative_ttl: Seconds a ``None`` result or a cached exception is kept; ``None``
            caches a ``None`` result for ``ttl``.
        negative_exceptions: Exception types whose raising is cached for ``negative_ttl``.
        lock_timeout_s: Lifetime of the cross-process lock: a holder that dies blocks the
            key at most this long.
        wait_timeout_s: Longest a caller waits for another's computation before computing
            itself without storing (default ``2 * lock_timeout_s``).
        max_tag_members: Live keys one tag may index (about: checked every few hundred
            additions per process).
    """

    ttl: float
    namespace: str
    stale_ttl: float = 0.0
    negative_ttl: float | None = None
    negative_exceptions: tuple[type[BaseException], ...] = ()
    lock_timeout_s: float = 10.0
    wait_timeout_s: float | None = None
    max_tag_members: int = 10_000

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        set_("ttl", _positive("ttl", self.ttl))
        set_("stale_ttl", _positive("stale_ttl", self.stale_ttl, allow_zero=True))
        if self.negative_ttl is not None:
            set_("negative_ttl", _positive("negative_ttl", self.negative_ttl))
        set_("lock_timeout_s", _positive("lock_timeout_s", self.lock_timeout_s))
        if self.wait_timeout_s is None:
            set_("wait_timeout_s", 2 * self.lock_timeout_s)
        else:
            set_("wait_timeout_s", _positive("wait_timeout_s", self.wait_timeout_s))
        if not isinstance(self.namespace, str) or not 1 <= len(self.namespace) <= 200:
            raise InputError(
                f"namespace: must be a str of 1-200 characters, got {self.namespace!r}",
                details={"field": "namespace"},
            )
        if "{" in self.namespace or "}" in self.namespace:
            raise InputError(
                f"namespace: {self.namespace!r} holds a brace, which would move the Redis "
                "Cluster hash tag; use another name",
                details={"field": "namespace"},
            )
        excs = tuple(self.negative_exceptions)
        if not all(isinstance(t, type) and issubclass(t, Exception) for t in excs):
            raise InputError(
                "negative_exceptions: must be Exception subclasses",
                details={"field": "negative_exceptions"},
            )
        if excs and self.negative_ttl is None:
            raise InputError(
                "negative_ttl: caching exceptions needs negative_ttl (seconds to keep them)",
                details={"field": "negative_ttl"},
            )
        set_("negative_exceptions", excs)
        if (
            isinstance(self.max_tag_members, bool)
            or not isinstance(self.max_tag_members, int)
            or not 1 <= self.max_tag_members <= 10**7
        ):
            raise InputError(
                f"max_tag_members: must be an int in 1..1e7, got {self.max_tag_members!r}",
                details={"field": "max_tag_members"},
            )

    @property
    def hard_ttl(self) -> float:
        """Seconds a value lives in the cache: ``ttl + stale_ttl``."""
        return self.ttl + self.stale_ttl


# -- keys -------------------------------------------------------------------------------------


def _canonical(value: Any, where: str, depth: int = 0) -> Any:
    """A JSON form of ``value`` in which different values (1, 1.0, True, "1", (1,), b"1")
    never coincide: containers and non-JSON scalars become tagged lists."""
    if depth > _MAX_DEPTH:
        raise InputError(f"{where}: nested deeper than {_MAX_DEPTH} levels; pass key=")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value) if -(2**63) <= value < 2**63 else ["I", str(int(value))]
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else ["F", repr(float(value))]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return ["B", base64.b64encode(bytes(value)).decode()]
    if isinstance(value, list | tuple):
        return ["L", [_canonical(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]]
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            ck = _canonical(k, f"{where} key {k!r}", depth + 1)
            items.append((orjson.dumps(ck), ck, _canonical(v, f"{where}[{k!r}]", depth + 1)))
        items.sort(key=lambda t: t[0])
        return ["D", [[ck, cv] for _, ck, cv in items]]
    raise InputError(
        f"{where}: a {type(value).__name__} cannot be part of a cache key (only None, bool, "
        "int, float, str, bytes, list, tuple and dict can); pass key= to @cached to build the "
        "key yourself",
        details={"field": where},
    )


def _hash_tag_part(part: Any) -> str:
    if not isinstance(part, str) or not part or len(part) > 256:
        raise InputError(
            f"key: the key= callable must return a non-empty str of at most 256 characters, "
            f"got {part!r}",
            details={"field": "key"},
        )
    if "{" in part or "}" in part:
        raise InputError(
            f"key: {part!r} holds a brace; braces are reserved for the Redis Cluster hash tag",
            details={"field": "key"},
        )
    return part


def _tag_names(tags: Iterable[str]) -> tuple[str, ...]:
    out = []
    for tag in tags:
        if not isinstance(tag, str) or not 1 <= len(tag) <= 200:
            raise InputError(
                f"tags: each tag must be a str of 1-200 characters, got {tag!r}",
                details={"field": "tags"},
            )
        out.append(tag)
    return tuple(dict.fromkeys(out))


# -- the lock and value store -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: int
    soft: float
    payload: Any


def _parse(raw: Any) -> _Entry | None:
    """The entry of a stored envelope ``[version, kind, soft_expiry, payload]``, or None for
    anything else (another writer's value, another version: recomputed)."""
    if (
        isinstance(raw, list)
        and len(raw) == 4
        and raw[0] == ENVELOPE_VERSION
        and raw[1] in (_VALUE, _NONE, _ERROR)
        and isinstance(raw[2], int | float)
        and not isinstance(raw[2], bool)
    ):
        return _Entry(raw[1], float(raw[2]), raw[3])
    return None


class _LocalLocks:
    """The lock table of one cache when there is no Redis to hold the locks (thread-safe)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.mutex = threading.Lock()
        self._locks: dict[str, tuple[str, float]] = {}
        self._seq = 0

    def acquire(self, key: str, timeout_s: float) -> str | None:
        now = self.clock()
        with self.mutex:
            held = self._locks.get(key)
            if held is not None and held[1] > now:
                return None
            self._seq += 1
            token = f"l{self._seq}"
            self._locks[key] = (token, now + timeout_s)
            return token

    def holds(self, key: str, token: str) -> bool:
        """Under :attr:`mutex`: whether ``token`` still holds ``key``."""
        held = self._locks.get(key)
        return held is not None and held[0] == token and held[1] > self.clock()

    def release(self, key: str, token: str) -> None:
        with self.mutex:
            if self._locks.get(key, ("",))[0] == token:
                del self._locks[key]

    def discard(self, keys: Iterable[str]) -> None:
        with self.mutex:
            for key in keys:
                self._locks.pop(key, None)

    def discard_prefix(self, prefix: str) -> None:
        with self.mutex:
            for key in [k for k in self._locks if k.startswith(prefix)]:
                del self._locks[key]


_local_tables: weakref.WeakKeyDictionary[Any, _LocalLocks] = weakref.WeakKeyDictionary()
_local_tables_lock = threading.Lock()


def _local_locks(cache: Any) -> _LocalLocks:
    with _local_tables_lock:
        table = _local_tables.get(cache)
        if table is None:
            table = _local_tables[cache] = _LocalLocks(cache.core.clock)
        return table


def _is_async_cache(cache: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(cache, "get", None))


class _Store:
    """The reads, locks and fenced writes of one ``@cached`` function on one cache.

    The methods are synchronous for a :class:`~workbench.cache.Cache` and coroutines for an
    :class:`~workbench.cache.aio.AsyncCache` (:class:`_AsyncStore`).
    """

    def __init__(self, cache: Any, policy: CachedPolicy, wall: Callable[[], float]) -> None:
        self.cache = cache
        self.policy = policy
        self.wall = wall
        self.core = cache.core
        self.local = _local_locks(cache)
        self.nonce = uuid.uuid4().hex[:16]
        self.lock_ms = max(1, int(policy.lock_timeout_s * 1000))
        # the fence counter must outlive every token it issued
        self.fence_ms = max(self.lock_ms, int((policy.wait_timeout_s or 0.0) * 1000)) * 4
        self._tag_adds: dict[str, int] = {}
        self._prune_every = max(1, min(_PRUNE_EVERY, policy.max_tag_members // 4))
        self._tag_full: dict[str, bool] = {}

    def remote(self) -> bool:
        return self.cache.adapter is not None and not self.cache.in_fallback()

    def fulls(self, key: str) -> tuple[str, str, str]:
        c = self.core
        return c.key(key), c.key(LOCK_PREFIX + key), c.key(FENCE_PREFIX + key)

    def decode_raw(self, raw: bytes) -> _Entry | None:
        if not raw:
            return None
        try:
            return _parse(self.core.decode(raw))
        except InputError:
            return None

    def announce(self, full: str) -> tuple[str, str]:
        """The channel and message that tell other processes' memory tiers to drop ``full``
        (empty when the cache has no memory tier in front of Redis)."""
        if not self.core.config.two_tier:
            return "", ""
        return self.core.config.channel, self.cache.invalidation_message(full)

    def envelope(self, kind: int, soft: float, payload: Any) -> list[Any]:
        return [ENVELOPE_VERSION, kind, soft, payload]

    # -- sync operations ----------------------------------------------------------------------

    def read(self, key: str) -> _Entry | None:
        try:
            raw = self.cache.get(key, MISSING)
        except InputError:
            return None
        return None if raw is MISSING else _parse(raw)

    def acquire(self, key: str) -> tuple[str | None, _Entry | None]:
        full, lock, fence = self.fulls(key)
        if self.remote():
            try:
                run = self.cache.adapter.script(_ACQUIRE)
                token, raw = run([full, lock, fence], [self.nonce, self.lock_ms, self.fence_ms])
            except BackendUnavailable as exc:
                logger.info("cached %s: lock on Redis failed (%s); locking locally", key, exc)
            else:
                return (token.decode() or None), self.decode_raw(raw)
        return self.local.acquire(lock, self.policy.lock_timeout_s), self.read(key)

    def store(self, key: str, token: str, envelope: list[Any], ttl_s: float) -> bool:
        full, lock, _ = self.fulls(key)
        if token.startswith("l"):
            with self.local.mutex:
                if not self.local.holds(lock, token):
                    return False
                self.cache.set(key, envelope, ttl=ttl_s)
                self.local._locks.pop(lock, None)
            return True
        data = self.core.encode(envelope)
        channel, message = self.announce(full)
        try:
            stored = self.cache.adapter.script(_STORE)(
                [full, lock], [token, data, max(1, int(ttl_s * 1000)), channel, message]
            )
        except BackendUnavailable:
            # Redis went out during the computation: the cache journals the write
            self.cache.set(key, envelope, ttl=ttl_s)
            return True
        if stored and channel:
            self.cache.drop_local(full)
        return bool(stored)

    def release(self, key: str, token: str) -> None:
        _, lock, _ = self.fulls(key)
        if token.startswith("l"):
            self.local.release(lock, token)
            return
        with contextlib.suppress(BackendUnavailable):  # else the lock expires by itself
            self.cache.adapter.script(_RELEASE)([lock], [token])

    def tag(self, key: str, tags: tuple[str, ...]) -> bool:
        hard = self.policy.hard_ttl
        keep = hard + self.policy.lock_timeout_s
        expires = self.wall() + keep
        ok = True
        for tag in tags:
            tkey = TAG_PREFIX + tag
            if self._count_add(tag):
                room, expired = self._prune(tkey, self.cache.hgetall(tkey))
                ok = room and ok
                for member in expired:
                    self.cache.hdel(tkey, member)
            elif self._tag_full.get(tag):
                ok = False
            if ok:
                self.cache.hset(tkey, key, expires)
                remaining = self.cache.ttl(tkey)
                if remaining is None or remaining < keep:
                    self.cache.expire(tkey, keep)
        return ok

    def _count_add(self, tag: str) -> bool:
        """Count an addition to ``tag``; True when this one should prune the index."""
        n = self._tag_adds.get(tag, 0)
        self._tag_adds[tag] = n + 1
        return n % self._prune_every == 0

    def _prune(self, tkey: str, members: dict[str, Any]) -> tuple[bool, list[str]]:
        """Whether the tag has room for another member, and its expired members."""
        now = self.wall()
        expired = [m for m, exp in members.items() if isinstance(exp, int | float) and exp < now]
        live = len(members) - len(expired)
        full = live >= self.policy.max_tag_members
        self._tag_full[tkey[len(TAG_PREFIX) :]] = full
        if full:
            logger.warning(
                "cached: tag %r indexes %d live keys (max_tag_members=%d); new results under "
                "it are not stored until some expire",
                tkey[len(TAG_PREFIX) :],
                live,
                self.policy.max_tag_members,
            )
        return not full, expired


class _AsyncStore(_Store):
    """:class:`_Store` for an :class:`~workbench.cache.aio.AsyncCache`: the same protocol,
    awaited (its Lua scripts run on the cache's own asyncio client)."""

    def _script(self, source: str) -> Any:
        scripts = self.__dict__.setdefault("_scripts", {})
        client = self.cache.client
        entry = scripts.get(source)
        if entry is None or entry[0] is not client:
            entry = scripts[source] = (client, client.register_script(source))
        return entry[1]

    async def _run(self, source: str, keys: list[str], args: list[Any]) -> Any:
        script = self._script(source)
        with self.cache.adapter.errors():
            return await script(keys=keys, args=args)

    async def read(self, key: str) -> _Entry | None:  # type: ignore[override]
        try:
            raw = await self.cache.get(key, MISSING)
        except InputError:
            return None
        return None if raw is MISSING else _parse(raw)

    async def acquire(self, key: str) -> tuple[str | None, _Entry | None]:  # type: ignore[override]
        full, lock, fence = self.fulls(key)
        if self.remote():
            try:
                args = [self.nonce, self.lock_ms, self.fence_ms]
                token, raw = await self._run(_ACQUIRE, [full, lock, fence], args)
            except BackendUnavailable as exc:
                logger.info("cached %s: lock on Redis failed (%s); locking locally", key, exc)
            else:
                return (token.decode() or None), self.decode_raw(raw)
        return self.local.acquire(lock, self.policy.lock_timeout_s), await self.read(key)

    async def store(  # type: ignore[override]
        self, key: str, token: str, envelope: list[Any], ttl_s: float
    ) -> bool:
        full, lock, _ = self.fulls(key)
        if token.startswith("l"):
            if not self.local.holds(lock, token):
                return False
            await self.cache.set(key, envelope, ttl=ttl_s)
            self.local.release(lock, token)
            return True
        data = self.core.encode(envelope)
        channel, message = self.announce(full)
        try:
            args = [token, data, max(1, int(ttl_s * 1000)), channel, message]
            stored = await self._run(_STORE, [full, lock], args)
        except BackendUnavailable:
            await self.cache.set(key, envelope, ttl=ttl_s)
            return True
        if stored and channel:
            self.cache.drop_local(full)
        return bool(stored)

    async def release(self, key: str, token: str) -> None:  # type: ignore[override]
        _, lock, _ = self.fulls(key)
        if token.startswith("l"):
            self.local.release(lock, token)
            return
        with contextlib.suppress(BackendUnavailable):
            await self._run(_RELEASE, [lock], [token])

    async def tag(self, key: str, tags: tuple[str, ...]) -> bool:  # type: ignore[override]
        keep = self.policy.hard_ttl + self.policy.lock_timeout_s
        expires = self.wall() + keep
        ok = True
        for tag in tags:
            tkey = TAG_PREFIX + tag
            if self._count_add(tag):
                members = await self.cache.hgetall(tkey)
                room, expired = self._prune(tkey, members)
                ok = room and ok
                for member in expired:
                    await self.cache.hdel(tkey, member)
            elif self._tag_full.get(tag):
                ok = False
            if ok:
                await self.cache.hset(tkey, key, expires)
                remaining = await self.cache.ttl(tkey)
                if remaining is None or remaining < keep:
                    await self.cache.expire(tkey, keep)
        return ok


# -- the protocol -----------------------------------------------------------------------------

# Operations the protocol asks its driver to perform.
_Protocol = Generator[tuple[Any, ...], Any, Any]
_ACQ, _COMPUTE, _STORE_OP, _RELEASE_OP, _TAG, _WAIT = range(6)


class _Flight:
    """One in-process computation of a key that concurrent callers share."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


@dataclass
class _Counts:
    hit: int = 0
    stale: int = 0
    negative: int = 0
    miss: int = 0
    waited: int = 0
    fenced: int = 0
    uncached: int = 0
    refresh: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class CachedFunction:
    """A function memoised by :func:`cached` (call it like the function).

    Attributes:
        policy: Its :class:`CachedPolicy`.
        cache: The cache it stores in.
        uncached: The original function.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        cache: Any,
        policy: CachedPolicy,
        *,
        key: Callable[..., str] | None,
        tags: Iterable[str] | Callable[..., Iterable[str]],
        clock: Callable[[], float],
        wall: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.uncached = fn
        self.cache = cache
        self.policy = policy
        self.is_async = inspect.iscoroutinefunction(fn)
        if _is_async_cache(cache) and not self.is_async:
            raise InputError(
                f"cache: an AsyncCache can only memoise async functions; {fn.__qualname__} is "
                "synchronous (use a Cache)",
                details={"field": "cache"},
            )
        self.store: _Store = (_AsyncStore if _is_async_cache(cache) else _Store)(
            cache, policy, wall
        )
        self._key_fn = key
        self._tags_fn = tags if callable(tags) else None
        self._tags = () if callable(tags) else _tag_names(tags)
        self._sig = inspect.signature(fn)
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._flights: dict[str, _Flight] = {}
        self._aflights: weakref.WeakKeyDictionary[Any, dict[str, asyncio.Future[Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._mutex = threading.Lock()
        self._refreshing: set[str] = set()
        self._pending: set[Any] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._exc_types = {
            f"{t.__module__}.{t.__qualname__}": t for t in policy.negative_exceptions
        }
        self._counts = _Counts()
        self._metric = {
            name: CALLS.labels(policy.namespace, name)
            for name in ("hit", "stale", "negative", "miss", "waited", "fenced", "uncached")
        }
        self._metric["refresh"] = CALLS.labels(policy.namespace, "refresh")
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"cached({self.policy.namespace}, ttl={self.policy.ttl:g})"

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else functools.partial(self.__call__, obj)

    # -- keys ---------------------------------------------------------------------------------

    def key_for(self, *args: Any, **kwargs: Any) -> str:
        """The cache key of a call with these arguments."""
        if self._key_fn is not None:
            part = _hash_tag_part(self._key_fn(*args, **kwargs))
        else:
            bound = self._sig.bind(*args, **kwargs)
            bound.apply_defaults()
            form = [
                [name, _canonical(v, f"argument {name!r}")] for name, v in bound.arguments.items()
            ]
            part = hashlib.blake2b(orjson.dumps(form), digest_size=16).hexdigest()
        return f"{self.policy.namespace}:{{{part}}}"

    def _call_tags(self, args: Any, kwargs: Any) -> tuple[str, ...]:
        if self._tags_fn is None:
            return self._tags
        return _tag_names(self._tags_fn(*args, **kwargs))

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Drop the entry of a call with these arguments (and its lock, so a computation in
        flight does not store); True if it existed. For an AsyncCache use :meth:`ainvalidate`.
        """
        key = self.key_for(*args, **kwargs)
        self.store.local.discard([self.store.core.key(LOCK_PREFIX + key)])
        return bool(self.cache.delete_many([LOCK_PREFIX + key, key]))

    async def ainvalidate(self, *args: Any, **kwargs: Any) -> bool:
        """:meth:`invalidate` for an :class:`~workbench.cache.aio.AsyncCache`."""
        key = self.key_for(*args, **kwargs)
        self.store.local.discard([self.store.core.key(LOCK_PREFIX + key)])
        return bool(await self.cache.delete_many([LOCK_PREFIX + key, key]))

    def stats(self) -> dict[str, int]:
        """Outcomes counted by this process: ``hit`` (fresh), ``stale`` (served stale),
        ``negative`` (a cached None or exception), ``miss`` (computed and stored), ``waited``
        (served another caller's computation), ``fenced`` (computed, the store refused),
        ``uncached`` (computed, not stored), ``refresh`` (background refreshes stored)."""
        c = self._counts
        return {
            name: getattr(c, name)
            for name in ("hit", "stale", "negative", "miss", "waited", "fenced", "uncached")
        } | {"refresh": c.refresh}

    def _count(self, outcome: str) -> None:
        c = self._counts
        with c.lock:
            setattr(c, outcome, getattr(c, outcome) + 1)
        self._metric[outcome].inc()

    # -- entries ------------------------------------------------------------------------------

    def _unwrap(self, entry: _Entry) -> Any:
        if entry.kind == _VALUE:
            return entry.payload
        if entry.kind == _NONE:
            return None
        name, message = entry.payload
        raise self._exc_types[name](message)

    def _servable(self, entry: _Entry | None) -> str | None:
        """``hit``, ``negative``, ``stale`` (serve and refresh) or None (compute)."""
        if entry is None:
            return None
        now = self._wall()
        if now < entry.soft:
            if entry.kind == _ERROR and not (
                isinstance(entry.payload, list)
                and len(entry.payload) == 2
                and entry.payload[0] in self._exc_types
            ):
                return None
            return "hit" if entry.kind == _VALUE else "negative"
        if entry.kind == _VALUE and now < entry.soft + self.policy.stale_ttl:
            return "stale"
        return None

    # -- the protocol (no I/O: it yields operations its driver performs) ---------------------

    def _fill(self, key: str, tags: tuple[str, ...], *, refresh: bool = False) -> _Protocol:
        """Compute ``key`` under its lock, or wait for whoever holds it."""
        deadline = self._clock() + (self.policy.wait_timeout_s or 0.0)
        delay = _FIRST_POLL_S
        waited = False
        while True:
            token, entry = yield (_ACQ, key)
            outcome = self._servable(entry)
            if outcome in ("hit", "negative"):
                if token is not None:
                    yield (_RELEASE_OP, key, token)
                if refresh:
                    return None
                assert entry is not None and outcome is not None
                self._count("waited" if waited else outcome)
                return self._unwrap(entry)
            if token is not None:
                return (yield from self._compute(key, tags, token, refresh=refresh))
            if refresh:
                return None  # the holder of the lock is refreshing it
            left = deadline - self._clock()
            if left <= 0:
                self._count("uncached")
                logger.warning(
                    "cached %s: waited %.1f s for another caller's computation; computing "
                    "without storing",
                    key,
                    self.policy.wait_timeout_s,
                )
                return (yield (_COMPUTE,))
            waited = True
            yield (_WAIT, min(delay, left))
            delay = min(2 * delay, _MAX_POLL_S)

    def _compute(self, key: str, tags: tuple[str, ...], token: str, *, refresh: bool) -> _Protocol:
        p = self.policy
        try:
            indexed = (yield (_TAG, key, tags)) if tags else True
            try:
                result = yield (_COMPUTE,)
            except p.negative_exceptions as exc:
                assert p.negative_ttl is not None
                name = f"{type(exc).__module__}.{type(exc).__qualname__}"
                if name not in self._exc_types:  # a subclass: cache it as its configured base
                    name = next(n for n, t in self._exc_types.items() if isinstance(exc, t))
                env = self.store.envelope(_ERROR, self._wall() + p.negative_ttl, [name, str(exc)])
                if indexed:
                    stored = yield (_STORE_OP, key, token, env, p.negative_ttl)
                    self._count("miss" if stored else "fenced")
                else:
                    yield (_RELEASE_OP, key, token)
                raise
        except BaseException:
            yield (_RELEASE_OP, key, token)
            raise
        if result is None and p.negative_ttl is not None:
            env, ttl_s = (
                self.store.envelope(_NONE, self._wall() + p.negative_ttl, None),
                p.negative_ttl,
            )
        else:
            kind = _NONE if result is None else _VALUE
            env, ttl_s = self.store.envelope(kind, self._wall() + p.ttl, result), p.hard_ttl
        if not indexed:
            yield (_RELEASE_OP, key, token)
            self._count("uncached")
            return result
        try:
            stored = yield (_STORE_OP, key, token, env, ttl_s)
        except BaseException:
            yield (_RELEASE_OP, key, token)
            raise
        self._count(("refresh" if refresh else "miss") if stored else "fenced")
        return result

    # -- the sync driver ----------------------------------------------------------------------

    def _drive(self, gen: _Protocol, args: Any, kwargs: Any) -> Any:
        store = self.store
        send: Any = None
        error: BaseException | None = None
        while True:
            try:
                op = gen.throw(error) if error is not None else gen.send(send)
            except StopIteration as stop:
                return stop.value
            send, error = None, None
            try:
                code = op[0]
                if code == _ACQ:
                    send = store.acquire(op[1])
                elif code == _COMPUTE:
                    send = self.uncached(*args, **kwargs)
                elif code == _STORE_OP:
                    send = store.store(*op[1:])
                elif code == _RELEASE_OP:
                    store.release(*op[1:])
                elif code == _TAG:
                    send = store.tag(*op[1:])
                else:
                    self._sleep(op[1])
            except BaseException as exc:
                error = exc

    def _call_sync(self, *args: Any, **kwargs: Any) -> Any:
        key = self.key_for(*args, **kwargs)
        entry = self.store.read(key)
        outcome = self._servable(entry)
        if outcome is not None:
            assert entry is not None
            self._count(outcome)
            if outcome == "stale":
                self._refresh_sync(key, args, kwargs)
            return self._unwrap(entry)
        with self._mutex:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            if not flight.done.wait(self.policy.wait_timeout_s):
                self._count("uncached")
                return self.uncached(*args, **kwargs)
            self._count("waited")
            if flight.error is not None:
                raise flight.error
            return flight.result
        try:
            flight.result = self._drive(
                self._fill(key, self._call_tags(args, kwargs)), args, kwargs
            )
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._mutex:
                self._flights.pop(key, None)
            flight.done.set()

    def _refresh_sync(self, key: str, args: Any, kwargs: Any) -> None:
        with self._mutex:
            if key in self._refreshing:
                return
            self._refreshing.add(key)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=2, thread_name_prefix="wb-cached-refresh"
                )
            executor = self._executor
        tags = self._call_tags(args, kwargs)

        def run() -> None:
            try:
                self._drive(self._fill(key, tags, refresh=True), args, kwargs)
            except Exception:
                logger.exception("cached %s: background refresh failed", key)
            finally:
                with self._mutex:
                    self._refreshing.discard(key)

        future = executor.submit(run)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    # -- the async driver ---------------------------------------------------------------------

    async def _io(self, method: Callable[..., Any], *args: Any) -> Any:
        if isinstance(self.store, _AsyncStore):
            return await method(*args)
        if self.cache.adapter is None:
            return method(*args)  # the memory backend never blocks
        return await asyncio.to_thread(method, *args)

    async def _adrive(self, gen: _Protocol, args: Any, kwargs: Any) -> Any:
        store = self.store
        send: Any = None
        error: BaseException | None = None
        while True:
            try:
                op = gen.throw(error) if error is not None else gen.send(send)
            except StopIteration as stop:
                return stop.value
            send, error = None, None
            try:
                code = op[0]
                if code == _ACQ:
                    send = await self._io(store.acquire, op[1])
                elif code == _COMPUTE:
                    send = await self.uncached(*args, **kwargs)
                elif code == _STORE_OP:
                    send = await self._io(store.store, *op[1:])
                elif code == _RELEASE_OP:
                    await self._io(store.release, *op[1:])
                elif code == _TAG:
                    send = await self._io(store.tag, *op[1:])
                else:
                    await asyncio.sleep(op[1])
            except BaseException as exc:
                error = exc

    async def _call_async(self, *args: Any, **kwargs: Any) -> Any:
        key = self.key_for(*args, **kwargs)
        entry = await self._io(self.store.read, key)
        outcome = self._servable(entry)
        if outcome is not None:
            self._count(outcome)
            if outcome == "stale":
                self._refresh_async(key, args, kwargs)
            return self._unwrap(entry)
        loop = asyncio.get_running_loop()
        flights = self._aflights.setdefault(loop, {})
        flight = flights.get(key)
        if flight is not None:
            try:
                result = await asyncio.wait_for(asyncio.shield(flight), self.policy.wait_timeout_s)
            except TimeoutError:
                self._count("uncached")
                return await self.uncached(*args, **kwargs)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if flight.cancelled() and not (task is not None and task.cancelling()):
                    return await self._call_async(*args, **kwargs)  # the leader was cancelled
                raise
            self._count("waited")
            return result
        flight = flights[key] = loop.create_future()
        try:
            result = await self._adrive(
                self._fill(key, self._call_tags(args, kwargs)), args, kwargs
            )
        except BaseException as exc:
            if not flight.done():
                if isinstance(exc, asyncio.CancelledError):
                    flight.cancel()
                else:
                    flight.set_exception(exc)
                    flight.exception()  # retrieved: there may be no follower
            raise
        else:
            flight.set_result(result)
            return result
        finally:
            flights.pop(key, None)

    def _refresh_async(self, key: str, args: Any, kwargs: Any) -> None:
        if key in self._refreshing:
            return
        self._refreshing.add(key)
        tags = self._call_tags(args, kwargs)

        async def run() -> None:
            try:
                await self._adrive(self._fill(key, tags, refresh=True), args, kwargs)
            except Exception:
                logger.exception("cached %s: background refresh failed", key)
            finally:
                self._refreshing.discard(key)

        task = asyncio.get_running_loop().create_task(run())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # -- calls and lifecycle ------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_async:
            return self._call_async(*args, **kwargs)
        return self._call_sync(*args, **kwargs)

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait for the background refreshes of a sync function; True when none is left."""
        pending = [f for f in list(self._pending) if isinstance(f, Future)]
        if not pending:
            return True
        _, not_done = wait_futures(pending, timeout=timeout_s)
        return not not_done

    async def adrain(self, timeout_s: float = 10.0) -> bool:
        """Wait for the background refreshes of an async function; True when none is left."""
        tasks = [t for t in list(self._pending) if isinstance(t, asyncio.Task)]
        if not tasks:
            return True
        _, not_done = await asyncio.wait(tasks, timeout=timeout_s)
        return not not_done

    def close(self) -> None:
        """Stop the background refresh pool (waits for running refreshes)."""
        with self._mutex:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


def cached(
    cache: Any,
    *,
    ttl: float,
    namespace: str | None = None,
    key: Callable[..., str] | None = None,
    stale_ttl: float = 0.0,
    negative_ttl: float | None = None,
    negative_exceptions: tuple[type[BaseException], ...] = (),
    tags: Iterable[str] | Callable[..., Iterable[str]] = (),
    lock_timeout_s: float = 10.0,
    wait_timeout_s: float | None = None,
    max_tag_members: int = 10_000,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[Callable[..., Any]], CachedFunction]:
    """Memoise a function in ``cache`` with single-flight (see the module docstring).

    Args:
        cache: A :class:`~workbench.cache.Cache`; for ``async def`` functions also an
            :class:`~workbench.cache.aio.AsyncCache`.
        ttl: Seconds a result is fresh.
        namespace: Prefix of the function's keys (default ``module.qualname``); what
            :func:`invalidate_prefix` takes to drop them all.
        key: ``key(*args, **kwargs) -> str``, the key part of a call, instead of a hash of
            the arguments (for arguments that are not JSON-like, or readable keys).
        stale_ttl: Seconds after ``ttl`` a result is served stale while it is refreshed.
        negative_ttl: Seconds a ``None`` result or a cached exception is kept (``None``:
            a ``None`` result is cached for ``ttl``; exceptions need this set).
        negative_exceptions: Exception types to cache for ``negative_ttl``.
        tags: Tags of every result, or ``tags(*args, **kwargs) -> iterable of str`` per call;
            :func:`invalidate_tags` drops the results of a tag.
        lock_timeout_s: Lifetime of the cross-process lock (a crashed holder blocks the key
            at most this long).
        wait_timeout_s: Longest a caller waits for another caller's computation (default
            ``2 * lock_timeout_s``); then it computes without storing.
        max_tag_members: Live keys a tag may index before new results under it go unstored.
        clock: Monotonic seconds (deadlines); wall: wall-clock seconds (soft expiries, which
            processes share); sleep: the poll wait of sync callers (tests inject these).

    Returns:
        A decorator producing a :class:`CachedFunction` (which has ``key_for``,
        ``invalidate``, ``stats``, ``drain``/``adrain`` and ``close``).
    """

    def decorate(fn: Callable[..., Any]) -> CachedFunction:
        policy = CachedPolicy(
            ttl=ttl,
            namespace=namespace or f"{fn.__module__}.{fn.__qualname__}",
            stale_ttl=stale_ttl,
            negative_ttl=negative_ttl,
            negative_exceptions=tuple(negative_exceptions),
            lock_timeout_s=lock_timeout_s,
            wait_timeout_s=wait_timeout_s,
            max_tag_members=max_tag_members,
        )
        return CachedFunction(
            fn, cache, policy, key=key, tags=tags, clock=clock, wall=wall, sleep=sleep
        )

    return decorate


# -- invalidation -----------------------------------------------------------------------------


def invalidate_tags(cache: Any, *tags: str) -> int:
    """Delete every key computed under one of ``tags`` (and its lock, so a computation in
    flight does not store its older result); returns how many keys existed.

    Works across processes (the index lives in the cache's backend) and, in two-tier mode,
    reaches other processes' memory tiers through the cache's invalidation messages.
    """
    names = _tag_names(tags)
    members: set[str] = set()
    for tag in names:
        members.update(cache.hgetall(TAG_PREFIX + tag))
    if not members:
        return 0
    keys = sorted(members)
    locks = [LOCK_PREFIX + k for k in keys]
    _local_locks(cache).discard(cache.core.key(lk) for lk in locks)
    cache.delete_many(locks)
    return int(cache.delete_many(keys))


async def ainvalidate_tags(cache: Any, *tags: str) -> int:
    """:func:`invalidate_tags` for an :class:`~workbench.cache.AsyncCache`."""
    names = _tag_names(tags)
    members: set[str] = set()
    for tag in names:
        members.update(await cache.hgetall(TAG_PREFIX + tag))
    if not members:
        return 0
    keys = sorted(members)
    locks = [LOCK_PREFIX + k for k in keys]
    _local_locks(cache).discard(cache.core.key(lk) for lk in locks)
    await cache.delete_many(locks)
    return int(await cache.delete_many(keys))


def invalidate_prefix(cache: Any, prefix: str) -> int:
    """Delete every key of ``cache`` starting with ``prefix`` (SCAN) and the locks of those
    keys; returns how many keys existed. ``prefix`` may not be empty (use ``cache.clear()``).
    """
    if not isinstance(prefix, str) or not prefix:
        raise InputError(
            "prefix: must be a non-empty str (cache.clear() empties a namespace)",
            details={"field": "prefix"},
        )
    _local_locks(cache).discard_prefix(cache.core.key(LOCK_PREFIX + prefix))
    cache.delete_prefix(LOCK_PREFIX + prefix)
    return int(cache.delete_prefix(prefix))
