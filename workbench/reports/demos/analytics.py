"""Demo part: a week of execution records through the embedded analytics store.

A synthetic execution log with known ground truth (five task types, eight parameter sets
each, three models) is ingested into the embedded store (DuckDB, in a temporary directory),
replayed once to show that ingestion is idempotent, and summarised: effectiveness per
parameter set with credible intervals, the best set per task recovered against the truth,
and the ingest rate this machine reached.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from workbench.reports.demo import DemoContext, DemoSection

__all__ = ["run"]


def run(ctx: DemoContext) -> DemoSection:
    import plotly.graph_objects as go

    from workbench.analytics import AnalyticsStore, generate_log, success_interval

    n = 40_000 if ctx.smoke else 400_000
    frame, truth = generate_log(n, seed=ctx.seed)
    with tempfile.TemporaryDirectory(prefix="wb-demo-analytics-") as tmp:
        store = AnalyticsStore(f"duckdb:///{Path(tmp) / 'analytics.duckdb'}")
        try:
            start = time.perf_counter()
            report = store.ingest(frame)
            seconds = time.perf_counter() - start
            replay = store.ingest(frame)
            count = store.count()
            eff = store.effectiveness(by=("task_type", "parameter_hash"))
        finally:
            store.close()
    if report.rejected or count != n or replay.accepted or replay.duplicates != n:
        raise AssertionError(
            f"analytics demo broke an invariant: {report.to_dict()} / {replay.to_dict()}"
        )
    lo, hi = success_interval(eff["successes"].to_numpy(), eff["executions"].to_numpy())
    eff = eff.assign(success_lo=lo, success_hi=hi)
    recovered: dict[str, bool] = {}
    for task, rows in eff.groupby("task_type"):
        best = rows.sort_values("score", ascending=False).iloc[0]["parameter_hash"]
        recovered[str(task)] = best == truth.best_parameter_set[str(task)]
    figures: list[Any] = []
    fig = go.Figure()
    for task, rows in eff.groupby("task_type"):
        rows = rows.sort_values("score")
        fig.add_scatter(
            x=rows["success_rate"],
            y=[f"{task} {h[:8]}" for h in rows["parameter_hash"]],
            error_x={
                "type": "data",
                "symmetric": False,
                "array": rows["success_hi"] - rows["success_rate"],
                "arrayminus": rows["success_rate"] - rows["success_lo"],
            },
            mode="markers",
            name=str(task),
        )
    fig.update_layout(
        title="Success rate per parameter set with 95% credible intervals",
        xaxis_title="success rate",
        template="plotly_white",
        height=620,
    )
    figures.append(fig)
    table = (
        eff.sort_values(["task_type", "score"], ascending=[True, False])
        .groupby("task_type")
        .head(1)[["task_type", "parameter_hash", "executions", "success_rate", "score"]]
        .assign(parameter_hash=lambda d: d["parameter_hash"].str[:12])
        .round(4)
    )
    lines = [
        f"{n:,} execution records ingested into the embedded store in {seconds:.2f} s "
        f"({n / seconds:,.0f} records/s, validated), none rejected; replaying them added "
        f"nothing ({replay.duplicates:,} duplicates recognised by execution id).",
        f"The best parameter set by the platform's weighted score matches the ground truth for "
        f"{sum(recovered.values())} of {len(recovered)} task types"
        + (
            ""
            if all(recovered.values())
            else f" (missed: {sorted(k for k, v in recovered.items() if not v)})"
        )
        + ".",
    ]
    if not all(recovered.values()) and not ctx.smoke:
        raise AssertionError(f"analytics demo: best sets not recovered: {recovered}")
    return DemoSection(
        title="Parameter analytics: a week of execution records",
        lines=lines,
        figures=figures,
        table=table,
    )
