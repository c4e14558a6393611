"""Demo part: a stream of vision jobs on a simulated 24 GB GPU.

Jobs for seven vision models (the platform's four plus three larger generation models)
arrive at random with random priorities; the scheduler keeps models resident, evicts the
least recently used idle ones when the 20 GiB budget is short, and ages waiting jobs so none
starves. The figures show VRAM over time (measured and reserved, against the budget) and the
queue waits by priority; the checks are those of the notebook ``03_gpu_resources``.
"""

from __future__ import annotations

from typing import Any

from workbench.reports.demo import DemoContext, DemoSection

__all__ = ["run", "workload_figures"]


def workload_figures(result: Any) -> list[Any]:
    """VRAM over time with load/eviction markers, and queue waits by priority."""
    import plotly.graph_objects as go

    tl = result.timeline
    vram = go.Figure()
    vram.add_scatter(
        x=[s["t"] for s in tl],
        y=[s["used_gib"] for s in tl],
        name="measured (GiB)",
        mode="lines",
        line_shape="hv",
    )
    vram.add_scatter(
        x=[s["t"] for s in tl],
        y=[s["reserved_gib"] for s in tl],
        name="reserved (GiB)",
        mode="lines",
        line_shape="hv",
        line_dash="dot",
    )
    vram.add_hline(y=result.budget_bytes / 1024**3, line_dash="dash", annotation_text="budget")
    for kind, symbol in (("evicted", "x"), ("model_loaded", "triangle-up")):
        evs = [e for e in result.events if e["kind"] == kind]
        vram.add_scatter(
            x=[e["time"] for e in evs],
            y=[0.3] * len(evs),
            mode="markers",
            name=kind,
            marker_symbol=symbol,
            hovertext=[e.get("model") for e in evs],
        )
    vram.update_layout(
        title="VRAM of a simulated 24 GB GPU under a stream of vision jobs",
        xaxis_title="simulated time (s)",
        yaxis_title="GiB",
        template="plotly_white",
        height=420,
    )
    waits = go.Figure()
    for prio in sorted({j["priority"] for j in result.jobs}):
        ws = [j["wait_s"] for j in result.jobs if j["priority"] == prio and j["wait_s"] is not None]
        waits.add_box(y=ws, name=f"priority {prio}", boxpoints="all", jitter=0.4)
    waits.update_layout(
        title="Queue wait by priority (aging bounds the low-priority waits)",
        yaxis_title="wait (simulated s)",
        template="plotly_white",
        height=420,
        showlegend=False,
    )
    return [vram, waits]


def run(ctx: DemoContext) -> DemoSection:
    import pandas as pd

    from workbench.gpu.workload import run_vision_workload

    result = run_vision_workload(60 if ctx.smoke else 200, seed=ctx.seed)
    s = result.summary()
    if s["overcommits"] or s["leftover_reserved_bytes"] or s["completed"] != s["jobs"]:
        raise AssertionError(f"vision workload broke an invariant: {s}")
    jobs = pd.DataFrame(result.jobs)
    table = (
        jobs.groupby("model")
        .agg(jobs=("id", "count"), median_wait_s=("wait_s", "median"), max_wait_s=("wait_s", "max"))
        .round(1)
        .reset_index()
    )
    lines = [
        f"{s['completed']}/{s['jobs']} vision jobs completed in {s['wall_s']:.1f} s of wall time "
        f"(simulated time runs {1 / 0.005:.0f}x faster).",
        f"Peak VRAM reserved {s['peak_reserved_gib']:.1f} GiB of a {s['budget_gib']:.0f} GiB "
        f"budget; over-commits found in {s['ledger_checks']} ledger checks: {s['overcommits']}.",
        f"{s['loads']} model loads, {s['evictions']} evictions of idle models (least recently "
        f"used first), {s['unloads']} unloads in all.",
        f"Queue wait: median {s['wait_s_median']:.1f} s, longest {s['wait_s_max']:.1f} s "
        "(simulated); every job ran, low priorities included.",
        "After the run every reservation was released and the device holds "
        f"{s['leftover_used_bytes']} bytes.",
    ]
    return DemoSection(
        title="Vision jobs on a simulated 24 GB GPU",
        lines=lines,
        figures=workload_figures(result),
        table=table,
    )
