"""The cache as the HTTP service and the CLI use it: one namespace per platform service.

:class:`CacheService` is the platform's cache coordinator: a client names its service (the
``X-Service-Type`` header over HTTP), and every key of that service lives in Redis as
``<redis_prefix>cache:<service>:<key>``, through one :class:`~workbench.cache.aio.AsyncCache`
per service (its memory tier, breaker and outage journal included). Namespaces are made on
first use, at most ``max_services`` of them, so a client cannot grow the process without bound
by inventing service names.

**Several workers.** The contents live in Redis, shared by every worker and host; each worker
keeps its own memory tier (the two-tier front, and the fallback while Redis is out). In
two-tier mode (the default, as in the platform) a write or delete is published on the
namespace's invalidation channel and every other process drops its local copy when the message
arrives, so another worker may serve the previous value for that long (about a millisecond on
loopback) and never after it; :mod:`workbench.cache.base` states what holds across outages.
So this service needs no owner process: every worker serves the cache routes itself. In
two-tier mode each namespace of each worker holds one pub/sub connection for its
invalidations (so at most ``max_services`` per worker).

**Memory.** ``memory_bytes`` is the budget of the whole process: each namespace's memory tier
gets ``memory_bytes // max_services``, which must hold at least two of the largest values
accepted (``max_value_bytes``), so a value accepted in normal operation is also held in an
outage.

**Bounds.** Keys are 1 to ``max_key_length`` characters (any characters), values at most
``max_value_bytes`` once encoded (JSON by default; msgpack may be chosen; pickle never, since
values arrive from the network), TTLs in (0, ``max_ttl_s``] seconds, batches at most
``max_batch_keys`` keys, warms at most ``max_warm_items`` items. A value past a bound is an
:class:`~workbench.errors.InputError` naming the field.

Knobs come from the ``[cache]`` section of the settings (``WORKBENCH_CACHE__<KEY>``), see
:class:`CacheServiceConfig`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.cache.aio import AsyncCache
from workbench.cache.base import CacheConfig
from workbench.cache.cache import Cache
from workbench.cache.memory import ENTRY_OVERHEAD
from workbench.cache.patterns import ainvalidate_tags
from workbench.cache.warming import WarmReport, warm
from workbench.config import Settings, from_section
from workbench.errors import (
    BackendUnavailable,
    CapacityError,
    ConfigError,
    InputError,
    WorkbenchError,
)

__all__ = [
    "MAX_BATCH_KEYS",
    "MAX_KEY_LENGTH",
    "MAX_TTL_S",
    "MAX_WARM_ITEMS",
    "SERVICE_HEADER",
    "SERVICE_PATTERN",
    "CacheService",
    "CacheServiceConfig",
    "Invalidation",
    "Warmed",
]

logger = logging.getLogger(__name__)

#: The header that names the client's service (the platform's coordinator used it).
SERVICE_HEADER = "X-Service-Type"
#: What a service name may be: the cache's namespace rule.
SERVICE_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
_SERVICE = re.compile(SERVICE_PATTERN)

#: Ceilings of the knobs below (the HTTP schemas state these; the knobs may lower them).
#: A request one past them still fits the default 1 MiB body limit, so it is refused for
#: what it says, not for its size.
MAX_KEY_LENGTH = 512
MAX_BATCH_KEYS = 1000
MAX_WARM_ITEMS = 1000
MAX_TTL_S = 10 * 365 * 86400.0
_MAX_SERVICES = 4096
_MAX_VALUE_BYTES = 64 * 2**20


@dataclass(frozen=True, slots=True)
class CacheServiceConfig:
    """Knobs of the cache service (``[cache]`` in workbench.toml).

    Attributes:
        url: Redis URL; empty means the settings' ``redis_url``; ``memory://`` keeps the
            cache in this process only (no Redis).
        cluster: ``url`` is a node of a Redis Cluster.
        prefix: Put before ``<service>:<key>`` (after the settings' ``redis_prefix``).
        serializer: ``json`` (default: other programs can read the values) or ``msgpack``.
        default_ttl_s: TTL of a write that names none, seconds (the platform's 1 h).
        max_ttl_s: Longest TTL a write may ask for, seconds.
        max_services: Most namespaces (service names) this process creates.
        max_key_length: Longest key, characters (at most 512).
        max_value_bytes: Largest value once encoded, bytes.
        max_batch_keys: Most keys of one batch read or invalidation (at most 1000).
        max_warm_items: Most items of one warm request (at most 1000).
        memory_bytes: Memory-tier budget of the whole process, shared evenly by the
            ``max_services`` namespaces.
        two_tier: Serve reads from the memory tier in front of Redis (invalidated by pub/sub).
        local_ttl_s: How long a read-through copy stays local (the platform's 5 min).
        strict: Answer 503 while Redis is out instead of serving from the memory tier.
        outage_writes: ``replay`` or ``drop`` writes made during an outage on recovery.
        timeout_s: Redis connect and command timeout, seconds.
        open_s: How long Redis is left alone after it failed, before a recovery attempt.
        warm_file: A JSON or JSON Lines manifest (see :func:`workbench.cache.warm`) loaded
            into ``warm_service`` when the service starts; empty: none. Each worker loads it
            (the writes are idempotent).
        warm_service: The namespace ``warm_file`` is loaded into.
    """

    url: str = ""
    cluster: bool = False
    prefix: str = "cache:"
    serializer: str = "json"
    default_ttl_s: float = 3600.0
    max_ttl_s: float = 30 * 86400.0
    max_services: int = 64
    max_key_length: int = 512
    max_value_bytes: int = 2**20
    max_batch_keys: int = 1000
    max_warm_items: int = 1000
    memory_bytes: int = 256 * 2**20
    two_tier: bool = True
    local_ttl_s: float = 300.0
    strict: bool = False
    outage_writes: str = "replay"
    timeout_s: float = 0.5
    open_s: float = 1.0
    warm_file: str = ""
    warm_service: str = "default"

    def __post_init__(self) -> None:
        def bad(key: str, fix: str) -> ConfigError:
            return ConfigError(
                f"invalid setting [cache] {key}={getattr(self, key)!r}: use {fix}",
                details={"key": f"cache.{key}"},
            )

        if not isinstance(self.url, str) or (
            self.url and not self.url.startswith(("redis://", "rediss://", "unix://", "memory://"))
        ):
            raise bad("url", "redis://host:port/db, rediss://, unix://, memory:// or empty")
        if self.serializer not in ("json", "msgpack"):
            raise bad("serializer", "'json' or 'msgpack' (values come from the network)")
        if self.outage_writes not in ("replay", "drop"):
            raise bad("outage_writes", "'replay' or 'drop'")
        if not isinstance(self.warm_file, str):
            raise bad("warm_file", "a path to a JSON or JSON Lines manifest, or empty")
        if not isinstance(self.warm_service, str) or not re.fullmatch(
            SERVICE_PATTERN, self.warm_service
        ):
            raise bad("warm_service", f"a service name matching {SERVICE_PATTERN}")
        ranges: list[tuple[str, float, float]] = [
            ("default_ttl_s", 0.0, MAX_TTL_S),
            ("max_ttl_s", 1.0, MAX_TTL_S),
            ("max_services", 1, _MAX_SERVICES),
            ("max_key_length", 1, MAX_KEY_LENGTH),
            ("max_value_bytes", 16, _MAX_VALUE_BYTES),
            ("max_batch_keys", 1, MAX_BATCH_KEYS),
            ("max_warm_items", 1, MAX_WARM_ITEMS),
            ("memory_bytes", 1024, 2**40),
            ("local_ttl_s", 0.001, 86400.0),
            ("timeout_s", 0.001, 60.0),
            ("open_s", 0.001, 3600.0),
        ]
        for key, lo, hi in ranges:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(key, "a number")
            if not lo <= value <= hi:
                raise bad(key, f"a value in [{lo:g}, {hi:g}]")
        if self.default_ttl_s > self.max_ttl_s:
            raise bad("default_ttl_s", f"at most max_ttl_s={self.max_ttl_s:g}")
        # an entry costs its key (characters), its encoded value and the tier's overhead
        need = 2 * (self.max_value_bytes + self.max_key_length + 256 + ENTRY_OVERHEAD)
        if self.namespace_memory_bytes < need:
            raise bad(
                "memory_bytes",
                f"at least {need * self.max_services} bytes: each of the max_services="
                f"{self.max_services} namespaces gets memory_bytes // max_services, which must "
                f"hold two values of max_value_bytes={self.max_value_bytes} (or lower those)",
            )
        try:
            self.cache_config("default", "cache:")
        except InputError as exc:  # a knob CacheConfig refuses
            raise ConfigError(f"invalid [cache] setting: {exc.message}") from None

    @property
    def namespace_memory_bytes(self) -> int:
        """The memory-tier budget of one namespace."""
        return self.memory_bytes // self.max_services

    def cache_config(self, service: str, key_prefix: str) -> CacheConfig:
        """The settings of one service's namespace."""
        return CacheConfig(
            namespace=service,
            prefix=key_prefix,
            serializer=self.serializer,
            default_ttl_s=self.default_ttl_s,
            max_key_length=self.max_key_length,
            max_value_bytes=self.max_value_bytes,
            memory_bytes=self.namespace_memory_bytes,
            two_tier=self.two_tier,
            local_ttl_s=self.local_ttl_s,
            strict=self.strict,
            outage_writes=self.outage_writes,
            timeout_s=self.timeout_s,
            open_s=self.open_s,
        )

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> CacheServiceConfig:
        """Build from the ``[cache]`` settings section, refusing unknown keys."""
        return from_section(cls, section, "cache")

    @classmethod
    def from_settings(cls, settings: Settings) -> CacheServiceConfig:
        """Build from the settings' ``[cache]`` section."""
        return cls.from_section(settings.section("cache"))


@dataclass(frozen=True)
class Invalidation:
    """What an invalidation removed.

    Attributes:
        service: The namespace.
        keys: Exact keys asked for.
        prefix: The key prefix asked for, or ``None``.
        deleted: Keys that existed and were removed (exact and prefixed together).
        complete: False when Redis was out: a prefix then reaches only the keys this process
            holds in memory (the exact keys are still deleted in Redis on recovery).
        mode: The namespace's mode when it ran (``redis``, ``two-tier``, ``fallback``...).
        tags: The tags asked for.
    """

    service: str
    keys: tuple[str, ...]
    prefix: str | None
    deleted: int
    complete: bool
    mode: str
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "keys": list(self.keys),
            "prefix": self.prefix,
            "tags": list(self.tags),
            "deleted": self.deleted,
            "complete": self.complete,
            "mode": self.mode,
        }


@dataclass(frozen=True)
class Warmed:
    """What a warm stored.

    Attributes:
        service: The namespace.
        count: Items written (all of them, or none: every value is checked first).
        ttl_s: Their TTL, seconds (``None``: no expiry).
        mode: The namespace's mode when it ran.
    """

    service: str
    count: int
    ttl_s: float | None
    mode: str

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "count": self.count, "ttl": self.ttl_s, "mode": self.mode}


_ABSENT = object()


@dataclass
class CacheService:
    """The platform's cache coordinator on one Redis (see the module docstring).

    Args:
        config: The validated ``[cache]`` knobs.
        redis_url: Redis to use when ``config.url`` is empty.
        redis_prefix: The settings' key prefix, put before ``config.prefix``.
        clock, wall: Injected monotonic and wall clocks (TTLs, breakers).
    """

    config: CacheServiceConfig
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = ""
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    _caches: dict[str, AsyncCache] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.namespace("default")  # always there, so health and the default never run out

    @classmethod
    def from_settings(
        cls, config: CacheServiceConfig, settings: Settings, **kwargs: Any
    ) -> CacheService:
        """The service for ``config`` with the settings' Redis URL and key prefix."""
        return cls(config, settings.redis_url, settings.redis_prefix, **kwargs)

    def warm_at_start(self) -> WarmReport | None:
        """Load ``[cache] warm_file`` into ``warm_service`` (a synchronous pass before the
        service takes requests); ``None`` when no file is configured.

        Raises:
            ConfigError: the file is missing or unreadable.
        """
        path = self.config.warm_file
        if not path:
            return None
        if not Path(path).is_file():
            raise ConfigError(
                f"invalid setting [cache] warm_file={path!r}: no such file",
                details={"key": "cache.warm_file"},
            )
        cache = Cache(
            self.url,
            cluster=self.config.cluster,
            config=self.config.cache_config(self.config.warm_service, self.key_prefix),
        )
        try:
            report = warm(cache, Path(path), progress=False)
        finally:
            cache.close()
        logger.info(
            "cache: warmed %s from %s: %d loaded, %d bad",
            self.config.warm_service,
            path,
            report.loaded,
            report.bad_total,
        )
        return report

    @property
    def url(self) -> str | None:
        """The Redis URL in use, or ``None`` for the memory backend."""
        url = self.config.url or self.redis_url
        return None if url == "memory://" else url

    @property
    def key_prefix(self) -> str:
        """What every key of this service starts with in Redis (before ``<service>:``)."""
        return self.redis_prefix + self.config.prefix

    # -- namespaces ---------------------------------------------------------------------------

    @staticmethod
    def check_service(service: Any, field: str = SERVICE_HEADER) -> str:
        """``service`` validated as a namespace name.

        Raises:
            InputError: not 1-64 letters, digits or ``_.-`` (naming ``field``).
        """
        if not isinstance(service, str) or not _SERVICE.match(service):
            shown = service[:80] if isinstance(service, str) else service
            raise InputError(
                f"{field}: {shown!r} is no service name; use 1-64 letters, digits, '_', '.' or '-'",
                details={"field": field},
            )
        return service

    def namespace(self, service: str, *, field: str = SERVICE_HEADER) -> AsyncCache:
        """The cache of ``service``, made on first use.

        Raises:
            InputError: a bad service name.
            CapacityError: ``max_services`` namespaces exist already.
        """
        cache = self._caches.get(service)
        if cache is not None:
            return cache
        self.check_service(service, field)
        if len(self._caches) >= self.config.max_services:
            raise CapacityError(
                f"{field}: {service!r} would be namespace {len(self._caches) + 1}, more than "
                f"[cache] max_services={self.config.max_services}; reuse a service name or "
                "raise max_services",
                details={"field": field, "maxServices": self.config.max_services},
            )
        cache = AsyncCache(
            self.url,
            cluster=self.config.cluster,
            config=self.config.cache_config(service, self.key_prefix),
            clock=self.clock,
            wall=self.wall,
        )
        self._caches[service] = cache
        return cache

    def services(self) -> list[str]:
        """Namespaces this process has made, in order."""
        return list(self._caches)

    # -- checks -------------------------------------------------------------------------------

    def _key(self, key: Any, field: str) -> str:
        limit = self.config.max_key_length
        if not isinstance(key, str) or not 1 <= len(key) <= limit:
            size = len(key) if isinstance(key, str) else type(key).__name__
            raise InputError(
                f"{field}: a key is 1 to {limit} characters ([cache] max_key_length), got {size}",
                details={"field": field},
            )
        return key

    def ttl(self, ttl: Any, field: str = "ttl") -> float | None:
        """The TTL of a write: ``ttl`` checked, or the default (``None``: no expiry)."""
        if ttl is None:
            return self.config.default_ttl_s or None
        limit = self.config.max_ttl_s
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= limit:
            raise InputError(
                f"{field}: {ttl!r} is no TTL; use seconds in (0, {limit:g}] ([cache] max_ttl_s)"
                " or null for the default",
                details={"field": field},
            )
        return float(ttl)

    # -- reads and writes ---------------------------------------------------------------------

    async def get(self, service: str, key: str) -> tuple[bool, Any]:
        """``(found, value)`` of ``key``."""
        value = await self.namespace(service).get(self._key(key, "key"), _ABSENT)
        return (False, None) if value is _ABSENT else (True, value)

    async def set(
        self, service: str, key: str, value: Any, ttl: float | None = None
    ) -> float | None:
        """Store ``value`` for ``ttl`` seconds (``None``: the default); returns the TTL used."""
        cache = self.namespace(service)
        ttl_s = self.ttl(ttl)
        await cache.set(self._key(key, "key"), value, ttl=ttl_s)
        return ttl_s

    async def delete(self, service: str, key: str) -> bool:
        """Remove ``key``; True when it existed."""
        return await self.namespace(service).delete(self._key(key, "key"))

    async def get_many(
        self, service: str, keys: Iterable[str], *, field: str = SERVICE_HEADER
    ) -> dict[str, Any]:
        """The values of those ``keys`` that are present."""
        cache = self.namespace(service, field=field)
        wanted = self._keys(keys, "keys", self.config.max_batch_keys, "max_batch_keys")
        return await cache.get_many(wanted) if wanted else {}

    def _keys(self, keys: Iterable[str], field: str, limit: int, knob: str) -> list[str]:
        out = list(keys)
        if len(out) > limit:
            raise InputError(
                f"{field}: {len(out)} keys, more than [cache] {knob}={limit}; split the request",
                details={"field": field},
            )
        for i, key in enumerate(out):
            self._key(key, f"{field}.{i}")
        return list(dict.fromkeys(out))

    async def invalidate(
        self,
        service: str,
        *,
        keys: Iterable[str] = (),
        prefix: str | None = None,
        tags: Iterable[str] = (),
        field: str = SERVICE_HEADER,
    ) -> Invalidation:
        """Remove exact ``keys``, every key starting with ``prefix``, and every key stored
        under one of ``tags`` (by :func:`~workbench.cache.cached` with ``tags=``).

        Raises:
            InputError: no keys, prefix or tags, or a bad one.
        """
        cache = self.namespace(service, field=field)
        exact = self._keys(keys, "pattern", self.config.max_batch_keys, "max_batch_keys")
        if prefix is not None:
            self._key(prefix, "prefix")
        tag_list = tuple(dict.fromkeys(tags))
        if len(tag_list) > self.config.max_batch_keys:
            raise InputError(
                f"tags: {len(tag_list)} tags, more than [cache] max_batch_keys",
                details={"field": "tags"},
            )
        if not exact and prefix is None and not tag_list:
            raise InputError(
                "pattern: give the key to invalidate (pattern), a key prefix (prefix) or tags",
                details={"field": "pattern"},
            )
        was_out = cache.in_fallback()
        deleted = await cache.delete_many(exact) if exact else 0
        if prefix is not None:
            deleted += await cache.delete_prefix(prefix)
        if tag_list:
            deleted += await ainvalidate_tags(cache, *tag_list)
        # exact keys are journaled while Redis is out; a prefix or a tag index reaches only
        # what this process holds in memory then
        partial = prefix is not None or bool(tag_list)
        complete = not partial or not (was_out or cache.in_fallback())
        return Invalidation(
            service, tuple(exact), prefix, deleted, complete, cache.current_mode(), tag_list
        )

    async def warm(
        self,
        service: str,
        data: Mapping[str, Any],
        ttl: float | None = None,
        *,
        field: str = SERVICE_HEADER,
    ) -> Warmed:
        """Store every item of ``data`` (all or nothing: every value is checked first)."""
        cache = self.namespace(service, field=field)
        ttl_s = self.ttl(ttl)
        limit = self.config.max_warm_items
        if len(data) > limit:
            raise InputError(
                f"data: {len(data)} items, more than [cache] max_warm_items={limit}; split it",
                details={"field": "data"},
            )
        for key in data:
            self._key(key, f"data.{str(key)[:64]}")
        for key, value in data.items():
            try:
                cache.core.encode(value)
            except InputError as exc:
                raise InputError(
                    f"data.{key[:64]}: {exc.message}", details={"field": f"data.{key[:64]}"}
                ) from None
        await cache.set_many(data, ttl=ttl_s)
        return Warmed(service, len(data), ttl_s, cache.current_mode())

    async def flush(self, service: str) -> int:
        """Delete every key of ``service``'s namespace (SCAN); returns how many."""
        return await self.namespace(service).clear()

    # -- health and statistics ----------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """``{healthy, status, latency_ms, mode, degraded, reasons, ...}`` of the cache in this
        process, with the platform's thresholds: degraded when a Redis round trip (measured
        on the ``default`` namespace's connection) takes over 100 ms, or while any namespace's
        memory tier serves because Redis is out."""
        base = self.namespace("default")
        out = await base.health()
        out_services = [n for n, c in self._caches.items() if c.in_fallback()]
        reasons = list(out["reasons"])
        if out_services and not base.in_fallback():
            reasons.append(f"Redis is out for {', '.join(out_services[:10])}; serving from memory")
        items = sum(len(self._caches[n].core.memory) for n in out_services)
        return {
            **out,
            "healthy": not reasons,
            "degraded": bool(reasons),
            "reasons": reasons,
            "status": "degraded" if reasons else "healthy",
            "mode": "fallback" if out_services else out["mode"],
            "fallback_active": bool(out_services),
            "fallback_services": out_services,
            "fallback_items": items,
            "namespaces": len(self._caches),
        }

    def stats(self, service: str) -> dict[str, Any]:
        """Counters, memory tier and journal of ``service``'s namespace in this process."""
        return {**self.namespace(service).stats(), "service": service}

    def resilience(self, service: str) -> dict[str, Any]:
        """The fallback's state: mode, breaker snapshot, journal, outages and recoveries."""
        cache = self.namespace(service)
        stats = cache.stats()
        return {
            "service": service,
            "mode": cache.current_mode(),
            "fallback_active": cache.in_fallback(),
            "breaker": stats.get("breaker"),
            "journal": stats["journal"],
            "outages": stats["outages"],
            "recoveries": stats["recoveries"],
            "replayed": stats["replayed"],
            "errors": stats["errors"],
            "outage_writes": self.config.outage_writes,
            "strict": self.config.strict,
        }

    async def overview(self, service: str | None = None, *, limit: int = 100_000) -> dict[str, Any]:
        """What Redis holds for the cache: keys per namespace (SCAN, at most ``limit`` keys
        counted) and the server's memory, clients and uptime. The memory backend reports the
        namespaces of this process."""
        if service is not None:
            self.check_service(service, "service")
        if self.url is None:
            names = [service] if service is not None else self.services()
            counts = {n: len(self.namespace(n).core.memory) for n in names}
            return {"backend": "memory", "namespaces": counts, "truncated": False}
        from workbench.redis_adapter import RedisAdapter

        adapter = RedisAdapter(
            self.url, timeout_s=self.config.timeout_s, cluster=self.config.cluster
        )

        def scan() -> dict[str, Any]:
            base = self.key_prefix + (f"{service}:" if service is not None else "")
            counts: dict[str, int] = {} if service is None else {service: 0}
            seen = 0
            with adapter.errors():
                start = time.perf_counter()
                adapter.client.ping()
                latency_ms = (time.perf_counter() - start) * 1000
                info: Any = adapter.client.info()
                for raw in adapter.client.scan_iter(match=_glob_escape(base) + "*", count=1000):
                    if seen >= limit:
                        break
                    seen += 1
                    full = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
                    name = full[len(self.key_prefix) :].split(":", 1)[0]
                    counts[name] = counts.get(name, 0) + 1
            if "redis_version" not in info:  # a cluster answers per node: show the first
                info = next((v for v in info.values() if isinstance(v, dict)), {})
            return {
                "backend": "cluster" if self.config.cluster else "redis",
                "url": _safe_url(self.url or ""),
                "key_prefix": self.key_prefix,
                "latency_ms": round(latency_ms, 3),
                "used_memory": info.get("used_memory_human"),
                "connected_clients": info.get("connected_clients"),
                "uptime_s": info.get("uptime_in_seconds"),
                "namespaces": dict(sorted(counts.items())),
                "truncated": seen >= limit,
            }

        try:
            return await asyncio.to_thread(scan)
        except BackendUnavailable as exc:
            return {"backend": "redis", "error": exc.message, "namespaces": {}, "truncated": False}

    async def aclose(self) -> None:
        """Close every namespace's client and invalidation listener."""
        caches, self._caches = list(self._caches.values()), {}
        for cache in caches:
            try:
                await cache.aclose()
            except WorkbenchError as exc:
                logger.warning("closing cache %s: %s", cache.namespace, exc)


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _safe_url(url: str) -> str:
    """``url`` without its password."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}" if "@" in rest else url
