"""The environment suite: the costs every subsystem builds on.

- the overhead of calling a compiled Numba kernel from Python (the AB-MCTS step pays it);
- Redis round-trip latency and pipelined write throughput through the adapter;
- the cost of encoding a typical response envelope (the HTTP service pays it per request).
"""

from __future__ import annotations

import statistics
import time
import uuid

import numpy as np

from workbench.errors import BackendUnavailable
from workbench.reports.bench import BenchContext, Measurement, time_call

__all__ = ["run"]


def _numba_call_overhead(ctx: BenchContext) -> Measurement:
    import numba

    @numba.njit(cache=False)
    def add_one(a: np.ndarray, i: int) -> float:
        a[i] += 1.0
        return a[i]

    buf = np.zeros(4)
    add_one(buf, 0)  # compile
    n = 20_000 if ctx.quick else 200_000
    per_call = min(time_call(lambda: [add_one(buf, 1) for _ in range(n)], repeat=3)) / n
    return Measurement(
        "numba kernel call from Python",
        "workbench",
        "call_overhead_us",
        per_call * 1e6,
        "us",
        better="lower",
        params={"calls": n},
        note="one njit call with an array and a scalar argument, loop overhead included",
    )


def _redis(ctx: BenchContext) -> list[Measurement]:
    from workbench.config import load_settings
    from workbench.redis_adapter import RedisAdapter

    settings = load_settings()
    adapter = RedisAdapter(settings.redis_url, prefix=f"wbbench:{uuid.uuid4().hex[:8]}:")
    try:
        adapter.ping()
    except BackendUnavailable as exc:
        nan = float("nan")
        return [
            Measurement(
                "Redis PING",
                "workbench",
                "p50_latency_us",
                nan,
                "us",
                "lower",
                note=f"skipped: {exc.message}",
            ),
        ]
    pings = [adapter.ping() for _ in range(200 if ctx.quick else 2000)]
    n = 2_000 if ctx.quick else 20_000
    payload = b"x" * 100
    start = time.perf_counter()
    with adapter.errors():
        pipe = adapter.client.pipeline(transaction=False)
        for i in range(n):
            pipe.set(adapter.key("k", i), payload, ex=60)
            if i % 500 == 499:
                pipe.execute()
        pipe.execute()
    rate = n / (time.perf_counter() - start)
    adapter.delete_prefixed()
    return [
        Measurement(
            "Redis PING",
            "workbench",
            "p50_latency_us",
            statistics.median(pings) * 1e6,
            "us",
            "lower",
            params={"url": adapter._safe_url()},
        ),
        Measurement(
            "Redis pipelined SET (100 B, batches of 500)",
            "workbench",
            "ops_per_s",
            rate,
            "ops/s",
            "higher",
            params={"ops": n},
        ),
    ]


def _envelope(ctx: BenchContext) -> Measurement:
    from workbench.api.envelope import dumps, success_body

    data = {
        "bestAction": {"agentName": "planner", "confidence": 0.83},
        "alternatives": [{"agentName": f"a{i}", "score": i / 10} for i in range(5)],
        "metrics": {"iterations": 1000, "searchTimeMs": 4.2},
    }
    n = 5_000 if ctx.quick else 50_000
    per = min(time_call(lambda: [dumps(success_body(data, "rid")) for _ in range(n)], repeat=3)) / n
    return Measurement(
        "encode a success envelope (~400 B)", "workbench", "encode_us", per * 1e6, "us", "lower"
    )


def run(ctx: BenchContext) -> list[Measurement]:
    out: list[Measurement] = []
    for step in ctx.progress(["numba", "redis", "envelope"], desc="env"):
        if step == "numba":
            out.append(_numba_call_overhead(ctx))
        elif step == "redis":
            out.extend(_redis(ctx))
        else:
            out.append(_envelope(ctx))
    return out
