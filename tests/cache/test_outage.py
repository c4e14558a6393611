"""Redis outages under load: the memory tier takes over, nothing reaches callers, and recovery
never serves a stale value (against throwaway Redis servers the tests stop and start).

The server keeps an append-only file synced on every write, so after a restart it still holds
what it had before the outage: a key deleted or overwritten only in the memory tier during the
outage would then be read stale from Redis unless the journal was replayed.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from workbench.cache import AsyncCache, Cache
from workbench.errors import InputError
from workbench.testing import RedisServer

pytestmark = pytest.mark.timeout(120)

THREADS = 4
TIMEOUT_S = 0.2
DELETED = object()


class Load:
    """``THREADS`` threads of random set/delete/get on keys each thread owns, so each knows
    the value every key must have. A read must return that value, or (only while Redis is
    out) a miss of a key written before the outage; never another value."""

    def __init__(self, cache: Cache, keys_per_thread: int = 40) -> None:
        self.cache = cache
        self.keys = keys_per_thread
        self.expected: list[dict[str, Any]] = [{} for _ in range(THREADS)]
        self.errors: list[BaseException] = []
        self.stale: list[tuple[str, Any, Any]] = []
        self.ops = [0] * THREADS
        self.slowest = [0.0] * THREADS
        self.outage = threading.Event()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(THREADS)
        ]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def wait_ops(self, n: int, timeout_s: float = 20.0) -> None:
        """Wait until every thread has done ``n`` more operations."""
        target = [k + n for k in self.ops]
        deadline = time.monotonic() + timeout_s
        while any(o < t for o, t in zip(self.ops, target, strict=True)):
            assert time.monotonic() < deadline, f"load stalled: {self.ops} < {target}"
            assert not self.errors, self.errors
            time.sleep(0.01)  # polling progress counters, not synchronising

    def _run(self, i: int) -> None:
        rng = random.Random(i)
        mine = self.expected[i]
        try:
            while not self._stop.is_set():
                key = f"t{i}:{rng.randrange(self.keys)}"
                op = rng.random()
                start = time.perf_counter()
                if op < 0.4:
                    value = {"v": rng.randrange(10**9), "t": i}
                    self.cache.set(key, value, ttl=600)
                    mine[key] = value
                elif op < 0.55:
                    self.cache.delete(key)
                    mine[key] = DELETED
                else:
                    got = self.cache.get(key, DELETED)
                    want = mine.get(key, DELETED)
                    wrong = got is not want and got != want
                    if wrong and not (got is DELETED and self.outage.is_set()):
                        self.stale.append((key, want, got))
                self.slowest[i] = max(self.slowest[i], time.perf_counter() - start)
                self.ops[i] += 1
        except BaseException as exc:  # recorded and asserted by the test
            self.errors.append(exc)

    def check_all(self) -> None:
        """After recovery every key reads exactly as its writer last left it."""
        for mine in self.expected:
            for key, want in mine.items():
                got = self.cache.get(key, DELETED)
                assert got is want or got == want, (key, want, got)


def _wait_mode(cache: Cache, mode: str, timeout_s: float) -> float:
    start = time.monotonic()
    while cache.current_mode() != mode:
        assert time.monotonic() - start < timeout_s, f"still {cache.current_mode()}"
        time.sleep(0.005)  # polling the cache's mode
    return time.monotonic() - start


@pytest.mark.parametrize("fault", ["stop", "freeze"])
def test_outage_under_load_loses_nothing_and_serves_nothing_stale(fault: str) -> None:
    with RedisServer(persistent=True) as server:
        cache = Cache(server.url, namespace="outage", timeout_s=TIMEOUT_S, open_s=0.2)
        with Load(cache) as load:
            load.wait_ops(100)
            errors_before = cache.counters.errors
            load.outage.set()
            began = time.monotonic()
            server.stop() if fault == "stop" else server.freeze()
            took = _wait_mode(cache, "fallback", 5.0)
            load.wait_ops(200)
            # fallback within the timeout of the calls that found Redis gone, and within one
            # failed call per connection (each thread holds one); the slack above the timeout
            # is for a loaded machine (the test command runs on 2 shared cores)
            assert took <= TIMEOUT_S + 1.5, took
            assert cache.counters.errors - errors_before <= THREADS
            assert max(load.slowest) <= TIMEOUT_S + 1.5, load.slowest
            assert time.monotonic() - began < 10
            server.start() if fault == "stop" else server.thaw()
            back = _wait_mode(cache, "redis", 5.0)
            assert back <= 2.0, back
            load.wait_ops(20)  # a read that chose the memory tier just before recovery may miss
            load.outage.clear()
            load.wait_ops(200)
        assert not load.errors, load.errors
        assert not load.stale, load.stale[:5]
        assert cache.counters.outages >= 1 and cache.counters.recoveries >= 1
        load.check_all()
        # and Redis itself holds what a second, fresh cache reads
        fresh = Cache(server.url, namespace="outage")
        for mine in load.expected:
            for key, want in mine.items():
                got = fresh.get(key, DELETED)
                assert got is want or got == want, (key, want, got)


def test_drop_policy_deletes_outage_writes_instead_of_serving_old_values() -> None:
    with RedisServer(persistent=True) as server:
        cache = Cache(
            server.url, namespace="drop", timeout_s=TIMEOUT_S, open_s=0.05, outage_writes="drop"
        )
        cache.set("k", "before")
        cache.set("gone", "before")
        server.stop()
        cache.set("k", "during")  # served from memory during the outage
        assert cache.get("k") == "during"
        cache.delete("gone")
        server.start()
        _wait_until_recovered(cache)
        assert cache.get("k") is None  # dropped: neither the outage value nor the old one
        assert cache.get("gone") is None


def _wait_until_recovered(cache: Cache, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while cache.in_fallback():
        assert time.monotonic() < deadline
        cache.exists("probe")  # a call after open_s attempts the recovery
        time.sleep(0.02)  # pacing the probes


def test_journal_overflow_flushes_the_namespace_rather_than_risk_stale_reads() -> None:
    with RedisServer(persistent=True) as server:
        cache = Cache(server.url, namespace="ovf", timeout_s=TIMEOUT_S, open_s=0.05, max_journal=3)
        other = Cache(server.url, namespace="other")
        cache.set_many({f"k{i}": i for i in range(10)})
        other.set("keep", 1)
        server.stop()
        for i in range(5):
            cache.delete(f"k{i}")
        assert cache.core.journal.overflowed
        server.start()
        _wait_until_recovered(cache)
        assert cache.get_many([f"k{i}" for i in range(10)]) == {}
        assert other.get("keep") == 1  # other namespaces untouched


def test_strict_mode_raises_instead_of_falling_back() -> None:
    from workbench.errors import BackendUnavailable

    with RedisServer() as server:
        cache = Cache(server.url, namespace="strict", timeout_s=TIMEOUT_S, strict=True)
        cache.set("a", 1)
        server.stop()
        with pytest.raises(BackendUnavailable):
            cache.get("a")
        with pytest.raises(BackendUnavailable):
            cache.set("a", 2)


_PEER = textwrap.dedent(
    """
    import json, sys
    from workbench.cache import Cache
    cache = Cache(sys.argv[1], namespace="shared", two_tier=True, timeout_s=0.2, open_s=0.05)
    cache._listener.ready.wait(5)
    for line in sys.stdin:
        cmd = json.loads(line)
        op, args = cmd["op"], cmd.get("args", [])
        if op == "get":
            out = cache.get(*args)
        elif op == "set":
            out = cache.set(*args)
        elif op == "delete":
            out = cache.delete(*args)
        elif op == "recover":
            import time
            deadline = time.monotonic() + 5
            while cache.in_fallback() and time.monotonic() < deadline:
                cache.exists("probe")
                time.sleep(0.02)
            out = cache.current_mode()
        elif op == "mode":
            out = cache.current_mode()
        print(json.dumps({"out": out}), flush=True)
    """
)


class Peer:
    """Another process with a two-tier cache on the same Redis, driven line by line."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PEER, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __call__(self, op: str, *args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, "args": list(args)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "peer process died"
        return json.loads(line)["out"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def test_two_processes_are_coherent_again_after_an_outage() -> None:
    with RedisServer(persistent=True) as server:
        a = Cache(server.url, namespace="shared", two_tier=True, timeout_s=0.2, open_s=0.05)
        assert a._listener is not None and a._listener.ready.wait(5)
        b = Peer(server.url)
        try:
            a.set("k1", "v1")
            a.set("k4", "v4")
            assert b("get", "k1") == "v1"  # b now holds a local copy of k1
            assert b("get", "k4") == "v4"
            a.set("k4", "v4b")  # published: b drops its copy
            assert _eventually(lambda: b("get", "k4") == "v4b")
            server.stop()
            a.delete("k1")  # only in a's memory tier and journal
            a.set("k2", "a2")
            b("set", "k3", "b3")
            assert b("get", "k1") == "v1"  # during the outage b has only its own tier
            server.start()
            _wait_until_recovered(a)
            assert b("recover") in ("two-tier",)
            for cache_get in (a.get, lambda k: b("get", k)):
                assert cache_get("k1") is None
                assert cache_get("k2") == "a2"
                assert cache_get("k3") == "b3"
                assert cache_get("k4") == "v4b"
        finally:
            b.close()
            a.close()


def _eventually(check: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # waiting for a pub/sub message to arrive
    return True


def test_async_cache_outage_and_recovery() -> None:
    async def scenario(url: str, server: RedisServer) -> None:
        cache = AsyncCache(url, namespace="aoutage", timeout_s=TIMEOUT_S, open_s=0.05)
        await cache.set("old", "before")
        await cache.set("kept", "before")
        server.stop()
        await cache.set("new", "during")  # no exception: served from memory
        await cache.delete("old")
        assert await cache.get("new") == "during"
        assert cache.current_mode() == "fallback"
        await asyncio.to_thread(server.start)
        deadline = time.monotonic() + 5
        while cache.in_fallback():
            assert time.monotonic() < deadline
            await cache.exists("probe")
            await asyncio.sleep(0.02)
        assert await cache.get("old") is None
        assert await cache.get("new") == "during"
        assert await cache.get("kept") == "before"
        await cache.aclose()

    with RedisServer(persistent=True) as server:
        asyncio.run(scenario(server.url, server))


def test_a_refused_outage_write_leaves_nothing_to_replay() -> None:
    """An increment refused during an outage (the key holds a value, not a counter) raises
    and records nothing: recovery must not replay an INCRBY that never happened. Both shells;
    the async one used to journal the increment before applying it."""

    async def scenario(url: str, server: RedisServer) -> None:
        cache = AsyncCache(url, namespace="arefused", timeout_s=TIMEOUT_S, open_s=0.05)
        server.stop()
        await cache.set("word", "not a number")  # served from memory, journaled
        with pytest.raises(InputError, match="holds a value"):
            await cache.incr("word")
        ((_, commands),) = cache.core.journal.plan("replay")
        assert [c[0] for c in commands] == ["SET"], commands  # the set, no INCRBY
        await cache.aclose()

    def sync_scenario(url: str, server: RedisServer) -> None:
        cache = Cache(url, namespace="refused", timeout_s=TIMEOUT_S, open_s=0.05)
        server.stop()
        cache.set("word", "not a number")
        with pytest.raises(InputError, match="holds a value"):
            cache.incr("word")
        ((_, commands),) = cache.core.journal.plan("replay")
        assert [c[0] for c in commands] == ["SET"], commands
        cache.close()

    with RedisServer(persistent=True) as server:
        asyncio.run(scenario(server.url, server))
    with RedisServer(persistent=True) as server:
        sync_scenario(server.url, server)
