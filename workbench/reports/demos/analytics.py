"""Demo part: a week of execution records through the embedded analytics store.

A synthetic execution log with known ground truth (five task types, eight parameter sets
each, three models) is ingested into the embedded store (DuckDB, in a temporary directory),
replayed once to show that ingestion is idempotent, and summarised: effectiveness per
parameter set with credible intervals, the best set per task recovered against the truth,
the ingest rate this machine reached, and the optimizer learning each task's best set from
the stored records (``to_observations``).
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
            learnt = _optimizer_from_records(store, truth)
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
    agree = sum(row["optimizer_best_is_true_best"] for row in learnt)
    lines.append(
        "The optimizer, told each task's stored records as observations "
        "(`to_observations`: mean score and its standard error per parameter set), "
        f"recommends the true best set for {agree} of {len(learnt)} task types; true scores of "
        "its recommendations: "
        + ", ".join(
            f"{r['task_type']} {r['recommended_true_score']:.3f} (best {r['best_true_score']:.3f})"
            for r in learnt
        )
        + "."
    )
    return DemoSection(
        title="Parameter analytics: a week of execution records",
        lines=lines,
        figures=figures,
        table=table,
    )


def _optimizer_from_records(store: Any, truth: Any) -> list[dict[str, Any]]:
    """Per task type: an optimizer trained on the stored records, its recommendation (by
    posterior mean) and that recommendation's true score."""
    from workbench.analytics import to_observations
    from workbench.optimize.optimizer import Optimizer
    from workbench.optimize.space import Int, Real, SearchSpace

    space = SearchSpace(
        {
            "temperature": Real(0.0, 1.2),
            "max_tokens": Int(64, 8192, log=True),
            "top_p": Real(0.5, 1.0),
        }
    )
    true = truth.effectiveness.set_index(["task_type", "parameter_hash"])["score"]
    rows = []
    for task in truth.task_types:
        optimizer = Optimizer(space, {"score": "maximize"}, seed=0)
        observed = to_observations(store, task, space=space)
        for params, value, sem in observed:
            optimizer.tell(params, {"score": (value, sem)})
        best = optimizer.best().params
        sets = dict(zip(truth.parameter_hashes[task], truth.parameter_sets[task], strict=True))
        chosen = next(
            h
            for h, p in sets.items()
            if {"temperature": p["temperature"], "max_tokens": p["maxTokens"], "top_p": p["topP"]}
            == {k: best[k] for k in ("temperature", "max_tokens", "top_p")}
        )
        rows.append(
            {
                "task_type": task,
                "optimizer_best_is_true_best": chosen == truth.best_parameter_set[task],
                "recommended_true_score": float(true[(task, chosen)]),
                "best_true_score": float(true[(task, truth.best_parameter_set[task])]),
            }
        )
    return rows
