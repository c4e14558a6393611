"""The one module through which workbench talks to Redis.

Every subsystem that stores something in Redis (search trees, optimizer studies, the cache)
goes through :class:`RedisAdapter`: one connection pool per URL, one key prefix, one socket
timeout, and one place where redis-py's exceptions become
:class:`~workbench.errors.BackendUnavailable`. Values are bytes in and bytes out; callers own
their serialisation (versioned JSON, ``.npz``, zlib).

Keys are ``<prefix><part>:<part>...``. The default prefix is empty so the platform's key names
(``ab-mcts:tree:<id>``) are kept exactly; tests and shared servers set one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis
from redis import exceptions as redis_errors

from workbench.config import Settings, load_settings
from workbench.errors import BackendUnavailable, InputError

__all__ = ["RedisAdapter"]

logger = logging.getLogger(__name__)

_pools: dict[tuple[str, float], redis.ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool(url: str, timeout_s: float) -> redis.ConnectionPool:
    """Share one pool per (URL, timeout) in the process: pools are expensive, clients cheap."""
    key = (url, timeout_s)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = redis.ConnectionPool.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                health_check_interval=30,
                max_connections=64,
            )
            _pools[key] = pool
        return pool


class RedisAdapter:
    """A prefixed, pooled Redis client whose failures are workbench errors.

    Args:
        url: ``redis://host:port/db`` (or ``rediss://``, ``unix://``).
        prefix: Prepended to every key built with :meth:`key`.
        timeout_s: Connect and read timeout of each call, seconds.
    """

    def __init__(self, url: str, *, prefix: str = "", timeout_s: float = 2.0) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise InputError(f"Redis url {url!r} must start with redis://, rediss:// or unix://")
        if timeout_s <= 0:
            raise InputError(f"Redis timeout_s={timeout_s!r} must be positive")
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.client: redis.Redis = redis.Redis(connection_pool=_pool(url, timeout_s))

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RedisAdapter:
        """An adapter for ``settings.redis_url`` (default: :func:`load_settings`)."""
        s = settings or load_settings()
        return cls(s.redis_url, prefix=s.redis_prefix, timeout_s=s.redis_timeout_s)

    def __repr__(self) -> str:
        return f"RedisAdapter({self._safe_url()!r}, prefix={self.prefix!r})"

    def _safe_url(self) -> str:
        # Never show a password in messages or logs.
        if "@" in self.url:
            scheme, _, rest = self.url.partition("://")
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
        return self.url

    def key(self, *parts: str | int) -> str:
        """The full key for ``parts``: the prefix, then the parts joined by ``:``."""
        if not parts:
            raise InputError("RedisAdapter.key() needs at least one part")
        return self.prefix + ":".join(str(p) for p in parts)

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Translate redis-py errors raised inside the block into workbench errors."""
        try:
            yield
        except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
            raise BackendUnavailable(
                f"Redis at {self._safe_url()} is unreachable ({exc}); start it or set "
                "WORKBENCH_REDIS_URL",
                details={"url": self._safe_url()},
            ) from exc
        except redis_errors.ResponseError as exc:
            raise BackendUnavailable(
                f"Redis at {self._safe_url()} refused a command: {exc}",
                details={"url": self._safe_url()},
            ) from exc
        except redis_errors.RedisError as exc:
            raise BackendUnavailable(f"Redis error at {self._safe_url()}: {exc}") from exc

    def async_client(self) -> Any:
        """A new ``redis.asyncio.Redis`` for this URL and timeout, for code on an event loop.

        asyncio connection pools belong to one event loop, so each caller (an app's startup
        hook, say) creates its own and closes it with ``await client.aclose()``; wrap calls
        in :meth:`errors` like the synchronous ones.
        """
        import redis.asyncio as aredis

        return aredis.Redis.from_url(
            self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
        )

    def ping(self) -> float:
        """Round-trip time of one PING, in seconds."""
        with self.errors():
            start = time.perf_counter()
            self.client.ping()
            return time.perf_counter() - start

    def get(self, key: str) -> bytes | None:
        """The value at ``key`` (a full key from :meth:`key`), or ``None``."""
        with self.errors():
            value: Any = self.client.get(key)
        return None if value is None else bytes(value)

    def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None:
        """Store ``value`` at ``key``, expiring after ``ttl_s`` seconds when given."""
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InputError(
                f"RedisAdapter.set value must be bytes, got {type(value).__name__}; "
                "serialise it first"
            )
        if ttl_s is not None and ttl_s <= 0:
            raise InputError(f"ttl_s={ttl_s!r} must be positive or None")
        with self.errors():
            if ttl_s is None:
                self.client.set(key, value)
            else:
                self.client.set(key, value, px=max(1, int(ttl_s * 1000)))

    def delete(self, *keys: str) -> int:
        """Delete ``keys``; returns how many existed."""
        if not keys:
            return 0
        with self.errors():
            return int(self.client.delete(*keys))

    def exists(self, key: str) -> bool:
        with self.errors():
            return bool(self.client.exists(key))

    def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires; ``None`` if it has no expiry or does not exist."""
        with self.errors():
            ms = int(self.client.pttl(key))
        return None if ms < 0 else ms / 1000.0

    def scan(self, pattern: str = "*", *, count: int = 500) -> Iterator[str]:
        """Keys under this adapter's prefix matching ``pattern`` (SCAN, never KEYS).

        The pattern is relative to the prefix; yielded keys are full keys.
        """
        with self.errors():
            for raw in self.client.scan_iter(match=self.prefix + pattern, count=count):
                yield raw.decode() if isinstance(raw, bytes) else str(raw)

    def delete_prefixed(self, pattern: str = "*") -> int:
        """Delete every key under the prefix matching ``pattern``; returns how many."""
        if not self.prefix and pattern == "*":
            raise InputError("refusing to delete every key of a Redis without a prefix")
        deleted = 0
        batch: list[str] = []
        for key in self.scan(pattern):
            batch.append(key)
            if len(batch) >= 500:
                deleted += self.delete(*batch)
                batch.clear()
        return deleted + self.delete(*batch)
