"""``@cached``: keys, single-flight (threads, tasks, processes), fencing, stale-while-revalidate,
negative caching and tag/prefix invalidation, on the memory backend and a real Redis."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cache.conftest import FakeClock, wait_until
from workbench.cache import Cache
from workbench.cache.aio import AsyncCache
from workbench.cache.patterns import (
    LOCK_PREFIX,
    TAG_PREFIX,
    CachedPolicy,
    cached,
    invalidate_prefix,
    invalidate_tags,
)
from workbench.errors import InputError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["memory", "redis", "two-tier"])
def pcache(request: pytest.FixtureRequest, namespace: str) -> Iterator[Cache]:
    """A cache on each backend the patterns run on (memory ones on a fake clock)."""
    if request.param == "memory":
        clock = FakeClock()
        cache = Cache(None, namespace=namespace, clock=clock, wall=clock)
    else:
        url = request.getfixturevalue("redis_url")
        cache = Cache(url, namespace=namespace, two_tier=request.param == "two-tier", strict=True)
    try:
        yield cache
    finally:
        cache.clear()
        cache.close()


@pytest.fixture
def rcache(redis_url: str, namespace: str) -> Iterator[Cache]:
    cache = Cache(redis_url, namespace=namespace, strict=True)
    try:
        yield cache
    finally:
        cache.clear()
        cache.close()


def blocked(threads: list[threading.Thread]) -> bool:
    """Whether every thread sits in a ``wait`` (an Event or Condition), not running."""
    frames = sys._current_frames()
    return all(
        t.ident in frames and frames[t.ident].f_code.co_name == "wait"  # type: ignore[index]
        for t in threads
    )


# -- keys -------------------------------------------------------------------------------------


def test_key_binds_arguments_and_separates_types() -> None:
    cache = Cache()

    @cached(cache, ttl=10)
    def f(x: Any, y: int = 2) -> Any:
        return x

    assert f.key_for(1) == f.key_for(x=1) == f.key_for(1, 2) == f.key_for(1, y=2)
    keys = {f.key_for(v) for v in (1, 1.0, True, "1", b"1", [1], {"1": 1}, None, 2**70)}
    assert len(keys) == 9
    assert f.key_for({"a": 1, "b": 2}) == f.key_for({"b": 2, "a": 1})
    assert f.key_for(1).startswith(f"{f.__module__}.{f.__qualname__}:{{")


def test_unserialisable_arguments_are_refused_with_the_fix() -> None:
    cache = Cache()

    @cached(cache, ttl=10)
    def f(x: Any) -> Any:
        return 1

    for bad in ({1, 2}, object(), [1, {2}]):
        with pytest.raises(InputError, match="key="):
            f(bad)

    @cached(cache, ttl=10, key=lambda x: f"user-{x.id}")
    def g(x: Any) -> Any:
        return x.id

    class User:
        id = 7

    assert g(User()) == 7 and g.key_for(User()).endswith(":{user-7}")

    @cached(cache, ttl=10, key=lambda x: "a{b}")
    def h(x: Any) -> Any:
        return 1

    with pytest.raises(InputError, match="brace"):
        h(1)


def _ref(v: Any) -> Any:
    """A reference form that tells apart what a key must (type-aware, lists == tuples)."""
    if isinstance(v, bool) or v is None:
        return ("s", type(v).__name__, v)
    if isinstance(v, int | float | str | bytes):
        return ("s", type(v).__name__, repr(v))
    if isinstance(v, list | tuple):
        return ("l", tuple(_ref(x) for x in v))
    return ("d", frozenset((_ref(k), _ref(x)) for k, x in v.items()))


_json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(_json_like, _json_like)
def test_keys_are_equal_exactly_when_arguments_are(a: Any, b: Any) -> None:
    cache = Cache()

    @cached(cache, ttl=10)
    def f(x: Any) -> Any:
        return None

    assert (f.key_for(a) == f.key_for(b)) == (_ref(a) == _ref(b))


def test_policy_is_validated() -> None:
    with pytest.raises(InputError, match="ttl"):
        CachedPolicy(ttl=0, namespace="n")
    with pytest.raises(InputError, match="negative_ttl"):
        CachedPolicy(ttl=1, namespace="n", negative_exceptions=(KeyError,))
    with pytest.raises(InputError, match="brace"):
        CachedPolicy(ttl=1, namespace="a{b")
    assert CachedPolicy(ttl=1, namespace="n", lock_timeout_s=3).wait_timeout_s == 6


# -- basic caching on every backend -----------------------------------------------------------


def test_results_are_cached_and_invalidated(pcache: Cache) -> None:
    calls: list[int] = []

    @cached(pcache, ttl=60, tags=lambda x: [f"item:{x}", "all"], namespace="items")
    def load(x: int) -> dict[str, int]:
        calls.append(x)
        return {"x": x, "n": len(calls)}

    assert load(1) == {"x": 1, "n": 1}
    assert load(1) == {"x": 1, "n": 1}
    assert load(2)["n"] == 2 and calls == [1, 2]
    assert invalidate_tags(pcache, "item:1") == 1
    assert load(1)["n"] == 3 and load(2)["n"] == 2
    assert invalidate_tags(pcache, "all") == 2
    assert load(2)["n"] == 4
    assert load.invalidate(2) and load(2)["n"] == 5
    assert invalidate_prefix(pcache, "items:") == 1  # key 1 went with "all"
    assert load(1)["n"] == 6
    with pytest.raises(InputError, match="clear"):
        invalidate_prefix(pcache, "")
    s = load.stats()
    assert s["miss"] == 6 and s["hit"] == 2


def test_unencodable_result_is_an_error_and_frees_the_lock(pcache: Cache) -> None:
    @cached(pcache, ttl=60, namespace="bad")
    def f() -> Any:
        return {1, 2}

    with pytest.raises(InputError, match="encode"):
        f()
    assert not pcache.exists(LOCK_PREFIX + f.key_for())
    assert f.store.local.acquire(f.store.core.key(LOCK_PREFIX + f.key_for()), 1.0) is not None


def test_tag_index_is_bounded(pcache: Cache) -> None:
    @cached(pcache, ttl=60, tags=("t",), max_tag_members=4, namespace="bounded")
    def f(x: int) -> int:
        return x

    for i in range(8):
        assert f(i) == i
    assert len(pcache.hgetall(TAG_PREFIX + "t")) <= 5
    assert f.stats()["uncached"] >= 3
    assert invalidate_tags(pcache, "t") == f.stats()["miss"]


# -- single-flight ----------------------------------------------------------------------------


def test_threads_share_one_computation(pcache: Cache) -> None:
    gate = threading.Event()
    calls: list[int] = []

    @cached(pcache, ttl=60, namespace="sf")
    def slow(x: int) -> int:
        calls.append(x)
        gate.wait(10)
        return x * 10

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(slow(3))) for _ in range(8)]
    threads[0].start()
    assert wait_until(lambda: calls == [3], 5)
    for t in threads[1:]:
        t.start()
    assert wait_until(lambda: blocked(threads), 5)
    gate.set()
    for t in threads:
        t.join(10)
    assert results == [30] * 8 and calls == [3]
    assert slow.stats()["waited"] == 7 and slow.stats()["miss"] == 1


def test_a_leader_exception_reaches_its_followers_and_frees_the_lock(pcache: Cache) -> None:
    gate = threading.Event()
    calls: list[int] = []

    @cached(pcache, ttl=60, namespace="boom")
    def boom() -> int:
        calls.append(1)
        gate.wait(10)
        raise RuntimeError("upstream down")

    errors: list[BaseException] = []

    def call() -> None:
        try:
            boom()
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    assert wait_until(lambda: blocked(threads), 5)
    gate.set()
    for t in threads:
        t.join(10)
    assert len(errors) == 4 and calls == [1]
    assert not pcache.exists(LOCK_PREFIX + boom.key_for())
    with pytest.raises(RuntimeError):
        boom()  # not cached: computed again at once (the lock was freed)
    assert calls == [1, 1]


def test_asyncio_tasks_share_one_computation(pcache: Cache) -> None:
    calls: list[int] = []

    async def scenario() -> list[int]:
        gate = asyncio.Event()

        @cached(pcache, ttl=60, namespace="asf")
        async def slow(x: int) -> int:
            calls.append(x)
            await gate.wait()
            return x + 1

        tasks = [asyncio.ensure_future(slow(1)) for _ in range(10)]
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        gate.set()
        out = await asyncio.gather(*tasks)
        assert await slow(1) == 2
        return out

    assert asyncio.run(scenario()) == [2] * 10
    assert calls == [1]


@pytest.mark.parametrize("where", ["memory", "redis"])
def test_async_cache_backs_async_functions(where: str, redis_url: str, namespace: str) -> None:
    calls: list[int] = []

    async def scenario() -> None:
        cache = AsyncCache(None if where == "memory" else redis_url, namespace=namespace)
        gate = asyncio.Event()

        @cached(cache, ttl=60, tags=("a",))
        async def f(x: int) -> int:
            calls.append(x)
            await gate.wait()
            return -x

        tasks = [asyncio.ensure_future(f(4)) for _ in range(5)]
        while not calls:
            await asyncio.sleep(0.001)
        gate.set()
        assert await asyncio.gather(*tasks) == [-4] * 5
        assert await f(4) == -4 and calls == [4]
        assert await f.ainvalidate(4)
        assert await f(4) == -4 and calls == [4, 4]
        await cache.clear()
        await cache.aclose()

    asyncio.run(scenario())


def _worker(url: str, ns: str, threads: int, total: int, out: Any) -> None:
    """One process of the cross-process single-flight test."""
    cache = Cache(url, namespace=ns, strict=True)

    @cached(cache, ttl=60, namespace="xp", lock_timeout_s=10)
    def expensive(x: int) -> int:
        cache.incr("computes")
        # hold the computation until every caller of both processes has arrived
        wait_until(lambda: int(cache.get("arrivals", 0)) >= total, 20, 0.02)
        return x * x

    results: list[int] = []

    def call() -> None:
        cache.incr("arrivals")
        results.append(expensive(12))

    ts = [threading.Thread(target=call) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    out.put((os.getpid(), results, expensive.stats()))


def test_two_processes_compute_once(rcache: Cache, redis_url: str) -> None:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    per, n = 6, 2
    procs = [
        ctx.Process(target=_worker, args=(redis_url, rcache.namespace, per, per * n, out))
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    reports = [out.get(timeout=40) for _ in procs]
    for p in procs:
        p.join(10)
    assert all(r[1] == [144] * per for r in reports)
    assert rcache.get("computes") == 1
    stats = [r[2] for r in reports]
    assert sum(s["miss"] for s in stats) == 1
    # the process that did not compute waited on the other's Redis lock
    idle = next(s for s in stats if s["miss"] == 0)
    assert idle["waited"] >= 1 and idle["hit"] + idle["waited"] == per


def _dying_holder(url: str, ns: str) -> None:
    cache = Cache(url, namespace=ns, strict=True)

    @cached(cache, ttl=60, namespace="dead", lock_timeout_s=0.5)
    def f() -> str:
        cache.set("started", True)
        threading.Event().wait(60)  # killed while it holds the lock
        return "never"

    f()


def test_a_dead_holder_blocks_the_key_only_until_its_lock_expires(
    rcache: Cache, redis_url: str
) -> None:
    proc = mp.get_context("spawn").Process(target=_dying_holder, args=(redis_url, rcache.namespace))
    proc.start()
    try:
        assert wait_until(lambda: rcache.get("started") is True, 20)

        @cached(rcache, ttl=60, namespace="dead", lock_timeout_s=0.5)
        def f() -> str:
            return "recomputed"

        assert rcache.exists(LOCK_PREFIX + f.key_for())
        os.kill(proc.pid or 0, signal.SIGKILL)
        start = time.monotonic()
        assert f() == "recomputed"
        assert time.monotonic() - start < 3.0
        assert f.stats() | {} == f.stats() and f.stats()["miss"] == 1
        assert f() == "recomputed" and f.stats()["hit"] == 1
    finally:
        proc.kill()
        proc.join(5)


# -- fencing ----------------------------------------------------------------------------------


def _two_writers(cache: Cache, gate: threading.Event, **kw: Any) -> tuple[Any, Any]:
    @cached(cache, ttl=60, namespace="fence", key=lambda: "k", **kw)
    def slow() -> str:
        gate.wait(10)
        return "old"

    @cached(cache, ttl=60, namespace="fence", key=lambda: "k", **kw)
    def fast() -> str:
        return "new"

    return slow, fast


def test_a_holder_whose_lock_expired_cannot_overwrite(pcache: Cache) -> None:
    gate = threading.Event()
    slow, fast = _two_writers(pcache, gate, lock_timeout_s=0.3)
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(slow()))
    t.start()
    lock = LOCK_PREFIX + slow.key_for()
    if pcache.adapter is None:  # memory: the lock table runs on the cache's fake clock
        assert wait_until(lambda: slow.store.local._locks, 5)
        pcache.core.clock.advance(1.0)  # type: ignore[attr-defined]
    else:
        assert wait_until(lambda: pcache.exists(lock), 5)
        assert wait_until(lambda: not pcache.exists(lock), 5)
    assert fast() == "new"
    gate.set()
    t.join(10)
    assert out == ["old"]  # its caller still gets its result
    assert slow.stats()["fenced"] == 1
    assert fast() == "new" and slow() == "new"


def test_an_invalidation_during_the_computation_wins(pcache: Cache) -> None:
    gate = threading.Event()
    slow, fast = _two_writers(pcache, gate, tags=("t",))
    t = threading.Thread(target=slow)
    t.start()
    assert wait_until(lambda: bool(pcache.hgetall(TAG_PREFIX + "t")), 5)
    invalidate_tags(pcache, "t")  # the data changed while "old" was being computed
    gate.set()
    t.join(10)
    assert slow.stats()["fenced"] == 1
    assert fast() == "new"


# -- stale-while-revalidate and negative caching ---------------------------------------------


def test_stale_values_are_served_while_one_refresh_runs(pcache: Cache) -> None:
    wall = FakeClock(1e6)
    gate = threading.Event()
    gate.set()
    calls: list[int] = []

    def make() -> Any:
        @cached(pcache, ttl=10, stale_ttl=50, namespace="swr", wall=wall)
        def f() -> int:
            calls.append(1)
            assert gate.wait(10)
            return len(calls)

        return f

    f, g = make(), make()  # g: another process's view (its own flights and refreshes)
    assert f() == 1
    wall.advance(11)
    gate.clear()
    assert [f() for _ in range(5)] == [1] * 5
    # f's refresh is computing (and holds the key's lock) before g is called: otherwise, on a
    # loaded machine, g's refresh could take the lock first and be the one that waits
    assert wait_until(lambda: len(calls) == 2, 5)
    assert g() == 1  # its refresh finds the key's lock taken and leaves the work
    assert g.drain(5)
    assert len(calls) == 2
    gate.set()
    assert f.drain(5)
    assert calls == [1, 1] and f() == 2
    assert f.stats()["stale"] == 5 and f.stats()["refresh"] == 1


def test_past_the_stale_window_callers_wait_for_a_fresh_value() -> None:
    clock = FakeClock()
    cache = Cache(None, namespace="swr2", clock=clock, wall=clock)
    n: list[int] = []

    @cached(cache, ttl=10, stale_ttl=5, wall=clock, clock=clock)
    def f() -> int:
        n.append(1)
        return len(n)

    assert f() == 1
    clock.advance(16)
    assert f() == 2 and f.stats()["stale"] == 0


def test_negative_results_are_cached_for_negative_ttl(pcache: Cache) -> None:
    wall = FakeClock(1e6)
    calls: list[str] = []

    @cached(
        pcache,
        ttl=100,
        negative_ttl=5,
        negative_exceptions=(LookupError,),
        namespace="neg",
        wall=wall,
    )
    def find(name: str) -> Any:
        calls.append(name)
        if name == "none":
            return None
        if name == "missing":
            raise KeyError(f"no user {name}")
        if name == "broken":
            raise RuntimeError("not cached")
        return name.upper()

    assert find("none") is None and find("none") is None
    with pytest.raises(KeyError, match="no user"):
        find("missing")
    with pytest.raises(LookupError, match="no user"):  # raised again from the cache
        find("missing")
    for _ in range(2):
        with pytest.raises(RuntimeError):
            find("broken")
    assert calls == ["none", "missing", "broken", "broken"]
    assert find.stats()["negative"] == 2
    wall.advance(6)
    assert find("none") is None
    with pytest.raises(KeyError):
        find("missing")
    assert calls[-2:] == ["none", "missing"]


# -- two-tier: invalidations reach other processes' memory tiers ------------------------------


def test_invalidations_reach_another_processes_memory_tier(redis_url: str) -> None:
    ns = f"t-{uuid.uuid4().hex[:12]}"
    a = Cache(redis_url, namespace=ns, two_tier=True)
    b = Cache(redis_url, namespace=ns, two_tier=True)  # its own id and listener: a peer
    try:
        for c in (a, b):
            assert c._listener is not None and c._listener.ready.wait(5)
        version = ["v1"]

        def make(cache: Cache) -> Any:
            @cached(cache, ttl=60, tags=("cfg",), namespace="cfg")
            def config() -> str:
                return version[0]

            return config

        fa, fb = make(a), make(b)
        assert fa() == "v1"
        full = b.core.key(fb.key_for())
        # b keeps a read-through copy once no invalidation message races its read
        assert wait_until(lambda: fb() == "v1" and full in b.core.memory, 5)
        version[0] = "v2"
        invalidate_tags(a, "cfg")
        assert wait_until(lambda: full not in b.core.memory, 5)
        assert fb() == "v2"
        version[0] = "v3"
        invalidate_prefix(a, "cfg:")
        assert wait_until(lambda: full not in b.core.memory, 5)
        assert fb() == "v3" and fa() == "v3"
    finally:
        a.clear()
        a.close()
        b.close()
