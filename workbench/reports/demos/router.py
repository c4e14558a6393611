"""Demo part: the LLM router in front of three emulated backends, one of which fails mid-run.

1. Strategies on heterogeneous backends: a fast one, a slow one and a flaky one (errors on a
   fifth of its requests). The same closed-loop load goes through the router's real HTTP
   proxy under ``round-robin`` and ``p2c-ewma``: latency percentiles, the errors that reached
   the client (retries hide the flaky backend's), and each backend's share of the traffic.
2. An outage: under ``p2c-ewma``, of two fast backends and a slow one, one fast backend
   fails every request for the middle third of the run, then recovers. The timeline shows
   each backend's share of the traffic per slice of time: the failing one leaves rotation at
   once and comes back once its cooldowns have passed.

Everything runs on loopback in this process (the backends and the router serve from
background threads), driven with ``httpx`` as a client program would.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from typing import Any

from workbench.reports.demo import DemoContext, DemoSection

__all__ = ["outage", "run", "strategies"]

_BACKENDS = {
    "fast": {"latency": "lognormal", "latency_ms": 4.0, "latency_sigma": 0.3},
    "slow": {"latency": "lognormal", "latency_ms": 40.0, "latency_sigma": 0.3},
    "flaky": {"latency": "lognormal", "latency_ms": 4.0, "latency_sigma": 0.3, "error_rate": 0.2},
}
_BODY = {"model": "demo-model", "messages": [{"role": "user", "content": "hello"}]}


async def _load(
    url: str, n: int, concurrency: int, on_sent: Any = None, seconds: float = math.inf
) -> list[tuple[float, float, str, int]]:
    """Up to ``n`` requests at ``concurrency`` for at most ``seconds``: (seconds since the
    start when sent, seconds taken, backend, status), in the order sent."""
    import httpx

    out: list[tuple[float, float, str, int]] = []
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:

        async def worker() -> None:
            for _ in counter:
                t0 = time.perf_counter()
                if t0 - start >= seconds:
                    break
                if on_sent is not None:
                    on_sent(t0 - start)
                try:
                    r = await client.post("/v1/chat/completions", json=_BODY)
                    status, backend = r.status_code, r.headers.get("x-workbench-backend", "")
                except httpx.HTTPError:
                    status, backend = 0, ""
                out.append((t0 - start, time.perf_counter() - t0, backend, status))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    out.sort()
    return out


def _router_config(urls: dict[str, str], strategy: str, cooldown_s: float) -> Any:
    from workbench.router import RouterConfig

    doc = {
        "router": {
            "strategy": strategy,
            "retries": 2,
            "retry_budget": 0.5,
            "deadline_s": 10.0,
            "probe_interval_s": None,
            "breaker": {"window": "count", "size": 20, "min_calls": 5, "open_s": cooldown_s},
        },
        "backends": [{"name": n, "url": u, "models": ["demo-model"]} for n, u in urls.items()],
    }
    return RouterConfig.from_mapping(doc, environ={})


def strategies(smoke: bool, seed: int) -> list[dict[str, Any]]:
    """Latency, client-visible errors and traffic shares per strategy."""
    import numpy as np

    from workbench.router import run_fake_backend, run_router

    n = 400 if smoke else 2000
    rows = []
    for strategy in ("round-robin", "p2c-ewma"):
        fakes = {
            name: run_fake_backend(name=name, models=("demo-model",), seed=seed + i, **knobs)
            for i, (name, knobs) in enumerate(_BACKENDS.items())
        }
        try:
            urls = {name: f.openai_url for name, f in fakes.items()}
            router = run_router(_router_config(urls, strategy, 1.0))
            try:
                results = asyncio.run(_load(router.url, n, 16))
            finally:
                router.stop()
            arrived = {name: f.stats.total for name, f in fakes.items()}
        finally:
            for f in fakes.values():
                f.stop()
        seconds = np.array([r[1] for r in results]) * 1e3
        served = Counter(r[2] for r in results if r[3] == 200)
        rows.append(
            {
                "strategy": strategy,
                "p50 ms": float(np.percentile(seconds, 50)),
                "p99 ms": float(np.percentile(seconds, 99)),
                "client errors": sum(r[3] != 200 for r in results),
                **{f"{name} share": served[name] / max(1, sum(served.values())) for name in fakes},
                "backend attempts": sum(arrived.values()),
            }
        )
    return rows


def outage(smoke: bool, seed: int) -> dict[str, Any]:
    """The fast backend fails every request for the middle third of the run, then recovers.

    The cooldowns are short so the recovery shows within the run: a breaker open wait (and
    the P2C error penalty) of 0.5 s, an outlier ejection of 0.5 s.
    """
    from workbench.router import OutlierDetector, Router, run_fake_backend, run_router
    from workbench.router.server import SERVICE

    seconds = 4.0 if smoke else 8.0
    start_fail, stop_fail = seconds / 3, 2 * seconds / 3
    knobs = {"fast": _BACKENDS["fast"], "fast-b": _BACKENDS["fast"], "slow": _BACKENDS["slow"]}
    fakes = {
        name: run_fake_backend(name=name, models=("demo-model",), seed=seed + i, **k)
        for i, (name, k) in enumerate(knobs.items())
    }
    states: list[tuple[float, str]] = []
    phase = {"failing": False, "recovered": False, "sampled": -1.0}
    try:
        urls = {name: f.openai_url for name, f in fakes.items()}
        config = _router_config(urls, "p2c-ewma", 0.5)
        router = run_router(config, router=Router(config, outlier=OutlierDetector(base_s=0.5)))
        service = router.app[SERVICE]

        def on_sent(t: float) -> None:
            # Knob changes and state reads are handed to the servers' own event loops, so
            # they land between requests.
            if t >= start_fail and not phase["failing"]:
                fakes["fast"].configure(error_rate=1.0)
                phase["failing"] = True
            elif t >= stop_fail and not phase["recovered"]:
                fakes["fast"].configure(error_rate=0.0)
                phase["recovered"] = True
            if t - phase["sampled"] >= 0.05:
                phase["sampled"] = t
                state = router.call(lambda: service.router.snapshot()["fast"]["state"])
                states.append((t, state))

        try:
            results = asyncio.run(_load(router.url, 10**6, 8, on_sent, seconds))
        finally:
            router.stop()
    finally:
        for f in fakes.values():
            f.stop()
    width = seconds / 40
    timeline = []
    for k in range(40):
        part = [r for r in results if k * width <= r[0] < (k + 1) * width]
        served = Counter(r[2] for r in part if r[3] == 200)
        timeline.append({"t": k * width, **{n: served[n] / max(1, len(part)) for n in fakes}})
    after = [r for r in results if r[0] >= (stop_fail + seconds) / 2]  # after the cooldowns
    return {
        "timeline": timeline,
        "names": list(fakes),
        "states": states,
        "errors": sum(r[3] != 200 for r in results),
        "requests": len(results),
        "marks": (start_fail, stop_fail),
        "fast_share_after": sum(r[2] == "fast" for r in after) / max(1, len(after)),
    }


def run(ctx: DemoContext) -> DemoSection:
    import pandas as pd
    import plotly.graph_objects as go

    table = pd.DataFrame(strategies(ctx.smoke, ctx.seed)).round(3)
    rr, p2c = table.iloc[0], table.iloc[1]
    lines = [
        "Three emulated backends (fast 4 ms, slow 40 ms, flaky 4 ms with 20 % errors) behind "
        f"the router, 16 concurrent clients: round-robin p50 {rr['p50 ms']:.1f} ms, p99 "
        f"{rr['p99 ms']:.1f} ms; p2c-ewma p50 {p2c['p50 ms']:.1f} ms, p99 "
        f"{p2c['p99 ms']:.1f} ms, sending {p2c['slow share']:.0%} of the traffic to the slow "
        f"backend (round-robin {rr['slow share']:.0%}). Retries on other backends kept the "
        f"client-visible errors at {int(rr['client errors'])} and {int(p2c['client errors'])}.",
    ]
    out = outage(ctx.smoke, ctx.seed)
    lo, hi = out["marks"]
    left = [t for t, state in out["states"] if state != "available" and t >= lo]
    back = [t for t, state in out["states"] if state == "available" and t >= hi]
    lines.append(
        f"The fast backend failed every request from {lo:.1f} s to {hi:.1f} s: it left "
        f"rotation {left[0] - lo:.2f} s after the outage began"
        if left
        else f"The fast backend failed every request from {lo:.1f} s to {hi:.1f} s"
    )
    lines[-1] += (
        f", was available again {back[0] - hi:.2f} s after it recovered, and served "
        f"{out['fast_share_after']:.0%} of the requests from one cooldown after recovery on; "
        f"{out['errors']} of {out['requests']} requests reached the client as errors."
        if back
        else f"; {out['errors']} of {out['requests']} requests reached the client as errors."
    )
    tl = pd.DataFrame(out["timeline"])
    shares = go.Figure()
    for name in out["names"]:
        shares.add_scatter(x=tl.t, y=tl[name], name=name, stackgroup="one", mode="lines")
    shares.add_vrect(x0=lo, x1=hi, fillcolor="rgba(220,80,60,0.15)", line_width=0)
    shares.update_layout(
        title="Traffic share per backend under p2c-ewma; the fast backend fails in the band",
        xaxis_title="seconds",
        yaxis_title="share of requests served",
        template="plotly_white",
        height=380,
    )
    return DemoSection(
        title="LLM router: strategies and an outage", lines=lines, figures=[shares], table=table
    )
