"""The cache suite: :class:`~workbench.cache.Cache` beside ``redis-benchmark``, raw redis-py and
cashews, against the same Redis, in the same run.

Parts (``workbench bench cache --part NAME``, repeatable; all by default):

* ``roundtrip``: ``GET`` and ``SET`` round trips on one connection from one thread:
  ``redis-benchmark -c 1`` (no pipelining), redis-py's client (through the adapter, no cache
  layer: the floor of any Python client here) and ``Cache.get``/``Cache.set``. Targets: ours at
  least 50 % of ``redis-benchmark -c 1``. ``redis-benchmark -c 50`` is shown for context.
* ``batch``: ``get_many``/``set_many`` of 100 keys on one connection (one MGET, one pipelined
  MSET) in keys/s beside ``redis-benchmark -c 1 -P 16``; target at least 50 % of its GET/s
  (for both, as the issue sets it; the note also gives ``set_many`` against its SET/s).
* ``latency``: single ``Cache.get`` on loopback timed one by one: p50, p99, p99.9 (target p99
  under 1 ms), beside raw redis-py and ``redis-benchmark``'s own percentiles.
* ``memory``: ``Cache(url=None).get`` (sync, one thread; target 1,000,000 gets/s) and the
  two-tier hit path (``two_tier=True``, the key already local; target within 2x of the memory
  tier's time per get). Every timed two-tier repeat is checked to have made no Redis call (the
  cache's Redis latency histogram must not move), else it is taken again. Both are also given
  per second of the thread's CPU time, which a loaded machine does not deflate.
* ``asyncio``: the peer library, cashews (asyncio only), on the same workloads: get/set round
  trips and ``get_many``/``set_many`` of 100 keys on Redis, get/set on its memory backend,
  beside raw ``redis.asyncio`` and, where :mod:`workbench.cache.aio` exists, ``AsyncCache``.
  Each timed read is first checked to return the value.

Method: every figure is the median of several repeats (7 in a full run, 2 in a quick one),
each a fresh timed loop; ``params`` hold every repeat's value and the spread (min, max,
interquartile range). Within a part the tools take turns repeat by repeat, in a rotating order,
so a load change on a shared machine hits all of them alike; a ratio against a baseline is the
median of the per-repeat ratios of such adjacent runs. The value is 100 bytes (msgpack adds a
tag: its encoded size is what ``redis-benchmark -d`` sends). A Redis call of ours that falls
back to the memory tier would make a Redis figure a memory figure, so such a measurement is
reported as missing rather than kept.

Redis: the server of ``WORKBENCH_REDIS_URL``, database :data:`BENCH_DB` (redis-benchmark's
``--dbnum`` too); every key of ours lives under a per-run prefix and is deleted at the end, as
is redis-benchmark's one key (``key:__rand_int__``). Unix-socket and TLS URLs are measured by
ours only (redis-benchmark is given host and port).
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import functools
import importlib.metadata
import importlib.util
import inspect
import io
import os
import shutil
import statistics
import subprocess
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from workbench.errors import InputError
from workbench.reports.bench import BenchContext, Measurement, repeated, spread, time_call

__all__ = ["BENCH_DB", "PARTS", "VALUE", "bench_url", "parse_redis_benchmark_csv", "run", "spread"]

#: The Redis database the suite writes to (ours and redis-benchmark's).
BENCH_DB = 15
#: The value every workload reads and writes (its msgpack encoding is what ``-d`` sends).
VALUE = b"x" * 100
BATCH = 100
_RB_KEY = "key:__rand_int__"  # what redis-benchmark's GET/SET tests read and write
_UNITS = {
    "ops_per_s": "ops/s",
    "keys_per_s": "keys/s",
    "gets_per_s": "gets/s",
    "gets_per_cpu_s": "gets/CPU-s",
    "sets_per_s": "sets/s",
    "latency_us": "us",
    "fraction_of_baseline": "x",
    "speedup_vs_peer": "x",
    "slowdown_vs_memory": "x",
}
_LOWER_IS_BETTER = {"latency_us", "slowdown_vs_memory"}
Samples = dict[str, list[float]]


@dataclass(frozen=True)
class _Setup:
    """Where and how big one run is."""

    url: str
    host: str | None
    port: int | None
    password: str | None
    prefix: str
    data_size: int
    repeats: int
    quick: bool

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def _m(
    name: str,
    tool: str,
    metric: str,
    samples: Sequence[float] | None,
    note: str = "",
    *,
    target: float | None = None,
    params: dict[str, Any] | None = None,
    invalid: str = "",
) -> Measurement:
    """:func:`~workbench.reports.bench.repeated` with this suite's units and directions."""
    return repeated(
        name,
        tool,
        metric,
        samples,
        _UNITS[metric],
        better="lower" if metric in _LOWER_IS_BETTER else "higher",
        note=note,
        target=target,
        params=params,
        invalid=invalid,
    )


def _ratios(ours: list[float] | None, base: list[float] | None) -> list[float]:
    """Per-repeat ours / base of adjacent runs."""
    return [a / b for a, b in zip(ours or [], base or [], strict=False) if b > 0]


# -- redis-benchmark ------------------------------------------------------------------------


def parse_redis_benchmark_csv(text: str) -> dict[str, dict[str, float]]:
    """``redis-benchmark --csv`` output -> ``{test: {column: value}}`` (``rps``,
    ``p50_latency_ms``, ...)."""
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if not rows or rows[0][:2] != ["test", "rps"]:
        raise InputError(f"redis-benchmark output is not its CSV: {text[:200]!r}")
    header = rows[0]
    return {
        row[0]: {col: float(v) for col, v in zip(header[1:], row[1:], strict=True)}
        for row in rows[1:]
        if row[0] != "test"  # a repeated header
    }


def _redis_benchmark(
    s: _Setup, *, clients: int, requests: int, pipeline: int = 1
) -> dict[str, dict[str, float]]:
    cmd = ["redis-benchmark", "-h", str(s.host), "-p", str(s.port), "--dbnum", str(BENCH_DB)]
    cmd += ["-c", str(clients), "-n", str(requests), "-t", "get,set", "-d", str(s.data_size)]
    cmd += ["--csv"] + (["-P", str(pipeline)] if pipeline > 1 else [])
    if s.password:
        cmd += ["-a", s.password, "--no-auth-warning"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    out = parse_redis_benchmark_csv(res.stdout)
    if res.returncode != 0 or not {"GET", "SET"} <= set(out):
        raise RuntimeError(f"redis-benchmark failed: {res.stdout[-300:]} {res.stderr[-300:]}")
    return out


def _no_rb(s: _Setup) -> str:
    """Why redis-benchmark cannot run here ('' when it can)."""
    if shutil.which("redis-benchmark") is None:
        return "redis-benchmark not on PATH (apt-get install redis-tools)"
    if s.host is None:
        return "redis-benchmark is given host and port; this URL has neither"
    return ""


# -- timing and checks ----------------------------------------------------------------------


def _rate(fn: Callable[[], Any], calls: int, per_call: int = 1) -> float:
    """Items per second over ``calls`` calls of ``fn``, each handling ``per_call`` items."""
    return per_call / time_call(fn, repeat=1, number=calls)[0]


def _rates(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """Calls per second of wall time and per second of this thread's CPU time. On a loaded
    machine the first is the second times the share of a core this thread got."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        fn()
    return calls / (time.perf_counter() - wall), calls / max(time.thread_time() - cpu, 1e-9)


async def _arate(fn: Callable[[], Awaitable[Any]], calls: int, per_call: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        await fn()
    return per_call * calls / (time.perf_counter() - t0)


def _rotations(jobs: Sequence[Callable[[], None]], repeats: int) -> None:
    """``repeats`` rounds of every job, each round's order rotated by one, so that no tool
    always runs first (or right after the heaviest one)."""
    for r in range(repeats):
        k = r % len(jobs)
        for job in [*jobs[k:], *jobs[:k]]:
            job()


def _redis_calls(namespace: str, op: str = "get") -> float:
    """How many Redis calls of ``op`` the caches of ``namespace`` have timed so far."""
    from workbench import metrics

    value = metrics.REGISTRY.get_sample_value(
        "workbench_cache_redis_latency_seconds_count", {"namespace": namespace, "op": op}
    )
    return value or 0.0


def _fallbacks(cache: Any) -> str:
    """Why ``cache``'s Redis figures are void ('' when every call reached Redis)."""
    n = int(getattr(getattr(cache, "counters", None), "fallback", 0))
    return f"{n} calls fell back to the memory tier: not a Redis figure" if n else ""


def _recorder() -> tuple[Samples, Callable[[str, float], None]]:
    r: Samples = {}
    return r, lambda key, value: r.setdefault(key, []).append(value)


class _Rows:
    """The measurements of one part, built from its samples ``r``: ``notes``, ``void`` (why a
    tool's figures are missing) and ``params`` are per tool, with ``"*"`` for the others."""

    def __init__(
        self,
        r: Samples,
        params: dict[str, Any],
        notes: dict[str, str] | None = None,
        void: dict[str, str] | None = None,
    ) -> None:
        self.r, self.params, self.notes, self.void = r, {"*": params}, notes or {}, void or {}
        self.out: list[Measurement] = []

    def add(self, name: str, tool: str, metric: str, key: str, **kw: Any) -> None:
        """One row of ``r[key]``; ``kw``: ``note``, ``target``, ``p`` (its params)."""
        self._add(name, tool, metric, self.r.get(key), **kw)

    def ratio(self, name: str, ours: str, base: str, base_tool: str, **kw: Any) -> None:
        """Per-repeat ``r[ours] / r[base]`` of adjacent runs, a fraction of ``base_tool``'s."""
        kw.setdefault("note", f"per-repeat ours / {base_tool} over adjacent runs")
        samples = _ratios(self.r.get(ours), self.r.get(base))
        self._add(name, "workbench", "fraction_of_baseline", samples, also=base_tool, **kw)

    def _add(
        self,
        name: str,
        tool: str,
        metric: str,
        samples: list[float] | None,
        *,
        note: str | None = None,
        target: float | None = None,
        p: dict[str, Any] | None = None,
        also: str = "",
    ) -> None:
        note = self.notes.get(tool, "") if note is None else note
        void = self.void.get(tool, "") or self.void.get(also, "")
        params = p if p is not None else self.params.get(tool, self.params["*"])
        self.out.append(
            _m(name, tool, metric, samples, note, target=target, params=params, invalid=void)
        )


# -- parts ----------------------------------------------------------------------------------


def _roundtrip(s: _Setup) -> list[Measurement]:
    from workbench.cache import Cache
    from workbench.redis_adapter import RedisAdapter

    cache = Cache(s.url, namespace="rt", prefix=s.prefix)
    raw = RedisAdapter(s.url).client
    data, raw_key = cache.core.encode(VALUE), s.prefix + "raw:k"
    cache.set("k", VALUE)
    raw.set(raw_key, data)
    if cache.get("k") != VALUE or raw.get(raw_key) != data:
        raise RuntimeError("a get did not return the value it is timed reading")
    calls, rb_n, wide_n = s.n(20_000, 500), s.n(30_000, 1000), s.n(100_000, 5000)
    no_rb = _no_rb(s)
    r, add = _recorder()

    def rb() -> None:
        if not no_rb:
            out = _redis_benchmark(s, clients=1, requests=rb_n)
            for op in ("GET", "SET"):
                add(f"rb {op}", out[op]["rps"])
            add("rb p50", out["GET"]["p50_latency_ms"] * 1000)
            add("rb p99", out["GET"]["p99_latency_ms"] * 1000)

    def rb_wide() -> None:
        if not no_rb:
            out = _redis_benchmark(s, clients=50, requests=wide_n)
            for op in ("GET", "SET"):
                add(f"rb50 {op}", out[op]["rps"])

    def ours() -> None:
        before = _redis_calls("rt")
        add("ours GET", _rate(functools.partial(cache.get, "k"), calls))
        add("ours SET", _rate(functools.partial(cache.set, "k", VALUE), calls))
        if _redis_calls("rt") - before != calls:
            raise RuntimeError("Cache.get did not make exactly one Redis call per get")

    def redis_py() -> None:
        add("raw GET", _rate(functools.partial(raw.get, raw_key), calls))
        add("raw SET", _rate(functools.partial(raw.set, raw_key, data), calls))

    ours()  # warm up connections and code paths
    redis_py()
    r.clear()
    _rotations([rb, ours, redis_py], s.repeats)
    _rotations([rb_wide], min(3, s.repeats))
    bad = _fallbacks(cache)
    cache.close()
    p = {"connections": 1, "value_bytes": s.data_size, "calls_per_repeat": calls}
    rb_p = {"connections": 1, "value_bytes": s.data_size, "requests_per_repeat": rb_n}
    notes = {
        "redis-benchmark": f"-c 1 -d {s.data_size}, no pipelining",
        "redis-py": "the adapter's redis-py client (hiredis) alone: bytes in, bytes out",
        "workbench": "msgpack, namespaced key, breaker, metrics",
    }
    rows = _Rows(r, p, notes, {"workbench": bad, "redis-benchmark": no_rb})
    rows.params["redis-benchmark"] = rb_p
    for op in ("GET", "SET"):
        name, fn = f"{op}, 1 connection", f"Cache.{op.lower()}"
        rows.add(name, "redis-benchmark", "ops_per_s", f"rb {op}")
        rows.add(name, "redis-py", "ops_per_s", f"raw {op}")
        rows.add(name, "workbench", "ops_per_s", f"ours {op}", note=f"{fn}: {notes['workbench']}")
        rows.ratio(
            f"{fn} / redis-benchmark -c 1", f"ours {op}", f"rb {op}", "redis-benchmark", target=0.5
        )
        rows.ratio(f"{fn} / redis-py", f"ours {op}", f"raw {op}", "redis-py")
        rows.add(
            f"{op}, 50 connections",
            "redis-benchmark",
            "ops_per_s",
            f"rb50 {op}",
            note=f"-c 50 -d {s.data_size}, for context",
            p=dict(rb_p, connections=50, requests_per_repeat=wide_n),
        )
    for q in ("p50", "p99"):
        rows.add(
            f"single GET {q}",
            "redis-benchmark",
            "latency_us",
            f"rb {q}",
            note="its own histogram, -c 1",
        )
    return rows.out


def _batch(s: _Setup) -> list[Measurement]:
    from workbench.cache import Cache
    from workbench.redis_adapter import RedisAdapter

    cache = Cache(s.url, namespace="batch", prefix=s.prefix)
    raw = RedisAdapter(s.url).client
    keys = [f"k{i}" for i in range(BATCH)]
    mapping = dict.fromkeys(keys, VALUE)
    full_keys = [cache.core.key(k) for k in keys]
    cache.set_many(mapping)
    calls, rb_n = s.n(1000, 20), s.n(300_000, 5000)
    no_rb = _no_rb(s)
    r, add = _recorder()

    def rb() -> None:
        if not no_rb:
            out = _redis_benchmark(s, clients=1, requests=rb_n, pipeline=16)
            add("rb GET", out["GET"]["rps"])
            add("rb SET", out["SET"]["rps"])

    def ours() -> None:
        if len(cache.get_many(keys)) != BATCH:
            raise RuntimeError(f"get_many did not find all {BATCH} keys")
        add("get_many", _rate(functools.partial(cache.get_many, keys), calls, BATCH))
        add("set_many", _rate(functools.partial(cache.set_many, mapping), calls, BATCH))

    def redis_py() -> None:
        add("mget", _rate(functools.partial(raw.mget, full_keys), calls, BATCH))

    ours()
    redis_py()
    r.clear()
    _rotations([rb, ours, redis_py], s.repeats)
    bad = _fallbacks(cache)
    cache.close()
    p = {"connections": 1, "keys_per_call": BATCH, "calls_per_repeat": calls}
    vs_set = _ratios(r.get("set_many"), r.get("rb SET"))
    notes = {
        "redis-benchmark": f"-c 1 -P 16 -d {s.data_size}",
        "redis-py": "the adapter's redis-py client alone, no decoding",
    }
    rows = _Rows(r, p, notes, {"workbench": bad, "redis-benchmark": no_rb})
    rows.params["redis-benchmark"] = {"connections": 1, "pipeline": 16, "requests_per_repeat": rb_n}
    for op in ("GET", "SET"):
        rows.add(
            f"{op}, 1 connection, 16-command pipelines", "redis-benchmark", "keys_per_s", f"rb {op}"
        )
    rows.add(f"MGET of {BATCH} keys, 1 connection", "redis-py", "keys_per_s", "mget")
    rows.add(
        f"get_many of {BATCH} keys, 1 connection",
        "workbench",
        "keys_per_s",
        "get_many",
        note="one MGET, values decoded",
    )
    rows.add(
        f"set_many of {BATCH} keys, 1 connection",
        "workbench",
        "keys_per_s",
        "set_many",
        note="every value encoded and checked, then one pipelined MSET",
    )
    # the target is against GET/s for both; set_many against SET/s is kept beside it
    set_p = dict(p, set_many_over_pipelined_set=statistics.median(vs_set) if vs_set else None)
    for op, op_p in (("get_many", p), ("set_many", set_p)):
        rows.ratio(
            f"{op} / redis-benchmark -c 1 -P 16 GET",
            op,
            "rb GET",
            "redis-benchmark",
            target=0.5,
            p=op_p,
        )
    return rows.out


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    """p50, p99, p99.9 in microseconds (nearest rank)."""
    xs = sorted(samples_ns)
    n = len(xs)
    return {q: xs[min(n - 1, int(f * n))] / 1000.0 for q, f in _QUANTILES.items()}


_QUANTILES = {"p50": 0.50, "p99": 0.99, "p99.9": 0.999}


def _latency(s: _Setup) -> list[Measurement]:
    from workbench.cache import Cache
    from workbench.redis_adapter import RedisAdapter

    cache = Cache(s.url, namespace="lat", prefix=s.prefix)
    raw = RedisAdapter(s.url).client
    cache.set("k", VALUE)
    n = s.n(20_000, 500)
    r, add = _recorder()
    clock = time.perf_counter_ns

    def one_by_one(tool: str, get: Callable[[], Any]) -> None:
        samples = [0] * n
        for i in range(n):
            t0 = clock()
            get()
            samples[i] = clock() - t0
        for q, v in _percentiles(samples).items():
            add(f"{tool} {q}", v)

    jobs = [
        functools.partial(one_by_one, "workbench", functools.partial(cache.get, "k")),
        functools.partial(one_by_one, "redis-py", functools.partial(raw.get, cache.core.key("k"))),
    ]
    for job in jobs:
        job()
    r.clear()
    _rotations(jobs, s.repeats)
    bad = _fallbacks(cache)
    cache.close()
    p = {"connections": 1, "gets_per_repeat": n, "value_bytes": s.data_size}
    note = "loopback TCP, each get timed alone; median over repeats of each repeat's percentile"
    rows = _Rows(r, p, void={"workbench": bad})
    for tool in ("workbench", "redis-py"):
        for q in _QUANTILES:
            target = 1000.0 if (tool, q) == ("workbench", "p99") else None
            rows.add(f"single GET {q}", tool, "latency_us", f"{tool} {q}", note=note, target=target)
    return rows.out


def _wait_until_local(cache: Any, key: str, namespace: str, timeout_s: float = 10.0) -> None:
    """Read ``key`` until a read makes no Redis call (the listener has subscribed and the
    read-through copy is local), within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cache.get(key)
        before = _redis_calls(namespace)
        cache.get(key)
        if _redis_calls(namespace) == before:
            return
    raise RuntimeError(f"two-tier cache: {key!r} never became local within {timeout_s} s")


def _memory(s: _Setup) -> list[Measurement]:
    from workbench.cache import Cache

    mem = Cache(None, namespace="mem")
    mem.set("k", VALUE)
    tiered = Cache(s.url, namespace="tt", prefix=s.prefix, two_tier=True)
    tiered.set("k", VALUE)
    _wait_until_local(tiered, "k", "tt")
    if mem.get("k") != VALUE or tiered.get("k") != VALUE:
        raise RuntimeError("a memory or two-tier get did not return the value it is timed reading")
    calls = s.n(500_000, 20_000)
    r, add = _recorder()
    redone = [0]

    def memory() -> None:
        wall, cpu = _rates(functools.partial(mem.get, "k"), calls)
        add("memory", wall)
        add("memory cpu", cpu)

    def two_tier() -> None:
        for _ in range(3):
            before = _redis_calls("tt")
            wall, cpu = _rates(functools.partial(tiered.get, "k"), calls)
            if _redis_calls("tt") == before:
                add("two-tier", wall)
                add("two-tier cpu", cpu)
                return
            redone[0] += 1  # an invalidation emptied the local tier mid-run: take it again
            _wait_until_local(tiered, "k", "tt")
        raise RuntimeError("the two-tier cache kept reading from Redis; its hit path is unmeasured")

    memory()
    two_tier()
    r.clear()
    redone[0] = 0
    _rotations([memory, two_tier], s.repeats)
    bad = _fallbacks(tiered)
    tiered.close()
    r["slowdown"] = [m / t for m, t in zip(r["memory"], r["two-tier"], strict=True)]
    p = {"threads": 1, "calls_per_repeat": calls, "value_bytes": s.data_size}
    rows = _Rows(r, p)
    rows.add(
        "get, memory backend",
        "workbench",
        "gets_per_s",
        "memory",
        target=1_000_000.0,
        note="Cache(url=None).get, sync, one thread, hit",
    )
    rows.void = {"workbench": bad}
    rows.add(
        "get, two-tier hit",
        "workbench",
        "gets_per_s",
        "two-tier",
        note="two_tier=True, key already local; no Redis call in any kept repeat",
        p=dict(p, repeats_taken_again=redone[0]),
    )
    cpu_note = "the same runs per second of this thread's CPU time: what a core it had to "
    cpu_note += "itself would do (the machine is shared; the wall-clock figure carries the target)"
    rows.add("get, memory backend", "workbench", "gets_per_cpu_s", "memory cpu", note=cpu_note)
    rows.add("get, two-tier hit", "workbench", "gets_per_cpu_s", "two-tier cpu", note=cpu_note)
    rows.add(
        "two-tier hit time / memory backend get time",
        "workbench",
        "slowdown_vs_memory",
        "slowdown",
        note="per-repeat ratio of adjacent runs",
        target=2.0,
    )
    return rows.out


# -- asyncio: the peer library --------------------------------------------------------------


async def _aclose(obj: Any) -> None:
    fn = getattr(obj, "aclose", None) or getattr(obj, "close", None)
    if fn is not None:
        with warnings.catch_warnings():
            # cashews 7 closes its redis.asyncio client with the deprecated close()
            warnings.simplefilter("ignore", DeprecationWarning)
            res = fn()
            if inspect.isawaitable(res):
                await res


def _async_cache_class() -> Any:
    """``workbench.cache.aio.AsyncCache``, or None where that module does not exist."""
    if importlib.util.find_spec("workbench.cache.aio") is None:
        return None
    from workbench.cache import aio

    return getattr(aio, "AsyncCache", None)


def _cashews_version() -> str | None:
    try:
        return importlib.metadata.version("cashews")
    except importlib.metadata.PackageNotFoundError:
        return None


#: asyncio workloads: key -> (measurement name, metric)
_ASYNC_WORK = {
    "GET": ("GET, 1 connection, asyncio", "ops_per_s"),
    "SET": ("SET, 1 connection, asyncio", "ops_per_s"),
    "get_many": (f"get_many of {BATCH} keys, 1 connection, asyncio", "keys_per_s"),
    "set_many": (f"set_many of {BATCH} keys, 1 connection, asyncio", "keys_per_s"),
    "mem get": ("get, memory backend, asyncio", "gets_per_s"),
    "mem set": ("set, memory backend, asyncio", "sets_per_s"),
}
_Job = tuple[Callable[[], Awaitable[Any]], int]  # the call, items per call


def _check_result(tool: str, work: str, result: Any) -> None:
    """Every timed read must return the value (all of them, for ``get_many``)."""
    if work in ("GET", "mem get"):
        values = [result]
    elif work == "get_many":
        values = list(result.values() if isinstance(result, dict) else result)
        if len(values) != BATCH:
            raise RuntimeError(f"{tool} {work} returned {len(values)} values, not {BATCH}")
    else:
        return
    if any(v != VALUE for v in values):
        raise RuntimeError(f"{tool} {work} did not return the value it is timed reading")


def _asyncio(s: _Setup) -> list[Measurement]:
    """cashews (the peer library), raw redis.asyncio and AsyncCache on the same workloads."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_asyncio_main(s))
    finally:
        loop.close()


async def _asyncio_main(s: _Setup) -> list[Measurement]:
    from workbench.redis_adapter import RedisAdapter

    version = _cashews_version()
    async_cache = _async_cache_class()
    calls, many, mem_calls = s.n(5000, 300), s.n(500, 10), s.n(100_000, 3000)
    counts = {"GET": calls, "SET": calls, "get_many": many, "set_many": many}
    counts |= {"mem get": mem_calls, "mem set": mem_calls}
    keys = [f"k{i}" for i in range(BATCH)]
    mapping = dict.fromkeys(keys, VALUE)
    raw = RedisAdapter(s.url).async_client()
    raw_key = s.prefix + "araw:k"
    await raw.set(raw_key, VALUE)
    jobs: dict[tuple[str, str], _Job] = {
        ("redis-py", "GET"): (functools.partial(raw.get, raw_key), 1),
        ("redis-py", "SET"): (functools.partial(raw.set, raw_key, VALUE), 1),
    }
    closers: list[Any] = [raw]
    ours: Any = None
    try:
        if version:
            from cashews import Cache as CashewsCache

            remote, local = CashewsCache(), CashewsCache()
            remote.setup(s.url)
            local.setup("mem://")
            closers += [remote, local]
            ck = s.prefix + "cashews:k"
            cmap = {f"{s.prefix}cashews:{k}": VALUE for k in keys}
            await remote.set(ck, VALUE)
            await remote.set_many(cmap)
            await local.set(ck, VALUE)
            jobs |= {
                ("cashews", "GET"): (functools.partial(remote.get, ck), 1),
                ("cashews", "SET"): (functools.partial(remote.set, ck, VALUE), 1),
                ("cashews", "get_many"): (functools.partial(remote.get_many, *cmap), BATCH),
                ("cashews", "set_many"): (functools.partial(remote.set_many, cmap), BATCH),
                ("cashews", "mem get"): (functools.partial(local.get, ck), 1),
                ("cashews", "mem set"): (functools.partial(local.set, ck, VALUE), 1),
            }
        if async_cache is not None:
            ours = async_cache(s.url, namespace="aio", prefix=s.prefix)
            ours_mem = async_cache(None, namespace="aiomem")
            closers += [ours, ours_mem]
            await ours.set("k", VALUE)
            await ours.set_many(mapping)
            await ours_mem.set("k", VALUE)
            jobs |= {
                ("workbench", "GET"): (functools.partial(ours.get, "k"), 1),
                ("workbench", "SET"): (functools.partial(ours.set, "k", VALUE), 1),
                ("workbench", "get_many"): (functools.partial(ours.get_many, keys), BATCH),
                ("workbench", "set_many"): (functools.partial(ours.set_many, mapping), BATCH),
                ("workbench", "mem get"): (functools.partial(ours_mem.get, "k"), 1),
                ("workbench", "mem set"): (functools.partial(ours_mem.set, "k", VALUE), 1),
            }
        r: Samples = {}
        order = list(jobs)
        for tool, work in order:  # check what each call returns, then warm up
            fn, per = jobs[tool, work]
            _check_result(tool, work, await fn())
            await _arate(fn, max(1, counts[work] // 10), per)
        for rep in range(s.repeats):
            k = rep % len(order)
            for tool, work in [*order[k:], *order[:k]]:
                fn, per = jobs[tool, work]
                r.setdefault(f"{tool} {work}", []).append(await _arate(fn, counts[work], per))
    finally:
        for obj in closers:
            await _aclose(obj)
    missing = {
        "redis-py": "",
        "cashews": "" if version else "cashews not installed (pip install 'cashews[redis]')",
        "workbench": "" if async_cache else "workbench.cache.aio.AsyncCache not present",
    }
    bad = _fallbacks(ours)
    notes = {
        "redis-py": "redis.asyncio client alone: bytes in, bytes out",
        "cashews": f"cashews {version}, its defaults (its serializer; get_many decodes each "
        "value in its own task)",
        "workbench": "AsyncCache: msgpack, namespaced key, breaker, metrics",
    }
    rows = _Rows(r, {}, notes, dict(missing))
    for work, (name, metric) in _ASYNC_WORK.items():
        on_redis = not work.startswith("mem")
        rows.params["*"] = {
            "connections": 1,
            "event_loop": "asyncio",
            "calls_per_repeat": counts[work],
        }
        rows.void["workbench"] = missing["workbench"] or (bad if on_redis else "")
        for tool in (["redis-py"] if work in ("GET", "SET") else []) + ["cashews", "workbench"]:
            rows.add(name, tool, metric, f"{tool} {work}")
        if not (missing["cashews"] or missing["workbench"]):
            r[f"vs {work}"] = _ratios(r.get(f"workbench {work}"), r.get(f"cashews {work}"))
            rows.add(
                f"{name}: AsyncCache / cashews",
                "workbench",
                "speedup_vs_peer",
                f"vs {work}",
                note="per-repeat ratio of adjacent runs",
            )
    return rows.out


# -- the suite ------------------------------------------------------------------------------


def bench_url(url: str, db: int = BENCH_DB) -> str:
    """``url`` with its database replaced by ``db`` (path for redis://, query for unix://)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("db="))
        query = "&".join(filter(None, [query, f"db={db}"]))
        return f"unix://{parts.netloc}{parts.path}?{query}"  # urlunsplit would drop the //
    return urlunsplit(parts._replace(path=f"/{db}"))


def _setup(ctx: BenchContext) -> _Setup:
    from workbench.cache.base import CacheConfig, CacheCore
    from workbench.config import load_settings
    from workbench.redis_adapter import RedisAdapter

    url = bench_url(load_settings().redis_url)
    RedisAdapter(url).ping()  # an unreachable Redis fails the suite here, not silently later
    parts = urlsplit(url)
    tcp = parts.scheme == "redis"
    return _Setup(
        url=url,
        host=(parts.hostname or "127.0.0.1") if tcp else None,
        port=(parts.port or 6379) if tcp else None,
        password=parts.password,
        prefix=f"wbbench-{uuid.uuid4().hex[:10]}:",
        data_size=len(CacheCore(CacheConfig()).encode(VALUE)),
        repeats=2 if ctx.quick else 7,
        quick=ctx.quick,
    )


def _cleanup(s: _Setup) -> None:
    from workbench.redis_adapter import RedisAdapter

    RedisAdapter(s.url, prefix=s.prefix).delete_prefixed()
    if not _no_rb(s):
        RedisAdapter(s.url).delete(_RB_KEY)


#: The suite's parts, in the order they run.
PARTS: dict[str, Callable[[_Setup], list[Measurement]]] = {
    "roundtrip": _roundtrip,
    "batch": _batch,
    "latency": _latency,
    "memory": _memory,
    "asyncio": _asyncio,
}


def run(ctx: BenchContext) -> list[Measurement]:
    unknown = set(ctx.parts) - set(PARTS)
    if unknown:
        raise InputError(f"--part: unknown {sorted(unknown)}; the cache suite has {list(PARTS)}")
    s = _setup(ctx)
    out: list[Measurement] = []
    try:
        chosen = [p for p in PARTS if not ctx.parts or p in ctx.parts]
        for name in ctx.progress(chosen, desc="cache"):
            measured = PARTS[name](s)
            load = [round(x, 2) for x in os.getloadavg()]
            out += [
                dataclasses.replace(m, params={**m.params, "part": name, "loadavg_after": load})
                for m in measured
            ]
    finally:
        _cleanup(s)
    return out
