"""Demo part: the cache on a Zipf workload, and a Redis outage it rides through.

1. A cache-aside Zipf workload (independent reference model) through the memory backend,
   sized by its byte budget, at several working-set sizes: the measured hit rate beside
   Che's approximation for LRU.
2. When ``redis-server`` is on PATH: a private Redis under a read/write load is stopped and
   started again mid-run; the timeline shows the mode (Redis or memory fallback), the requests
   served and the errors seen by callers (none), and the check that nothing deleted or
   overwritten during the outage is read stale afterwards.
"""

from __future__ import annotations

import random
import shutil
import time
from typing import Any

from workbench.reports.demo import DemoContext, DemoSection

__all__ = ["outage_timeline", "run", "zipf_hit_rates"]


def zipf_hit_rates(smoke: bool, seed: int) -> list[dict[str, float]]:
    """Measured LRU hit rate of the memory backend and Che's prediction, per capacity."""
    import numpy as np

    from workbench.cache import Cache
    from workbench.cache.memory import ENTRY_OVERHEAD
    from workbench.cache.workload import ZipfWorkload, che_hit_rate, replay_cache_aside

    n_items, n_requests = (2_000, 30_000) if smoke else (5_000, 150_000)
    workload = ZipfWorkload(n_items, 0.8)
    keys = [f"item:{i:06d}" for i in range(n_items)]
    value = "x" * 64
    probe = Cache(url=None)
    entry_bytes = len(probe.core.key(keys[0])) + len(probe.core.encode(value)) + ENTRY_OVERHEAD
    rows = []
    rng = np.random.default_rng(seed)
    for capacity in (50, 200, 800):
        cache = Cache(url=None, namespace="demo", memory_bytes=max(1024, capacity * entry_bytes))
        items, _ = workload.trace(n_requests, rng)
        warm = n_requests // 5  # the first fifth fills the cache; it is not counted
        hits = replay_cache_aside(cache, items, keys, value)
        rows.append(
            {
                "capacity": capacity,
                "measured": float(hits[warm:].mean()),
                "che": che_hit_rate(workload.popularity, capacity),
            }
        )
    return rows


def outage_timeline(smoke: bool, seed: int) -> dict[str, Any]:
    """A load on a private Redis that is stopped and started again; what callers saw."""
    from workbench.cache import Cache
    from workbench.testing import RedisServer

    rng = random.Random(seed)
    phase_s = 0.4 if smoke else 1.0
    timeline: list[dict[str, Any]] = []
    errors = stale = 0
    expected: dict[str, Any] = {}
    with RedisServer(persistent=True) as server:
        cache = Cache(server.url, namespace="demo-outage", timeout_s=0.2, open_s=0.2)
        start = time.monotonic()
        marks = {"stopped": phase_s, "started": 2 * phase_s, "end": 3.5 * phase_s}
        stopped = started = False
        bucket_start, served = start, 0
        while (now := time.monotonic()) - start < marks["end"]:
            if not stopped and now - start >= marks["stopped"]:
                server.stop()
                stopped = True
            if stopped and not started and now - start >= marks["started"]:
                server.start()
                started = True
            key = f"k{rng.randrange(200)}"
            try:
                if rng.random() < 0.5:
                    value = rng.randrange(10**6)
                    cache.set(key, value)
                    expected[key] = value
                else:
                    got = cache.get(key)
                    if got is not None and got != expected.get(key):
                        stale += 1
            except Exception:  # counted: the point of the demo is that there are none
                errors += 1
            served += 1
            if now - bucket_start >= 0.05:
                timeline.append(
                    {
                        "t": round(now - start, 3),
                        "served_per_s": served / (now - bucket_start),
                        "mode": cache.current_mode(),
                    }
                )
                bucket_start, served = now, 0
        lost = sum(cache.get(k) != v for k, v in expected.items())
        stats = cache.stats()
    return {
        "timeline": timeline,
        "errors": errors,
        "stale": stale,
        "lost": lost,
        "marks": marks,
        "outages": stats["outages"],
        "recoveries": stats["recoveries"],
        "replayed": stats["replayed"],
    }


def run(ctx: DemoContext) -> DemoSection:
    import pandas as pd
    import plotly.graph_objects as go

    rows = zipf_hit_rates(ctx.smoke, ctx.seed)
    table = pd.DataFrame(rows).round(4)
    worst = max(abs(r["measured"] - r["che"]) for r in rows)
    lines = [
        "Cache-aside Zipf(0.8) workload through the memory backend (an LRU with a byte "
        "budget): measured hit rate against Che's approximation, largest gap "
        f"{worst:.4f}.",
    ]
    hit = go.Figure()
    hit.add_scatter(x=table.capacity, y=table.measured, name="measured", mode="markers+lines")
    hit.add_scatter(x=table.capacity, y=table.che, name="Che's approximation", line_dash="dot")
    hit.update_layout(
        title="LRU hit rate on a Zipf(0.8) workload",
        xaxis_title="capacity (entries)",
        yaxis_title="hit rate",
        xaxis_type="log",
        template="plotly_white",
        height=380,
    )
    figures = [hit]
    if shutil.which("redis-server") is None:
        lines.append("The outage demo needs redis-server on PATH; it was not run.")
    else:
        out = outage_timeline(ctx.smoke, ctx.seed)
        if out["errors"] or out["stale"] or out["lost"]:
            raise AssertionError(f"cache outage demo broke an invariant: {out}")
        lines.append(
            f"Redis stopped at {out['marks']['stopped']:.1f} s and started at "
            f"{out['marks']['started']:.1f} s under load: {out['errors']} errors reached "
            f"callers, {out['stale']} stale reads, {out['lost']} writes lost; "
            f"{out['replayed']} keys written during the outage were replayed on recovery."
        )
        tl = pd.DataFrame(out["timeline"])
        fig = go.Figure()
        fig.add_scatter(x=tl.t, y=tl.served_per_s, name="requests/s", mode="lines")
        for mode, colour in (("fallback", "rgba(220,80,60,0.25)"),):
            spans = tl[tl["mode"] == mode]
            if len(spans):
                fig.add_vrect(
                    x0=spans.t.min(),
                    x1=spans.t.max(),
                    fillcolor=colour,
                    line_width=0,
                    annotation_text="memory fallback",
                )
        fig.update_layout(
            title="A Redis outage under load: requests served, zero errors",
            xaxis_title="seconds",
            yaxis_title="requests/s",
            template="plotly_white",
            height=380,
        )
        figures.append(fig)
    return DemoSection(
        title="Cache: hit rates and a Redis outage", lines=lines, figures=figures, table=table
    )
