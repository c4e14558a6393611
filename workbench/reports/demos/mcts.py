"""Demo part: agent orchestration that learns which agent to run from outcomes, and a
wider-or-deeper search over a synthetic generate function.

Five agents with hidden success rates; each round the orchestrator searches 300 iterations
over plans (sequences of distinct agents) using its current models, runs the plan step by
step (simulated outcomes drawn from the hidden rates, no sleeping), and learns each step's
outcome. The share of rounds whose plan starts with the best agent rises as the models learn
(order effects between agents are shown in notebooks/01b_orchestration.ipynb). Embedded
defaults only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.reports.demo import DemoContext, DemoSection

__all__ = ["run"]

HIDDEN = {"planner": 0.35, "retriever": 0.55, "synthesizer": 0.85, "coder": 0.5, "reviewer": 0.3}


def run(ctx: DemoContext) -> DemoSection:
    import pandas as pd
    import plotly.graph_objects as go

    from workbench.mcts import AgentOutcome, OrchestrationOptions, Orchestrator, search
    from workbench.mcts.tasks import refinement_task

    rng = np.random.default_rng(ctx.seed)
    latency = {a: 400.0 + 300.0 * i for i, a in enumerate(HIDDEN)}

    def executor(agent: str, context: Any) -> AgentOutcome:
        return AgentOutcome(
            float(rng.random() < HIDDEN[agent]), float(rng.normal(latency[agent], 50.0)), 150.0
        )

    orc = Orchestrator()
    rounds = 60 if ctx.smoke else 200
    picks = []
    for i in range(rounds):
        r = orc.orchestrate(
            {"userRequest": "answer the question", "taskType": "qa"},
            list(HIDDEN),
            executor,
            options=OrchestrationOptions(iterations=300, seed=ctx.seed * 10_000 + i),
        )
        picks.append(r.best_action)
    best = max(HIDDEN, key=HIDDEN.__getitem__)
    window = 20
    share = [
        float(np.mean([p == best for p in picks[max(0, i - window + 1) : i + 1]]))
        for i in range(rounds)
    ]
    ranks = orc.registry.rankings("qa")
    table = pd.DataFrame(
        [
            {
                "agent": row["agent"],
                "hidden success rate": HIDDEN[row["agent"]],
                "learned success rate": round(row["statistics"]["successRate"], 3),
                "runs": row["samples"],
                "expected performance": round(row["performance"], 3),
            }
            for row in ranks
        ]
    )
    fig = go.Figure(go.Scatter(x=list(range(1, rounds + 1)), y=share, mode="lines"))
    fig.update_layout(
        title=f"share of the last {window} orchestrations that chose {best}",
        xaxis_title="orchestration",
        yaxis_title="share",
        yaxis_range=[0, 1.05],
        height=320,
    )

    res = search({"model": refinement_task(0.75, seed=ctx.seed)}, iterations=200, seed=ctx.seed)
    timing = orc.statistics().average_search_time_ms
    lines = [
        f"{rounds} orchestrations over {len(HIDDEN)} agents (300 search iterations each, "
        f"{timing:.1f} ms on average including execution and learning).",
        f"The best agent ({best}, success {HIDDEN[best]:.0%}) was chosen in "
        f"{share[-1]:.0%} of the last {window} rounds, against {share[window - 1]:.0%} "
        f"in the first {window}.",
        f"Learned ranking: {', '.join(r['agent'] for r in ranks)}.",
        f"AB-MCTS-A on a refinement task: best score {res.best_score:.3f} after 200 calls, "
        f"tree depth {res.depth}, {res.tree_size - 1} nodes, {res.steps_per_s:,.0f} steps/s.",
    ]
    return DemoSection("AB-MCTS: agent orchestration learning from outcomes", lines, [fig], table)
