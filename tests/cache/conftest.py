"""Fixtures of the cache tests.

- ``namespace``: a namespace no other test uses.
- ``throwaway_redis_url``: a private ``redis-server`` for one test (fault tests stop it).
- ``redis_cluster``: a throwaway Redis Cluster (3 masters, 3 replicas, ``cluster-node-timeout
  2000``), started once per module that asks for it.
- ``backend``: one :class:`Backend` per cache implementation, the parameter of the contract
  suite: memory, Redis, Redis two-tier, Redis Cluster, and :class:`AsyncCache` on memory and on
  Redis, the async one seen through :class:`SyncFacade` so that one test body covers both.

Caches made by a ``backend`` run in strict mode with a generous timeout: a Redis failure
raises instead of being served by the memory tier, so a contract test exercises the backend
it names and never passes on the fallback by accident.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from workbench.cache import Cache
from workbench.cache.aio import AsyncCache
from workbench.redis_adapter import RedisAdapter
from workbench.testing import ThrowawayRedisCluster, throwaway_redis, throwaway_redis_cluster

BACKENDS = ["memory", "redis", "two-tier", "cluster", "async-memory", "async-redis"]


class FakeClock:
    """A monotonic clock that moves only when told to (seconds)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes; returns its last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)  # polling a condition with a deadline


class SyncFacade:
    """An :class:`AsyncCache` seen through synchronous calls, each run on ``loop``.

    Coroutine methods are run to completion; everything else (``core``, ``config``,
    ``current_mode``, ...) passes through unchanged.
    """

    def __init__(self, cache: AsyncCache, loop: asyncio.AbstractEventLoop) -> None:
        self._cache = cache
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._cache, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(attr(*args, **kwargs))

        return call

    def close(self) -> None:
        self._loop.run_until_complete(self._cache.aclose())


@dataclass
class Backend:
    """One cache implementation on one store, and the caches a test made on it.

    Attributes:
        name: The parameter id (``memory``, ``redis``, ``two-tier``, ``cluster``, ...).
        url: The Redis URL, or ``None`` for the memory backend.
        namespace: The test's own namespace (the default of :meth:`make`).
        cluster: ``url`` is a node of a Redis Cluster.
        two_tier: Caches are made with ``two_tier=True``.
        is_async: Caches are :class:`AsyncCache` behind a :class:`SyncFacade`.
        clock: The injected clock of memory-backed caches (``None`` on Redis, whose TTLs run
            on the server's clock).
    """

    name: str
    url: str | None
    namespace: str
    cluster: bool = False
    two_tier: bool = False
    is_async: bool = False
    clock: FakeClock | None = None
    _made: list[Any] = field(default_factory=list)
    _prefixes: set[str] = field(default_factory=set)
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def remote(self) -> bool:
        """Whether caches of this backend share one store (Redis)."""
        return self.url is not None

    def make(self, namespace: str | None = None, **settings: Any) -> Any:
        """A cache of this backend on ``namespace`` (default: the test's own)."""
        ns = self.namespace if namespace is None else namespace
        if self.clock is not None:
            settings.setdefault("clock", self.clock)
        if self.remote:
            settings.setdefault("strict", True)
            settings.setdefault("timeout_s", 5.0)
        if self.two_tier:
            settings.setdefault("two_tier", True)
        cache: Any
        if self.is_async:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            cache = SyncFacade(
                AsyncCache(self.url, namespace=ns, cluster=self.cluster, **settings), self._loop
            )
        else:
            cache = Cache(self.url, namespace=ns, cluster=self.cluster, **settings)
        self._made.append(cache)
        self._prefixes.add(cache.config.key_prefix)
        return cache

    def pass_time(self, seconds: float) -> None:
        """Let ``seconds`` pass for memory-backed caches (Redis's own clock runs by itself)."""
        if self.clock is not None:
            self.clock.advance(seconds)

    def adapter(self, namespace: str | None = None) -> RedisAdapter:
        """A raw adapter on this backend's Redis, prefixed with ``namespace``'s keys."""
        assert self.url is not None
        ns = self.namespace if namespace is None else namespace
        return RedisAdapter(self.url, prefix=f"{ns}:", cluster=self.cluster)

    def put_raw(self, cache: Any, key: str, data: bytes) -> None:
        """Store ``data`` as is at ``key`` of ``cache``, bypassing its encoder."""
        full = cache.core.key(key)
        if self.remote:
            adapter = self.adapter(cache.namespace)
            with adapter.errors():
                adapter.client.set(full, data)
        else:
            cache.core.memory.set(full, data)

    def share(self, writer: Any, reader: Any, key: str) -> None:
        """Make what ``writer`` stored at ``key`` visible to ``reader`` (Redis: it already is;
        memory: each cache has its own tier, so copy the stored bytes)."""
        if not self.remote:
            data = writer.core.memory.peek(writer.core.key(key))
            assert data is not None, f"{key!r} is not in the writer's memory tier"
            self.put_raw(reader, key, data)

    def close(self) -> None:
        for cache in self._made:
            cache.close()
        if self.remote:
            assert self.url is not None
            for prefix in self._prefixes:
                RedisAdapter(self.url, prefix=prefix, cluster=self.cluster).delete_prefixed()
        if self._loop is not None:
            self._loop.close()


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def throwaway_redis_url() -> Iterator[str]:
    """URL of a private, non-persistent redis-server that lives for one test."""
    with throwaway_redis() as url:
        yield url


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[ThrowawayRedisCluster]:
    """A throwaway Redis Cluster (3 masters + 3 replicas, cluster-node-timeout 2000 ms)."""
    with throwaway_redis_cluster(masters=3, replicas=1, node_timeout_ms=2000) as cluster:
        yield cluster


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, namespace: str) -> Iterator[Backend]:
    """Every cache implementation in turn (see the module docstring)."""
    name: str = request.param
    if name in ("memory", "async-memory"):
        b = Backend(name, None, namespace, is_async=name == "async-memory", clock=FakeClock())
    elif name == "cluster":
        cluster: ThrowawayRedisCluster = request.getfixturevalue("redis_cluster")
        b = Backend(name, cluster.url, namespace, cluster=True)
    else:
        url: str = request.getfixturevalue("redis_url")
        b = Backend(
            name, url, namespace, two_tier=name == "two-tier", is_async=name == "async-redis"
        )
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def cache(backend: Backend) -> Any:
    """A cache of ``backend`` on the test's namespace."""
    return backend.make()
